"""build-engine (livepose.tensorrt.build and its command line) and the engine sidecar without a GPU.

TensorRT is absent here, so the toolchain's two TensorRT functions are replaced: the "plan" a
fake build returns is the ONNX file TensorRT would have parsed (the FP16 conversion on the
TensorRT 11 path), and the "engine" runs it on ONNX Runtime. Everything around them (profiles,
FP16 route, the accuracy check on real crops, sidecar, atomic writes, messages) is the real code.
"""
import argparse
import dataclasses
import importlib.util
import json

import numpy as np
import pytest

from livepose.cli import build_engine
from livepose.files import sha256_of
from livepose.runtime.backends import Backend, BackendUnavailable, backend_class
from livepose.runtime.backends.onnxruntime import OnnxRuntimeBackend
from livepose.tensorrt import build
from livepose.tensorrt.sidecar import (
    BatchProfile,
    EngineBuildError,
    EngineMeta,
    EngineMetaError,
    TensorSpec,
    check_engine_file,
    check_engine_runs_here,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from tests.conftest import shared_path
from tiny_pose_model import tiny_pose_meta, write_tiny_pose_onnx

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return write_tiny_pose_onnx(tmp_path_factory.mktemp("models") / "tiny.onnx")


def fake_toolchain(has_fp16_builder_flag=True, plan_from=None, fail=False, specs=None):
    """A Toolchain whose plan is an ONNX file and whose engine is ONNX Runtime running it."""

    def build_plan(spec):
        if specs is not None:
            specs.append(spec)
        if fail:
            raise EngineBuildError(f"TensorRT could not build {spec.label}: out of workspace (fake)")
        return (plan_from or spec.onnx_path).read_bytes()

    return build.Toolchain(
        tensorrt_version="10.8.0.43", gpu_name="NVIDIA Fake GPU", compute_capability="8.9",
        has_fp16_builder_flag=has_fp16_builder_flag, build_plan=build_plan,
        open_engine=lambda path, meta: OnnxRuntimeBackend(path),
    )


def pose_job(onnx_path, out_dir, fp16=True, force=False, max_batch=32):
    return build.EngineJob(
        kind="pose", onnx_path=onnx_path, engine_path=out_dir / "tiny.engine", fp16=fp16, max_batch=max_batch,
        workspace_gib=1.0, build_command=f"livepose build-engine --pose {onnx_path} --fp16", force=force,
    )


@pytest.fixture(scope="module")
def crops(tiny_onnx):
    frames = build.read_calibration_frames(images_dir=shared_path("images"))
    return build.calibration_crops(frames, tiny_pose_meta())


def sample_meta(**changes):
    meta = EngineMeta(
        kind="pose", engine_sha256="0" * 64, source_onnx="models/tiny.onnx", source_onnx_sha256="1" * 64,
        tensorrt_version="10.8.0.43", gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9",
        precision="f16", fp16_mode="builder-flag", profile=BatchProfile(1, 8, 32),
        input=TensorSpec("image", (-1, 3, 64, 48)), output=TensorSpec("heatmaps", (-1, 17, 16, 12)),
        onnx_metadata_props={"livepose": tiny_pose_meta().to_json()}, accuracy_checked=False,
        build_command="livepose build-engine --pose models/tiny.onnx --out engines --fp16 --max-batch 32",
    )
    return dataclasses.replace(meta, **changes)


# --- profile and chunking arithmetic ------------------------------------------------------------


@pytest.mark.parametrize("max_batch, expected", [(32, (1, 8, 32)), (8, (1, 8, 8)), (4, (1, 4, 4)), (1, (1, 1, 1))])
def test_profile_for_max_batch(max_batch, expected):
    profile = BatchProfile.for_max_batch(max_batch)
    assert (profile.min, profile.opt, profile.max) == expected
    assert profile.shapes((3, 256, 192)) == tuple((n, 3, 256, 192) for n in expected)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_profile_rejects_bad_max_batch(bad):
    with pytest.raises(EngineMetaError, match="max batch: expected a positive integer"):
        BatchProfile.for_max_batch(bad)


@pytest.mark.parametrize(
    "kind, shape, expected",
    [
        ("pose", (-1, 3, 256, 192), (1, 8, 32)),
        ("detector", (1, 3, 416, 416), None),
        ("detector", (-1, 3, 640, 640), (1, 1, 1)),  # one frame per call
    ],
)
def test_plan_profile(kind, shape, expected):
    profile = build.plan_profile(kind, TensorSpec("x", shape), 32, "m.onnx")
    assert (profile and (profile.min, profile.opt, profile.max)) == expected


@pytest.mark.parametrize(
    "kind, shape, message",
    [("pose", (4, 3, 256, 192), "needs a dynamic batch"), ("detector", (1, 3, -1, -1), "fixed channels, height and width")],
)
def test_plan_profile_refuses(kind, shape, message):
    with pytest.raises(ValueError, match=message):
        build.plan_profile(kind, TensorSpec("x", shape), 32, "m.onnx")


class _RecordingBackend(Backend):
    """A backend shaped like an engine with `meta`, taking at most `max_batch` per call; records the batch sizes."""

    def __init__(self, meta, max_batch):
        self.input_shape = (None, *meta.input.shape[1:])
        self.max_batch = max_batch
        self.calls = []

    def _run(self, batch):
        self.calls.append(len(batch))
        return batch[:, :1] * 2


@pytest.mark.parametrize("n, chunks", [(1, [1]), (32, [32]), (33, [32, 1]), (70, [32, 32, 6])])
def test_batches_beyond_the_profile_are_split(n, chunks):
    meta = sample_meta()
    backend = _RecordingBackend(meta, meta.profile.max)
    batch = np.random.default_rng(0).random((n, 3, 64, 48), dtype=np.float32)
    out = backend.run(batch)
    assert backend.calls == chunks
    np.testing.assert_array_equal(out, batch[:, :1] * 2)


def test_fixed_batch_engine_takes_one_frame_per_call():
    meta = sample_meta(kind="detector", profile=None, precision="f32", fp16_mode=None, onnx_metadata_props={},
                       input=TensorSpec("images", (1, 3, 416, 416)), output=TensorSpec("output", (1, 3549, 85)))
    assert meta.profile is None and meta.input.shape[0] == 1
    backend = _RecordingBackend(meta, meta.input.shape[0])
    backend.run(np.zeros((3, 3, 416, 416), np.float32))
    assert backend.calls == [1, 1, 1]


# --- sidecar ------------------------------------------------------------------------------------


def test_sidecar_round_trip(tmp_path):
    engine = tmp_path / "tiny.engine"
    meta = sample_meta(accuracy={"mean_oks": 0.998})
    write_sidecar(meta, engine)
    assert sidecar_path(engine).name == "tiny.engine.json"
    assert read_sidecar(engine) == meta
    assert read_sidecar(engine).model == tiny_pose_meta()


def test_missing_sidecar_says_how_to_make_one(tmp_path):
    with pytest.raises(EngineMetaError, match=r"tiny.engine.json is missing.*livepose build-engine"):
        read_sidecar(tmp_path / "tiny.engine")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(precision="int8"), "precision: expected one of"),
        (lambda d: d.update(fp16_mode=None), "fp16_mode"),
        (lambda d: d.update(profile=None), "a dynamic batch needs a profile"),
        (lambda d: d.update(profile={"min": 4, "opt": 2, "max": 8}), "min <= opt <= max"),
        (lambda d: d.update(colour="blue"), r"unknown fields \['colour'\]"),
        (lambda d: d.pop("gpu_name"), r"missing fields \['gpu_name'\]"),
        (lambda d: d.update(schema_version=99), "schema_version"),
        (lambda d: d.update(onnx_metadata_props={}), "must carry the model's 'livepose' metadata"),
        (lambda d: d.update(input={"name": "image"}), "malformed entry"),
    ],
)
def test_malformed_sidecar_is_refused_with_the_reason(tmp_path, edit, message):
    data = sample_meta().to_dict()
    edit(data)
    engine = tmp_path / "tiny.engine"
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(EngineMetaError, match=message):
        read_sidecar(engine)


def test_sidecar_that_is_not_json(tmp_path):
    engine = tmp_path / "tiny.engine"
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(EngineMetaError, match="not a readable JSON file"):
        read_sidecar(engine)


@pytest.mark.parametrize(
    "here, differs",
    [
        (("10.9.0.34", "NVIDIA GeForce RTX 4090", "8.9"), "TensorRT 10.8.0.43"),
        (("10.8.0.43", "NVIDIA A100-SXM4-80GB", "8.0"), "NVIDIA GeForce RTX 4090"),
        (("10.8.0.43", "NVIDIA GeForce RTX 4090", "9.0"), "compute capability 8.9"),
    ],
)
def test_engine_for_another_tensorrt_or_gpu_is_refused(here, differs):
    meta = sample_meta()
    with pytest.raises(EngineMetaError) as error:
        check_engine_runs_here(meta, "engines/tiny.engine", *here)
    text = str(error.value)
    assert differs in text and here[0] in text and here[1] in text
    assert f"rebuild it here with `{meta.build_command}`" in text


def test_engine_for_this_machine_passes():
    check_engine_runs_here(sample_meta(), "engines/tiny.engine", "10.8.0.43", "NVIDIA GeForce RTX 4090", "8.9")


def test_engine_bytes_must_match_the_sidecar():
    import hashlib

    data = b"plan bytes"
    meta = sample_meta(engine_sha256=hashlib.sha256(data).hexdigest())
    check_engine_file(meta, "engines/tiny.engine", data)
    with pytest.raises(EngineMetaError, match="interrupted build"):
        check_engine_file(meta, "engines/tiny.engine", data + b"!")


# --- building with a fake TensorRT --------------------------------------------------------------


def test_tensorrt_11_route_converts_the_onnx_and_builds_strongly_typed(tiny_onnx, tmp_path, crops):
    specs = []
    meta = build.build_engine(pose_job(tiny_onnx, tmp_path), fake_toolchain(False, specs=specs), crops)
    spec = specs[0]
    assert spec.strongly_typed and not spec.fp16_builder_flag
    assert spec.onnx_path != tiny_onnx and spec.onnx_path.name == "tiny.fp16.onnx"
    assert (spec.profile.min, spec.profile.opt, spec.profile.max) == (1, 8, 32)
    assert spec.sample_shape == (3, 64, 48) and spec.input_name == "image"
    assert spec.timing_cache == tmp_path / "timing-tensorrt-10.8.0.43-nvidia-fake-gpu-sm8.9.cache"
    assert meta.fp16_mode == "strongly-typed-onnx" and meta.precision == "f16"
    assert read_sidecar(tmp_path / "tiny.engine") == meta
    # random weights: heatmaps compared, keypoints not, so the engine is recorded as unchecked
    assert meta.accuracy_checked is False
    assert meta.accuracy["passed"] and meta.accuracy["mean_oks"] is None
    assert 0 < meta.accuracy["heatmap_rel_error"] < 1e-2
    assert meta.source_onnx_sha256 == sha256_of(tiny_onnx)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.engine", "tiny.engine.json"]


def test_tensorrt_10_route_sets_the_builder_flag(tiny_onnx, tmp_path):
    specs = []
    meta = build.build_engine(pose_job(tiny_onnx, tmp_path, max_batch=4), fake_toolchain(True, specs=specs))
    assert specs[0].fp16_builder_flag and not specs[0].strongly_typed
    assert specs[0].onnx_path == tiny_onnx
    assert meta.fp16_mode == "builder-flag" and (meta.profile.opt, meta.profile.max) == (4, 4)
    assert meta.accuracy_checked is False and meta.accuracy == {}  # no calibration crops given


def test_fp32_build(tiny_onnx, tmp_path):
    specs = []
    meta = build.build_engine(pose_job(tiny_onnx, tmp_path, fp16=False), fake_toolchain(False, specs=specs))
    assert not specs[0].fp16_builder_flag and not specs[0].strongly_typed and specs[0].onnx_path == tiny_onnx
    assert meta.precision == "f32" and meta.fp16_mode is None


def _existing_engine(tmp_path):
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(b"a working engine")
    sidecar_path(engine).write_text('{"a": "working sidecar"}')
    return engine


def test_failed_build_leaves_the_working_engine(tiny_onnx, tmp_path, crops):
    engine = _existing_engine(tmp_path)
    with pytest.raises(EngineBuildError, match="out of workspace"):
        build.build_engine(pose_job(tiny_onnx, tmp_path), fake_toolchain(fail=True), crops)
    assert engine.read_bytes() == b"a working engine"
    assert sidecar_path(engine).read_text() == '{"a": "working sidecar"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.engine", "tiny.engine.json"]


def test_engine_that_disagrees_with_fp32_is_not_written(tiny_onnx, tmp_path, crops):
    engine = _existing_engine(tmp_path)
    wrong = write_tiny_pose_onnx(tmp_path.parent / f"{tmp_path.name}-other.onnx", seed=7)
    with pytest.raises(EngineBuildError, match=r"disagrees with ONNX Runtime FP32.*--force"):
        build.build_engine(pose_job(tiny_onnx, tmp_path), fake_toolchain(plan_from=wrong), crops)
    assert engine.read_bytes() == b"a working engine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.engine", "tiny.engine.json"]

    forced = build.build_engine(pose_job(tiny_onnx, tmp_path, force=True), fake_toolchain(plan_from=wrong), crops)
    assert engine.read_bytes() == wrong.read_bytes()
    assert forced.accuracy["passed"] is False and forced.accuracy["forced"] is True
    assert forced.accuracy_checked is False


def test_detector_build_records_its_layout(tmp_path, yolox_nano):
    specs = []
    job = build.EngineJob(kind="detector", onnx_path=yolox_nano, engine_path=tmp_path / "yolox_nano.engine",
                          fp16=True, max_batch=32, workspace_gib=1.0, build_command="livepose build-engine ...")
    meta = build.build_engine(job, fake_toolchain(True, specs=specs))
    assert specs[0].profile is None and meta.profile is None and meta.input.shape[0] == 1
    assert meta.input == TensorSpec("images", (1, 3, 416, 416))
    assert meta.output == TensorSpec("output", (1, 3549, 85))
    assert read_sidecar(job.engine_path).kind == "detector"


# --- calibration frames -------------------------------------------------------------------------


def test_calibration_images_skip_what_is_not_a_readable_photo(tmp_path):
    import cv2

    photo = cv2.imread(str(shared_path("images", "ultralytics_zidane.jpg")))
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("people at the station")
    frames = build.read_calibration_frames(images_dir=tmp_path)
    assert len(frames) == 1 and frames[0].shape == photo.shape


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"images_dir": "{tmp}/missing"}, FileNotFoundError, "--calib-images .*missing: not a folder"),
        ({"images_dir": "{tmp}"}, ValueError, r"--calib-images .*: expected images \(.jpg, .*found none readable"),
        ({"video": "{tmp}/missing.mp4"}, ValueError, "--calib-video .*missing.mp4: not a readable video file"),
    ],
)
def test_calibration_input_errors_name_the_option(tmp_path, kwargs, error, message):
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(error, match=message):
        build.read_calibration_frames(**{k: v.format(tmp=tmp_path) for k, v in kwargs.items()})


# --- the command line ---------------------------------------------------------------------------


def parse(*argv):
    parser = argparse.ArgumentParser()
    build_engine.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_builds_and_checks_on_real_photos(tiny_onnx, tmp_path, capsys):
    args = parse("--pose", str(tiny_onnx), "--fp16", "--out", str(tmp_path / "engines"),
                 "--calib-images", str(shared_path("images")))
    assert build_engine.run(args, toolchain=fake_toolchain(False)) == 0
    meta = read_sidecar(tmp_path / "engines" / "tiny.engine")
    assert meta.build_command == f"livepose build-engine --pose {tiny_onnx} --out {tmp_path / 'engines'} --fp16 --max-batch 32"
    assert meta.accuracy["num_crops"] == 6
    assert "vs ONNX Runtime FP32, 6 crops: heatmap relative error" in capsys.readouterr().err


def test_cli_checks_both_engines_on_detected_people(tiny_onnx, yolox_nano, tmp_path, capsys):
    out = tmp_path / "engines"
    args = parse("--pose", str(tiny_onnx), "--detector", str(yolox_nano), "--fp16", "--out", str(out),
                 "--calib-images", str(shared_path("images")))
    assert build_engine.run(args, toolchain=fake_toolchain(True)) == 0
    pose, detector = read_sidecar(out / "tiny.engine"), read_sidecar(out / "yolox_nano.engine")
    assert pose.accuracy["num_crops"] > 6  # the photos show more people than there are photos
    assert detector.accuracy["output"] == "detector output" and detector.accuracy["num_crops"] == 6
    assert detector.accuracy_checked is True and pose.accuracy_checked is False  # random pose weights
    assert "detector output relative error" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        ((), "nothing to build"),
        (("--pose", "missing.onnx"), "--pose missing.onnx: no such file"),
        (("--detector", "missing.onnx"), "--detector missing.onnx: no such file"),
        (("--pose", "{tiny}", "--max-batch", "0"), "--max-batch: expected a positive integer, got 0"),
        (("--pose", "{tiny}", "--workspace", "0"), "--workspace: expected a positive number"),
    ],
)
def test_cli_argument_errors(tiny_onnx, argv, message, capsys):
    args = parse(*(a.format(tiny=tiny_onnx) for a in argv))
    assert build_engine.run(args, toolchain=fake_toolchain()) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_refuses_a_pose_model_without_metadata(tmp_path, yolox_nano, capsys):
    assert build_engine.run(parse("--pose", str(yolox_nano)), toolchain=fake_toolchain()) == 2
    assert "no 'livepose' metadata entry" in capsys.readouterr().err


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_build_engine_says_what_to_install(tiny_onnx, tmp_path, capsys):
    assert build_engine.run(parse("--pose", str(tiny_onnx), "--out", str(tmp_path))) == 1
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and 'pip install "livepose[gpu]"' in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_the_backend_is_unavailable():
    with pytest.raises(BackendUnavailable, match=r'TensorRT is not installed.*pip install "livepose\[gpu\]"'):
        backend_class("tensorrt")
