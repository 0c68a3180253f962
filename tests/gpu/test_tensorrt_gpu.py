"""TensorRT on a real NVIDIA GPU: `pytest -m gpu` (deselected by default; skips without GPU or TensorRT).

Needs only `pip install -e ".[gpu,dev]"` (or gpu-cu12 / gpu-pycuda): no paddle, no ../shared/data.
The models and inputs come from gpu_material.py. Builds both engines with the real
`livepose build-engine` code, checks them against ONNX Runtime FP32 at batch 1, 7 and 32, builds
the strongly typed FP16 route on TensorRT 10 too, runs the backend across threads, refuses a
mismatched sidecar, and runs `livepose video` on TensorRT.
"""
import argparse
import json
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

pytestmark = pytest.mark.gpu
pytest.importorskip("tensorrt", reason='TensorRT is not installed: pip install "livepose[gpu]" (see README, GPU)')

from gpu_material import DETECTOR_INPUT, FRAMES, POSE_INPUT, generated_frames, make_material  # noqa: E402
from livepose.cli import build_engine  # noqa: E402
from livepose.core.agreement import HEATMAP_REL_ERROR_LIMIT, heatmap_errors  # noqa: E402
from livepose.runtime.backends import BackendUnavailable  # noqa: E402
from livepose.runtime.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from livepose.runtime.open_model import open_model  # noqa: E402
from livepose.tensorrt.sidecar import EngineMetaError, read_sidecar, sidecar_path  # noqa: E402
from tests.conftest import REPO, decoded_frames  # noqa: E402

try:
    from livepose.tensorrt.backend import TensorRTBackend, device_info, has_fp16_builder_flag
except ImportError as error:  # TensorRT is there, but no CUDA Python layer loads
    pytest.skip(str(error), allow_module_level=True)
from livepose.tensorrt.build import timing_cache_name, tensorrt_toolchain  # noqa: E402


@pytest.fixture(scope="module")
def gpu():
    try:
        return device_info()
    except BackendUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    return make_material(tmp_path_factory.mktemp("material"))


def build(material, out, *extra):
    parser = argparse.ArgumentParser()
    build_engine.add_arguments(parser)
    args = parser.parse_args([
        "--pose", str(material.pose_onnx), "--detector", str(material.detector_onnx), "--max-batch", "32",
        "--workspace", "2", "--out", str(out), "--calib-images", str(material.photos), *extra,
    ])
    assert build_engine.run(args) == 0
    return out / f"{material.pose_onnx.stem}.engine", out / f"{material.detector_onnx.stem}.engine"


@pytest.fixture(scope="module")
def engines(gpu, material, tmp_path_factory):
    """FP16 pose and detector engines built by the real `livepose build-engine` code."""
    out = tmp_path_factory.mktemp("engines")
    shutil.copy(material.pose_onnx, out)
    shutil.copy(material.detector_onnx, out)
    return build(material, out, "--fp16")


def expected_crops(material):
    """How many crops build-engine checks: every person the FP32 detector finds (a frame without any: the frame)."""
    from livepose.runtime.detector import PersonDetector

    with PersonDetector(material.detector_onnx, backend="onnxruntime") as detector:
        return min(sum(max(len(detector(frame).boxes), 1) for frame in generated_frames()), 32)


def test_build_writes_engines_sidecars_and_timing_cache(engines, gpu, material):
    pose, detector = engines
    pose_meta, detector_meta = read_sidecar(pose), read_sidecar(detector)
    assert (pose_meta.tensorrt_version, pose_meta.gpu_name, pose_meta.compute_capability) == gpu
    assert pose_meta.precision == "f16" and (pose_meta.profile.min, pose_meta.profile.opt, pose_meta.profile.max) == (1, 8, 32)
    assert pose_meta.fp16_mode == ("builder-flag" if has_fp16_builder_flag() else "strongly-typed-onnx")
    # --detector: the check crops every person the detector finds, not one crop per photo
    assert pose_meta.accuracy["passed"] and pose_meta.accuracy["num_crops"] == expected_crops(material)
    assert detector_meta.kind == "detector" and detector_meta.profile is None
    assert (pose.parent / timing_cache_name(tensorrt_toolchain())).stat().st_size > 0


def test_strongly_typed_fp16_route_builds_here(gpu, material, tmp_path):
    """TensorRT 11's only FP16 route, built on whatever TensorRT is here (10.x has STRONGLY_TYPED too)."""
    pose, _ = build(material, tmp_path, "--fp16", "--strongly-typed")
    meta = read_sidecar(pose)
    assert meta.fp16_mode == "strongly-typed-onnx" and meta.accuracy["passed"]
    crops = np.random.default_rng(3).standard_normal((7, 3, *POSE_INPUT)).astype(np.float32)
    with TensorRTBackend(pose) as engine, OnnxRuntimeBackend(material.pose_onnx) as reference:
        assert heatmap_errors(reference.run(crops), engine.run(crops))[0] < HEATMAP_REL_ERROR_LIMIT


@pytest.mark.parametrize("batch", [1, 7, 32, 40])
def test_pose_engine_matches_onnxruntime(engines, material, batch):
    crops = np.random.default_rng(batch).standard_normal((batch, 3, *POSE_INPUT)).astype(np.float32)
    with TensorRTBackend(engines[0]) as engine, OnnxRuntimeBackend(material.pose_onnx) as reference:
        assert engine.max_batch == 32 and engine.input_shape == (None, 3, *POSE_INPUT)
        got, want = engine.run(crops), reference.run(crops)
    assert got.shape == want.shape == (batch, 17, POSE_INPUT[0] // 4, POSE_INPUT[1] // 4) and got.dtype == np.float32
    assert heatmap_errors(want, got)[0] < HEATMAP_REL_ERROR_LIMIT


def test_detector_engine_matches_onnxruntime(engines, material):
    frame = np.random.default_rng(1).uniform(0, 1, (1, 3, DETECTOR_INPUT, DETECTOR_INPUT)).astype(np.float32)
    with TensorRTBackend(engines[1]) as engine, OnnxRuntimeBackend(material.detector_onnx) as reference:
        got, want = engine.run(frame), reference.run(frame)
    assert got.shape == want.shape == (1, 5, 100)
    assert heatmap_errors(want, got)[0] < 2e-2


def test_backend_made_here_runs_and_closes_on_other_threads(engines, material):
    crops = np.random.default_rng(5).standard_normal((4, 3, *POSE_INPUT)).astype(np.float32)
    engine = TensorRTBackend(engines[0])
    with OnnxRuntimeBackend(material.pose_onnx) as reference:
        want = reference.run(crops)
    results = []
    threads = [threading.Thread(target=lambda: results.append(engine.run(crops))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 3 and all(heatmap_errors(want, got)[0] < HEATMAP_REL_ERROR_LIMIT for got in results)
    closer = threading.Thread(target=engine.close)
    closer.start()
    closer.join(60)
    engine.close()
    with pytest.raises(ValueError, match="closed"):
        engine.run(crops)


def test_mismatched_sidecar_is_refused(engines, tmp_path):
    engine = tmp_path / engines[0].name
    shutil.copy(engines[0], engine)
    data = json.loads(sidecar_path(engines[0]).read_text())
    data["tensorrt_version"] = "9.0.0"
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(EngineMetaError, match=r"built with TensorRT 9\.0\.0.*rebuild it here with `livepose build-engine"):
        TensorRTBackend(engine)


def test_auto_selects_the_engine(engines):
    model = open_model(engines[0].with_suffix(".onnx"))
    try:
        assert model.backend.name == "tensorrt" and model.precision == "f16"
    finally:
        model.backend.close()


def test_livepose_video_on_tensorrt(engines, material, tmp_path):
    out = tmp_path / "out.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "livepose", "video", str(material.video), "--out", str(out), "--backend", "tensorrt",
         "--pose-model", str(engines[0]), "--detector", str(engines[1].with_suffix(".onnx"))],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert decoded_frames(out)[0] == FRAMES
