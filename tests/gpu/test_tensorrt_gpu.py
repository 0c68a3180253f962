"""TensorRT on a real NVIDIA GPU: `pytest -m gpu` (deselected by default; skips without GPU or TensorRT).

Builds both engines from small real models (a random-weight r18 export and YOLOX-Nano), checks
them against ONNX Runtime FP32 at batch 1, 7 and 32, refuses a mismatched sidecar, and runs
`livepose video` on the TensorRT backend.
"""
import argparse
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.gpu
pytest.importorskip("tensorrt", reason='TensorRT is not installed: pip install "livepose[gpu]"')
pytest.importorskip("pycuda.driver", reason='pycuda is not installed: pip install "livepose[gpu]" (needs the CUDA toolkit)')

from livepose.cli import build_engine  # noqa: E402
from livepose.core.agreement import HEATMAP_REL_ERROR_LIMIT, heatmap_errors  # noqa: E402
from livepose.runtime.backends import BackendUnavailable, open_backend  # noqa: E402
from livepose.runtime.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from livepose.tensorrt.backend import TensorRTBackend, device_info  # noqa: E402
from livepose.tensorrt.sidecar import EngineMetaError, read_sidecar, sidecar_path  # noqa: E402
from tests.conftest import REPO, shared_path  # noqa: E402


@pytest.fixture(scope="module")
def gpu():
    try:
        return device_info()
    except BackendUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def engines(gpu, r18_onnx, yolox_nano, tmp_path_factory):
    """FP16 pose and detector engines built by the real `livepose build-engine` code, beside their ONNX."""
    out = tmp_path_factory.mktemp("engines")
    pose_onnx, detector_onnx = shutil.copy(r18_onnx, out), shutil.copy(yolox_nano, out)
    parser = argparse.ArgumentParser()
    build_engine.add_arguments(parser)
    args = parser.parse_args([
        "--pose", str(pose_onnx), "--detector", str(detector_onnx), "--fp16", "--max-batch", "32",
        "--workspace", "2", "--out", str(out), "--calib-images", str(shared_path("images")),
    ])
    assert build_engine.run(args) == 0
    return out / f"{r18_onnx.stem}.engine", out / f"{yolox_nano.stem}.engine"


def test_build_writes_engines_sidecars_and_timing_cache(engines, gpu):
    pose, detector = engines
    version, gpu_name, capability = gpu
    pose_meta, detector_meta = read_sidecar(pose), read_sidecar(detector)
    assert (pose_meta.tensorrt_version, pose_meta.gpu_name, pose_meta.compute_capability) == gpu
    assert pose_meta.precision == "f16" and (pose_meta.profile.min, pose_meta.profile.opt, pose_meta.profile.max) == (1, 8, 32)
    assert pose_meta.accuracy["passed"] and pose_meta.accuracy["num_crops"] == 6
    assert detector_meta.kind == "detector" and detector_meta.profile is None
    assert (pose.parent / f"timing-tensorrt-{version}.cache").stat().st_size > 0


@pytest.mark.parametrize("batch", [1, 7, 32])
def test_pose_engine_matches_onnxruntime(engines, r18_onnx, batch):
    crops = np.random.default_rng(batch).standard_normal((batch, 3, 256, 192)).astype(np.float32)
    with TensorRTBackend(engines[0]) as engine, OnnxRuntimeBackend(r18_onnx) as reference:
        assert engine.max_batch == 32 and engine.input_shape == (None, 3, 256, 192)
        got, want = engine.run(crops), reference.run(crops)
    assert got.shape == want.shape == (batch, 17, 64, 48) and got.dtype == np.float32
    relative, _ = heatmap_errors(want, got)
    assert relative < HEATMAP_REL_ERROR_LIMIT


def test_pose_batch_beyond_the_profile_is_chunked(engines, r18_onnx):
    crops = np.random.default_rng(0).standard_normal((40, 3, 256, 192)).astype(np.float32)
    with TensorRTBackend(engines[0]) as engine, OnnxRuntimeBackend(r18_onnx) as reference:
        got, want = engine.run(crops), reference.run(crops)
    assert got.shape == (40, 17, 64, 48)
    assert heatmap_errors(want, got)[0] < HEATMAP_REL_ERROR_LIMIT


def test_detector_engine_matches_onnxruntime(engines, yolox_nano):
    frame = np.random.default_rng(1).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    with TensorRTBackend(engines[1]) as engine, OnnxRuntimeBackend(yolox_nano) as reference:
        got, want = engine.run(frame), reference.run(frame)
    assert got.shape == want.shape == (1, 3549, 85)
    assert heatmap_errors(want, got)[0] < 2e-2


def test_mismatched_sidecar_is_refused(engines, tmp_path):
    engine = tmp_path / engines[0].name
    shutil.copy(engines[0], engine)
    data = json.loads(sidecar_path(engines[0]).read_text())
    data["tensorrt_version"] = "9.0.0"
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(EngineMetaError, match=r"built with TensorRT 9\.0\.0.*rebuild it here with `livepose build-engine"):
        TensorRTBackend(engine)


def test_close_twice_is_safe(engines):
    backend = TensorRTBackend(engines[0])
    backend.close()
    backend.close()


def test_auto_selects_the_engine(engines):
    with open_backend(engines[0]) as backend:
        assert backend.name == "tensorrt" and backend.precision == "f16"


def test_livepose_video_on_tensorrt(engines, tmp_path):
    source = shared_path("videos", "mmpose_demo.mp4")
    out = tmp_path / "out.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "livepose", "video", str(source), "--out", str(out), "--backend", "tensorrt",
         "--pose-model", str(engines[0]), "--detector", str(engines[1].with_suffix(".onnx"))],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    import cv2

    capture = cv2.VideoCapture(str(out))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    assert frames == 5
