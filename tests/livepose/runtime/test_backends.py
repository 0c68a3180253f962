"""ONNX Runtime and OpenVINO behind one interface: parity, precision read back, chunking, bad files.

Measured on the random-weight r18-256x192 export, 3 random crops: OpenVINO f32 vs ONNX Runtime
max |diff| 1.2e-10, i.e. 1.9e-6 of max |heatmap| (random weights give heatmaps of ~6e-5, so the comparison
is relative). bf16 on this CPU (avx512_bf16, no AMX) differs by ~1e-2 of max |heatmap|.
"""
import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from livepose.runtime.backends import BACKEND_NAMES, PrecisionUnsupported, backend_class
from livepose.runtime.open_model import open_model

openvino_backend = pytest.importorskip("livepose.runtime.backends.openvino", reason="needs openvino: pip install 'livepose[cpu]'")
OnnxRuntimeBackend = backend_class("onnxruntime")
OpenVinoBackend = openvino_backend.OpenVinoBackend


@pytest.fixture(scope="module")
def crops():
    return np.random.default_rng(0).standard_normal((3, 3, 256, 192)).astype(np.float32)


@pytest.fixture(scope="module")
def ort_heatmaps(r18_onnx, crops):
    with OnnxRuntimeBackend(r18_onnx) as backend:
        return backend.run(crops)


def relative_error(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_onnxruntime_reports_the_model_interface(r18_onnx, ort_heatmaps):
    with OnnxRuntimeBackend(r18_onnx) as backend:
        assert backend.input_name == "image" and backend.output_name == "heatmaps"
        assert backend.input_shape == (None, 3, 256, 192) and backend.output_shape == (None, 17, 64, 48)
        assert backend.precision == "f32"
    assert ort_heatmaps.shape == (3, 17, 64, 48) and ort_heatmaps.dtype == np.float32
    assert np.abs(ort_heatmaps).max() > 0


def test_openvino_f32_matches_onnxruntime(r18_onnx, crops, ort_heatmaps):
    with OpenVinoBackend(r18_onnx, precision="f32") as backend:
        assert backend.precision == "f32"  # read back from the compiled model
        assert backend.input_shape == (None, 3, 256, 192) and backend.output_shape == (None, 17, 64, 48)
        heatmaps = backend.run(crops)
    assert heatmaps.shape == ort_heatmaps.shape and heatmaps.dtype == np.float32
    assert relative_error(heatmaps, ort_heatmaps) < 1e-4  # measured 1.9e-6


def test_openvino_f32_is_explicit_where_the_cpu_defaults_to_bf16(r18_onnx):
    """OpenVINO compiles bf16 by default on CPUs with BF16 support; our f32 must stay f32."""
    import openvino

    core = openvino.Core()
    default = core.compile_model(core.read_model(str(r18_onnx)), "CPU").get_property("INFERENCE_PRECISION_HINT")
    expected_default = "bf16" if "bf16" in OpenVinoBackend.precisions(r18_onnx) else "f32"
    assert openvino_backend._READBACK[default.get_type_name()] == expected_default
    with OpenVinoBackend(r18_onnx, precision="f32") as backend:
        assert backend.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"


def test_openvino_bf16_precision_read_back(r18_onnx, crops, ort_heatmaps):
    if not "bf16" in OpenVinoBackend.precisions(r18_onnx):
        pytest.skip("this CPU has no bf16 support (needs AVX512-BF16 or AMX)")
    with OpenVinoBackend(r18_onnx, precision="bf16") as backend:
        assert backend.precision == "bf16"
        assert backend.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
        heatmaps = backend.run(crops)
    error = relative_error(heatmaps, ort_heatmaps)
    assert 0 < error < 0.1  # bf16 really ran (not f32), and stays close; measured ~1e-2


def test_a_precision_a_runtime_lacks_is_refused_naming_what_it_runs(r18_onnx):
    with pytest.raises(PrecisionUnsupported, match="precision bf16: onnxruntime runs f32 here"):
        OnnxRuntimeBackend(r18_onnx, precision="bf16")
    offered = ", ".join(OpenVinoBackend.precisions(r18_onnx))
    with pytest.raises(PrecisionUnsupported, match=f"precision int8: openvino runs {offered} here; INT8 comes from an INT8 model file"):
        OpenVinoBackend(r18_onnx, precision="int8")


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_batches_larger_than_max_batch_are_chunked(r18_onnx, crops, ort_heatmaps, name):
    with backend_class(name)(r18_onnx, max_batch=2) as backend:
        assert backend.max_batch == 2
        heatmaps = backend.run(crops)  # 3 crops: a chunk of 2 and one of 1
        single = backend.run(crops[2:3])
    assert heatmaps.shape == (3, 17, 64, 48)
    assert relative_error(heatmaps, ort_heatmaps) < 1e-4
    np.testing.assert_allclose(heatmaps[2:3], single, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_wrong_input_shape_is_refused(r18_onnx, name):
    with backend_class(name)(r18_onnx) as backend:
        with pytest.raises(ValueError, match=r"input 'image': expected shape \(N, 3, 256, 192\), got \(1, 3, 384, 288\)"):
            backend.run(np.zeros((1, 3, 384, 288), np.float32))


def two_output_model(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in ("a", "b")]
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["x"], ["b"])]
    model = helper.make_model(helper.make_graph(nodes, "two", [x], outputs), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_bad_model_files(tmp_path, name):
    cls = backend_class(name)
    with pytest.raises(FileNotFoundError, match="missing.onnx: no such file"):
        open_model(tmp_path / "missing.onnx", backend=name)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.onnx"):
        cls(empty)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ValueError, match="garbage.onnx"):
        cls(garbage)
    with pytest.raises(ValueError, match="expected one input and one output"):
        cls(two_output_model(tmp_path / "two.onnx"))


def test_open_backend_auto_prefers_openvino(r18_onnx):
    with open_model(r18_onnx).backend as backend:
        assert backend.name == "openvino" and backend.precision == "f32"
    with open_model(r18_onnx, backend="onnxruntime", max_batch=4).backend as backend:
        assert backend.name == "onnxruntime" and backend.max_batch == 4
    with pytest.raises(ValueError, match="backend: expected one of"):
        open_model(r18_onnx, backend="tflite")
    assert set(BACKEND_NAMES) == {"onnxruntime", "openvino", "tensorrt"}


def test_open_backend_auto_falls_back_from_an_unusable_engine(r18_onnx, tmp_path, caplog):
    """An engine beside the ONNX that cannot run here (no TensorRT, or not a plan) is passed over, with a log line."""
    model = tmp_path / "pose.onnx"
    model.write_bytes(r18_onnx.read_bytes())
    (tmp_path / "pose.engine").write_bytes(b"not a TensorRT plan")
    with caplog.at_level(logging.WARNING, logger="livepose.runtime.backends"):
        with open_model(model).backend as backend:
            assert backend.name == "openvino"
    assert any("not using TensorRT engine" in r.getMessage() and "pose.engine" in r.getMessage() for r in caplog.records)
    # asking for the engine itself also falls back to the ONNX beside it
    with open_model(tmp_path / "pose.engine").backend as backend:
        assert backend.name == "openvino"


def test_open_backend_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        open_model(tmp_path / "nothing.onnx")
