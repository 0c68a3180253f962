"""FP16 ONNX conversion (the TensorRT 11 path) and its agreement with FP32, on ONNX Runtime's CPU."""
import dataclasses
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from livepose.tensorrt.build import calibration_crops, read_calibration_frames
from livepose.tensorrt.fp16 import (
    HEATMAP_REL_ERROR_LIMIT,
    OKS_LIMIT,
    Agreement,
    check_fp16_onnx,
    compare_heatmaps,
    convert_to_fp16,
    heatmap_errors,
    keypoint_oks,
)
from livepose.core.metadata import read_onnx_metadata
from livepose.core.skeleton import OKS_SIGMAS
from tests.conftest import shared_path
from tiny_pose_model import tiny_pose_meta, write_tiny_pose_onnx


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory):
    return write_tiny_pose_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="module")
def person_frames():
    """The shared photos of people (BGR frames)."""
    return read_calibration_frames(images_dir=shared_path("images"))


def test_conversion_keeps_float32_io_and_metadata(tiny_fp32, tmp_path):
    converted = convert_to_fp16(tiny_fp32, tmp_path / "tiny.fp16.onnx")
    model = onnx.load(str(converted))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert {i.data_type for i in model.graph.initializer} == {TensorProto.FLOAT16}
    assert read_onnx_metadata(converted) == read_onnx_metadata(tiny_fp32)
    assert not list(tmp_path.glob("*.tmp"))


def test_fp16_onnx_follows_fp32_on_real_crops(tiny_fp32, tmp_path, person_frames):
    meta = read_onnx_metadata(tiny_fp32)
    crops = calibration_crops(person_frames, meta)
    agreement = check_fp16_onnx(tiny_fp32, convert_to_fp16(tiny_fp32, tmp_path / "fp16.onnx"), crops, meta)
    assert agreement.num_crops == len(person_frames)
    assert not agreement.compares_keypoints  # random weights
    assert 0 < agreement.heatmap_rel_error < HEATMAP_REL_ERROR_LIMIT
    assert agreement.passed


def test_another_model_fails_the_heatmap_check(tiny_fp32, tmp_path, person_frames):
    """The check can fail: a model with other weights is far outside the FP16 rounding limit."""
    meta = read_onnx_metadata(tiny_fp32)
    other = write_tiny_pose_onnx(tmp_path / "other.onnx", seed=1)
    agreement = check_fp16_onnx(tiny_fp32, other, calibration_crops(person_frames, meta), meta)
    assert agreement.heatmap_rel_error > 0.1
    assert not agreement.passed


@pytest.mark.slow
def test_fp16_r18_export_follows_fp32(r18_onnx, tmp_path, person_frames):
    """The real architecture, random weights: heatmap relative error only (keypoints mean nothing)."""
    meta = read_onnx_metadata(r18_onnx)
    crops = calibration_crops(person_frames, meta)
    agreement = check_fp16_onnx(r18_onnx, convert_to_fp16(r18_onnx, tmp_path / "r18.fp16.onnx"), crops, meta)
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
    agreement = check_fp16_onnx(fp32, convert_to_fp16(fp32, tmp_path / "fp16.onnx"), crops, meta)
    print(f"r18-256x192 overfit on 8 COCO persons, FP16 vs FP32 ONNX Runtime CPU: {agreement.summary()}")
    assert agreement.num_crops == 8
    assert agreement.mean_oks >= OKS_LIMIT and agreement.passed


def test_heatmap_errors():
    reference = np.ones((2, 17, 4, 3))
    test = reference.copy()
    test[0, 0, 0, 0] = 3.0
    relative, max_abs = heatmap_errors(reference, test)
    assert max_abs == pytest.approx(2.0)
    assert relative == pytest.approx(2.0 / math.sqrt(reference.size))
    with pytest.raises(ValueError, match="equal shapes"):
        heatmap_errors(reference, test[:1])


def test_oks_of_identical_and_displaced_keypoints():
    reference = np.random.default_rng(0).uniform(0, 100, (3, 17, 2))
    assert keypoint_oks(reference, reference, 1000.0) == pytest.approx(np.ones(3))
    shifted = reference + [3.0, 4.0]  # 5 px for every keypoint
    expected = np.mean(np.exp(-25.0 / (2 * np.asarray(OKS_SIGMAS)) ** 2 / (2 * 1000.0)))
    assert keypoint_oks(reference, shifted, 1000.0) == pytest.approx(np.full(3, expected))
    with pytest.raises(ValueError, match=r"\(N, 17, 2\)"):
        keypoint_oks(reference[:, :5], shifted[:, :5], 1000.0)


def _gaussian_heatmaps(peaks, size):
    """(N, K, 2) peak (x, y) in heatmap px -> (N, K, h, w) Gaussians of sigma 2."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w]
    x = peaks[..., 0][..., None, None]
    y = peaks[..., 1][..., None, None]
    return np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 2.0**2)).astype(np.float32)


def test_keypoint_comparison_in_crop_pixels():
    """Heatmaps one heatmap pixel apart are one stride (4 crop px) apart, with the OKS that implies."""
    meta = tiny_pose_meta(trained=True)
    peaks = np.random.default_rng(1).integers(3, 9, (2, 17, 2)).astype(np.float64)
    reference = _gaussian_heatmaps(peaks, meta.heatmap_size)
    moved = _gaussian_heatmaps(peaks + [1.0, 0.0], meta.heatmap_size)
    agreement = compare_heatmaps(reference, moved, meta)
    assert agreement.keypoint_mean_px == pytest.approx(4.0)
    assert agreement.keypoint_max_px == pytest.approx(4.0)
    area = 64 * 48 / 1.25**2
    assert agreement.mean_oks == pytest.approx(np.mean(np.exp(-16.0 / (2 * np.asarray(OKS_SIGMAS)) ** 2 / (2 * area))))
    assert not agreement.passed  # a 4 px shift on a 64x48 crop is far below OKS 0.99
    same = compare_heatmaps(reference, reference.copy(), meta)
    assert same.mean_oks == pytest.approx(1.0) and same.passed


def test_random_weights_get_no_keypoint_figures():
    meta = tiny_pose_meta(trained=False)
    heatmaps = np.random.default_rng(2).random((2, 17, *meta.heatmap_size))
    agreement = compare_heatmaps(heatmaps, heatmaps * 1.001, meta)
    assert agreement.mean_oks is None and agreement.keypoint_mean_px is None
    assert agreement.heatmap_rel_error == pytest.approx(1e-3)
    assert "keypoints not compared" in agreement.summary()


@pytest.mark.parametrize(
    "agreement, passed",
    [
        (Agreement(4, 1e-3, 0.1), True),
        (Agreement(4, HEATMAP_REL_ERROR_LIMIT * 2, 0.1), False),
        (Agreement(4, float("nan"), float("nan")), False),
        (Agreement(4, 1e-3, 0.1, 0.2, 0.5, OKS_LIMIT + 0.001), True),
        (Agreement(4, 1e-3, 0.1, 2.0, 9.0, OKS_LIMIT - 0.001), False),
    ],
)
def test_pass_rules(agreement, passed):
    assert agreement.passed is passed
