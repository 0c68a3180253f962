"""open_model: the one way a model file is opened, whatever the file and runtime."""
import logging

import onnx
import pytest

from livepose.core.metadata import ModelMetadataError
from livepose.runtime.backends import PrecisionUnsupported
from livepose.runtime.detector_layout import DetectorLayoutError
from livepose.runtime.open_model import (
    cpu_runs_int8_fast,
    detector_backend,
    int8_sibling,
    open_model,
)
from tiny_pose_model import tiny_pose_meta, write_tiny_pose_onnx


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_pose_onnx(tmp_path_factory.mktemp("open") / "tiny.onnx")


def test_a_pose_model_comes_with_its_metadata_and_runtime(tiny):
    opened = open_model(tiny, backend="onnxruntime")
    with opened.backend:
        assert opened.meta == tiny_pose_meta() and opened.layout is None
        assert opened.path == tiny and opened.backend.name == "onnxruntime" and opened.precision == "f32"


def test_int8_is_read_from_the_model_file(tiny, tmp_path):
    model = onnx.load(str(tiny))
    meta = tiny_pose_meta()
    quantised = type(meta)(**{**meta.to_dict(), "extra": {"quantization": {"method": "test"}}})
    model.metadata_props[0].value = quantised.to_json()
    path = tmp_path / "tiny-int8.onnx"
    onnx.save(model, str(path))
    with open_model(path, backend="onnxruntime").backend as backend:
        assert backend.precision == "f32"  # what the runtime was asked for
    assert open_model(path, backend="onnxruntime").precision == "int8"  # what the file computes in


def test_a_pose_model_without_metadata_is_refused_before_loading(tiny, tmp_path):
    model = onnx.load(str(tiny))
    del model.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelMetadataError, match="bare.onnx: no 'livepose' metadata entry"):
        open_model(path)


def test_a_detector_comes_with_its_layout(yolox_nano):
    opened = open_model(yolox_nano, "detector", backend="onnxruntime")
    with opened.backend:
        assert opened.layout.name == "yolox" and opened.layout.input_size == (416, 416)
        assert opened.layout.person_class == 0 and opened.meta is None


def test_an_engine_that_cannot_run_falls_back_to_the_onnx_beside_it_or_names_it(tmp_path, caplog):
    engine = tmp_path / "d.engine"
    engine.write_bytes(b"not a plan")
    # auto: the engine cannot run here (no TensorRT or not a plan), and there is no ONNX to fall back to
    with caplog.at_level(logging.WARNING):
        with pytest.raises(FileNotFoundError, match="detector .*d.onnx: no such file"):
            open_model(engine, "detector")
    assert any("not using TensorRT engine" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(backend="tflite"), ValueError, "backend: expected one of"),
    (dict(kind="segmenter"), ValueError, "kind: expected one of"),
    (dict(backend="onnxruntime", precision="f16"), PrecisionUnsupported, "precision f16: onnxruntime runs f32 here"),
])
def test_bad_requests_are_named(tiny, kwargs, error, message):
    with pytest.raises(error, match=message):
        open_model(tiny, **kwargs)


def test_the_detector_follows_an_explicit_cpu_runtime_only():
    assert detector_backend("openvino") == "openvino" and detector_backend("onnxruntime") == "onnxruntime"
    assert detector_backend("tensorrt") == "auto" and detector_backend("auto") == "auto"


def test_an_unknown_detector_layout_is_refused_by_name(tiny):
    with pytest.raises(DetectorLayoutError, match="tiny.onnx: unknown output layout"):
        open_model(tiny, "detector", backend="onnxruntime")


# ---------------------------------------------------------------- the INT8 sibling NAME-int8.onnx

def _write_sibling(f32_path, source_sha256):
    """NAME-int8.onnx beside f32_path: the same network, its metadata naming the f32 file it came from."""
    from livepose.files import sha256_of

    model = onnx.load(str(f32_path))
    meta = tiny_pose_meta()
    note = {"precision": "int8", "source_sha256": source_sha256 or sha256_of(f32_path), "validation_mean_oks": 0.995}
    model.metadata_props[0].value = type(meta)(**{**meta.to_dict(), "extra": {"quantization": note}}).to_json()
    sibling = int8_sibling(f32_path)
    onnx.save(model, str(sibling))
    return sibling


@pytest.fixture
def f32_with_sibling(tmp_path):
    pytest.importorskip("openvino")
    if not cpu_runs_int8_fast():
        pytest.skip("this CPU has no VNNI / AMX: auto never picks INT8 here")
    f32 = write_tiny_pose_onnx(tmp_path / "tiny.onnx")
    return f32, _write_sibling(f32, None)


def test_auto_runs_the_int8_sibling_on_openvino_and_says_so(f32_with_sibling, caplog):
    f32, sibling = f32_with_sibling
    with caplog.at_level(logging.INFO):
        opened = open_model(f32)
    with opened.backend:
        assert opened.path == sibling and opened.backend.name == "openvino" and opened.precision == "int8"
    assert any(f"using INT8 model {sibling.name}" in r.getMessage() for r in caplog.records)


def test_no_int8_an_explicit_runtime_or_precision_keep_f32(f32_with_sibling):
    f32, _ = f32_with_sibling
    for kwargs in ({"int8": False}, {"backend": "onnxruntime"}, {"backend": "openvino"}):
        opened = open_model(f32, **kwargs)
        with opened.backend:
            assert opened.path == f32 and opened.precision == "f32", kwargs


def test_a_stale_sibling_is_ignored_with_the_reason(f32_with_sibling, caplog):
    f32, _ = f32_with_sibling
    stale = _write_sibling(f32, "0" * 64)  # made from another f32 model
    with caplog.at_level(logging.INFO):
        opened = open_model(f32)
    with opened.backend:
        assert opened.path == f32 and opened.precision == "f32"
    assert any(f"not using INT8 model {stale}" in r.getMessage() and "another f32 model" in r.getMessage()
               for r in caplog.records)


def test_naming_the_int8_file_runs_it(f32_with_sibling):
    _, sibling = f32_with_sibling
    opened = open_model(sibling)
    with opened.backend:
        assert opened.path == sibling and opened.precision == "int8"


def test_openvino_keeps_compiled_models_in_the_user_cache(tiny, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from livepose.runtime.backends.openvino import OpenVinoBackend
    from livepose.runtime.model_files import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with OpenVinoBackend(tiny, cache=False):
        pass
    assert not (tmp_path / "cache" / "openvino").exists() or not list((tmp_path / "cache" / "openvino").iterdir())
    with OpenVinoBackend(tiny):
        pass
    assert list((tmp_path / "cache" / "openvino").glob("*.blob")), "a compiled blob for the next start"
