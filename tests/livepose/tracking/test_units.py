"""Kalman prediction, the IoU/OKS cost and the One-Euro filter against hand-computed values."""
import numpy as np
import pytest

from livepose.tracking import kalman
from livepose.tracking.cost import iou_matrix, oks_matrix, similarity_matrix
from livepose.tracking.smoothing import OneEuroFilter, OneEuroSettings
from livepose.tracking.tracker import TrackerSettings, assign


def test_kalman_predicts_by_seconds():
    # a 100 px tall box at (100, 200) moving 10 px/s right, predicted 0.5 s on
    means, covariances = kalman.initiate([[100, 200, 50, 100]])
    means[0, 4] = 10.0
    moved, spread = kalman.predict(means, covariances, 0.5)
    np.testing.assert_allclose(moved[0], [105, 200, 50, 100, 10, 0, 0, 0])
    # initial variances: position (2 * 0.05 * 100)^2 = 100, velocity (10 * 30 / 160 * 100)^2 = 35156.25;
    # P_xx = 100 + 0.5^2 * 35156.25 + Q_x (0.05 * 100)^2 * 30 * 0.5 = 100 + 8789.0625 + 375
    assert spread[0, 0, 0] == pytest.approx(9264.0625)
    assert spread[0, 0, 4] == pytest.approx(0.5 * 35156.25)
    # Q_v = (100 / 160)^2 * 30 * 0.5
    assert spread[0, 4, 4] == pytest.approx(35156.25 + 5.859375)


def test_kalman_twice_half_a_second_is_once_a_second_for_the_mean():
    means, covariances = kalman.initiate([[0, 0, 10, 20]])
    means[0, 4:6] = (4.0, -2.0)
    once, _ = kalman.predict(means, covariances, 1.0)
    twice, _ = kalman.predict(*kalman.predict(means, covariances, 0.5), 0.5)
    np.testing.assert_allclose(once, twice)


def test_kalman_update_weighs_prediction_and_measurement():
    # prior variance 100 (10 px), measurement variance (0.05 * 100)^2 = 25: gain 0.8
    means, covariances = kalman.initiate([[100, 200, 50, 100]])
    corrected, spread = kalman.update(means, covariances, [[110, 200, 50, 100]])
    assert corrected[0, 0] == pytest.approx(108.0)
    assert spread[0, 0, 0] == pytest.approx(20.0)


def test_iou_by_hand():
    iou = iou_matrix([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou, [[50 / 150, 0.0, 1.0]])


def test_oks_by_hand_over_the_joints_confident_in_both():
    a = np.zeros((1, 17, 2))
    b = a + [10.0, 0.0]
    scores = np.zeros((1, 17))
    scores[0, :4] = 0.9  # nose, eyes, left ear
    oks, usable = oks_matrix(a, scores, b, scores, areas=[10000.0])
    # exp(-10^2 / (2 * 10000 * 0.53 * (2 sigma)^2)) for sigma .026, .025, .025, .035
    assert oks[0, 0] == pytest.approx(np.mean([0.030535, 0.022970, 0.022970, 0.145832]), abs=1e-5)
    assert usable[0, 0]
    scores[0, 3] = 0.1  # three joints are too few to say who it is
    _, usable = oks_matrix(a, scores, b, scores, areas=[10000.0])
    assert not usable[0, 0]


def test_similarity_is_iou_where_poses_are_unconfident_and_blends_oks_where_confident():
    boxes = np.array([[0, 0, 100, 100]], float)
    other = np.array([[50, 0, 150, 100]], float)
    keypoints = np.random.default_rng(0).uniform(0, 100, (1, 17, 2))
    confident, unsure = np.full((1, 17), 0.9), np.full((1, 17), 0.1)
    iou = 50 * 100 / (2 * 100 * 100 - 50 * 100)
    assert similarity_matrix(boxes, other)[0, 0] == pytest.approx(iou)
    assert similarity_matrix(boxes, other, (keypoints, unsure), (keypoints, confident))[0, 0] == pytest.approx(iou)
    # identical confident poses: OKS 1
    assert similarity_matrix(boxes, other, (keypoints, confident), (keypoints, confident))[0, 0] == pytest.approx((iou + 1) / 2)


def test_assignment_is_optimal_not_greedy_and_respects_the_gate():
    # greedy would take 0.9 (row 0 -> col 0) and leave row 1 with 0.1; optimal pairs 0.8 + 0.8
    similarity = np.array([[0.9, 0.8], [0.8, 0.1]])
    pairs, free_rows, free_cols = assign(similarity, minimum=0.2)
    assert sorted(map(tuple, pairs)) == [(0, 1), (1, 0)]
    pairs, free_rows, free_cols = assign(np.array([[0.1]]), minimum=0.2)
    assert len(pairs) == 0 and free_rows.tolist() == [0] and free_cols.tolist() == [0]


def test_one_euro_by_hand():
    smoother = OneEuroFilter(OneEuroSettings(min_cutoff=1.0, beta=1.0, d_cutoff=1.0))
    assert smoother(0.0, 0.0) == 0.0
    # speed 100 -> d-alpha 1/(1 + 1/(2 pi 0.1)) = 0.38587: 38.587; cutoff 39.587 Hz -> alpha 0.96135
    assert smoother(10.0, 0.1) == pytest.approx(9.6135, abs=1e-4)
    # raw speed 3.865 -> 25.189; cutoff 26.189 Hz -> alpha 0.94271: 9.6135 + 0.94271 * 0.3865
    assert smoother(10.0, 0.2) == pytest.approx(9.9779, abs=1e-4)
    assert smoother(50.0, 0.2) == pytest.approx(9.9779, abs=1e-4)  # no time passed: no change


@pytest.mark.parametrize("field", ["min_cutoff", "beta", "d_cutoff"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_non_positive_smoothing_parameters_are_refused(field, value):
    with pytest.raises(ValueError, match=f"smoothing {field}: expected a positive number"):
        OneEuroSettings(**{field: value})


@pytest.mark.parametrize("value", [0.0, -2.0, float("inf")])
def test_non_positive_tracker_time_is_refused(value):
    with pytest.raises(ValueError, match="max_lost_seconds: expected a positive number of seconds"):
        TrackerSettings(max_lost_seconds=value)
