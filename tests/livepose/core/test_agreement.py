"""Agreement of test outputs with reference ones: heatmap errors, OKS, keypoint deviation, pass rules."""
import dataclasses
import math

import numpy as np
import pytest

from livepose.core.agreement import (
    HEATMAP_REL_ERROR_LIMIT,
    OKS_LIMIT,
    Agreement,
    compare_backends,
    compare_detector_backends,
    compare_heatmaps,
    heatmap_errors,
    keypoint_oks,
)
from livepose.core.skeleton import OKS_SIGMAS
from tiny_pose_model import tiny_pose_meta


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


def test_oks_needs_the_coco_keypoints():
    meta = dataclasses.replace(tiny_pose_meta(trained=True), keypoint_names=tuple(f"k{i}" for i in range(5)),
                               flip_pairs=())
    heatmaps = np.random.default_rng(3).random((1, 5, *meta.heatmap_size))
    with pytest.raises(ValueError, match="COCO sigmas exist for 17 keypoints, the model has 5"):
        compare_heatmaps(heatmaps, heatmaps, meta)


class _FakeBackend:
    """A stand-in backend: `.run` returns fixed outputs and records the batches it was given."""

    def __init__(self, outputs):
        self.outputs, self.inputs = outputs, []

    def run(self, batch):
        self.inputs.append(batch)
        return self.outputs


def test_compare_backends_runs_both_on_the_same_crops():
    meta = tiny_pose_meta()
    crops = np.zeros((3, 3, *meta.input_size), np.float32)
    heatmaps = np.random.default_rng(4).random((3, 17, *meta.heatmap_size)) + 0.1
    reference, test = _FakeBackend(heatmaps), _FakeBackend(heatmaps * 1.002)
    agreement = compare_backends(reference, test, crops, meta)
    assert reference.inputs == [crops] and test.inputs == [crops]
    assert agreement.num_crops == 3 and agreement.heatmap_rel_error == pytest.approx(2e-3)
    assert agreement.passed


def test_compare_detector_backends_reports_the_raw_output():
    frames = np.zeros((2, 3, 416, 416), np.float32)
    outputs = np.random.default_rng(5).random((2, 3549, 85)) + 0.1
    agreement = compare_detector_backends(_FakeBackend(outputs), _FakeBackend(outputs * 1.05), frames)
    assert agreement.output == "detector output" and agreement.num_crops == 2
    assert agreement.heatmap_rel_error == pytest.approx(0.05) and not agreement.passed
    assert agreement.summary().startswith("2 inputs: detector output relative error 5.00e-02")


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
