"""FP16 ONNX conversion (the TensorRT 11 path) and its agreement with FP32, on ONNX Runtime's CPU.

Agreement is measured as build-engine measures it: compare_backends on two ONNX Runtime backends,
the FP32 model as reference and its FP16 conversion as test.
"""
import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from livepose.core.agreement import HEATMAP_REL_ERROR_LIMIT, OKS_LIMIT, compare_backends
from livepose.core.metadata import read_onnx_metadata
from livepose.runtime.backends.onnxruntime import OnnxRuntimeBackend
from livepose.tensorrt.build import calibration_crops, read_calibration_frames
from livepose.tensorrt.fp16 import convert_to_fp16
from tests.conftest import shared_path
from tiny_pose_model import write_tiny_pose_onnx


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory):
    return write_tiny_pose_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="module")
def person_frames():
    """The shared photos of people (BGR frames)."""
    return read_calibration_frames(images_dir=shared_path("images"))


def onnxruntime_agreement(reference_path, test_path, crops, meta):
    """compare_backends of two ONNX models, both on ONNX Runtime's CPU, on (N, 3, H, W) crops."""
    with OnnxRuntimeBackend(reference_path) as reference, OnnxRuntimeBackend(test_path) as test:
        return compare_backends(reference, test, crops, meta)


def test_conversion_keeps_float32_io_and_metadata(tiny_fp32, tmp_path):
    converted = convert_to_fp16(tiny_fp32, tmp_path / "tiny.fp16.onnx").path
    model = onnx.load(str(converted))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert {i.data_type for i in model.graph.initializer} == {TensorProto.FLOAT16}
    assert read_onnx_metadata(converted) == read_onnx_metadata(tiny_fp32)
    assert not list(tmp_path.glob("*.tmp"))


def test_fp16_onnx_follows_fp32_on_real_crops(tiny_fp32, tmp_path, person_frames):
    meta = read_onnx_metadata(tiny_fp32)
    crops = calibration_crops(person_frames, meta)
    agreement = onnxruntime_agreement(tiny_fp32, convert_to_fp16(tiny_fp32, tmp_path / "fp16.onnx").path, crops, meta)
    assert agreement.num_crops == len(person_frames)
    assert not agreement.compares_keypoints  # random weights
    assert 0 < agreement.heatmap_rel_error < HEATMAP_REL_ERROR_LIMIT
    assert agreement.passed


def test_another_model_fails_the_heatmap_check(tiny_fp32, tmp_path, person_frames):
    """The check can fail: a model with other weights is far outside the FP16 rounding limit."""
    meta = read_onnx_metadata(tiny_fp32)
    other = write_tiny_pose_onnx(tmp_path / "other.onnx", seed=1)
    agreement = onnxruntime_agreement(tiny_fp32, other, calibration_crops(person_frames, meta), meta)
    assert agreement.heatmap_rel_error > 0.1
    assert not agreement.passed


@pytest.mark.slow
def test_fp16_r18_export_follows_fp32(r18_onnx, tmp_path, person_frames):
    """The real architecture, random weights: heatmap relative error only (keypoints mean nothing)."""
    meta = read_onnx_metadata(r18_onnx)
    crops = calibration_crops(person_frames, meta)
    agreement = onnxruntime_agreement(r18_onnx, convert_to_fp16(r18_onnx, tmp_path / "r18.fp16.onnx").path, crops, meta)
    print(f"r18-256x192 random weights, FP16 vs FP32 ONNX Runtime CPU: {agreement.summary()}")
    assert agreement.passed


@pytest.mark.slow
def test_fp16_overfit_r18_keypoints_follow_fp32(overfit_r18_checkpoint, coco_subset, tmp_path):
    """A network with real heatmap peaks: r18 memorised 8 real COCO persons; FP16 vs FP32 on exactly those crops.

    Keypoint agreement is meaningful here only because the peaks are real on these crops (the
    model generalises to nothing else), so the comparison is run as for trained weights.
    """
    from tests.conftest import export_pose_model
    from train.dataset import COCOPose
    from train.fit import overfit_persons
    from train.model import get_config

    fp32 = export_pose_model("r18-256x192", tmp_path, checkpoint=overfit_r18_checkpoint)
    config = get_config("r18-256x192")
    persons = COCOPose(overfit_persons(*coco_subset, config, 8), config, augmentation=None)
    crops = np.stack([persons[i][0] for i in range(len(persons))]).astype(np.float32)
    meta = dataclasses.replace(read_onnx_metadata(fp32), trained=True)
    agreement = onnxruntime_agreement(fp32, convert_to_fp16(fp32, tmp_path / "fp16.onnx").path, crops, meta)
    print(f"r18-256x192 overfit on 8 COCO persons, FP16 vs FP32 ONNX Runtime CPU: {agreement.summary()}")
    assert agreement.num_crops == 8
    assert agreement.mean_oks >= OKS_LIMIT and agreement.passed


def _model_with_constants(path, values):
    """A one-node ONNX model y = x * c with the float32 constant c = `values` (1-D)."""
    from onnx import helper, numpy_helper

    c = numpy_helper.from_array(np.asarray(values, np.float32), "c")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "c"], ["y"])], "mul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [len(values)])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [len(values)])], initializer=[c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_constants_beyond_fp16_are_clamped_at_65504_and_counted(tmp_path, caplog, recwarn):
    source = _model_with_constants(tmp_path / "c.onnx", [3e4, 7e4, -1e6, 1e-9, -2e-8, 0.5, 0.0, 5e4])
    result = convert_to_fp16(source, tmp_path / "c.fp16.onnx")
    assert (result.clamped, result.lifted, result.constants) == (2, 2, 8)
    converted = onnx.numpy_helper.to_array(onnx.load(str(result.path)).graph.initializer[0]).astype(np.float32)
    # 3e4 and 5e4 are kept (the converter's default limit of 1e4 would have clamped them), 7e4 and -1e6 clamp
    np.testing.assert_allclose(converted[[0, 1, 2, 5, 6, 7]], [3e4, 65504, -65504, 0.5, 0, 5e4], rtol=1e-3)
    assert abs(converted[3]) > 0 and abs(converted[4]) > 0  # lifted, not flushed to zero
    assert "2 clamped to +-65504" in caplog.text and "2 lifted" in caplog.text
    assert not [w for w in recwarn if "will be truncated" in str(w.message)]


def test_other_converter_warnings_are_not_silenced(tiny_fp32, tmp_path, monkeypatch):
    """Only the truncation notes (counted instead) are dropped; any other warning reaches the user."""
    from onnxconverter_common import float16

    real = float16.convert_float_to_float16

    def converter_that_also_warns(*args, **kwargs):
        import warnings

        warnings.warn("op Foo is not supported in float16", UserWarning)
        return real(*args, **kwargs)

    monkeypatch.setattr(float16, "convert_float_to_float16", converter_that_also_warns)
    with pytest.warns(UserWarning, match="op Foo is not supported"):
        result = convert_to_fp16(tiny_fp32, tmp_path / "w.onnx")
    assert result.clamped == 0 and result.constants > 0
