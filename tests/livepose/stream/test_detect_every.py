"""Detect-every-N: boxes carried from synthetic poses between detections."""
import numpy as np
import pytest

from livepose.core.types import Detections, Poses
from livepose.stream.detect_every import DetectEveryN, boxes_from_poses

FRAME = np.zeros((480, 640, 3), np.uint8)


def standing_person(x, y, height=100.0, k=17, score=0.9):
    """A pose whose keypoints span x..x+0.4h by y..y+h (a rough standing person)."""
    rng = np.random.default_rng(0)
    kps = np.stack([x + rng.uniform(0, 0.4 * height, k), y + rng.uniform(0, height, k)], axis=1)
    kps[0] = (x, y)
    kps[1] = (x + 0.4 * height, y + height)
    return kps, np.full(k, score)


def make_poses(people, boxes=None):
    keypoints = np.stack([p[0] for p in people])
    scores = np.stack([p[1] for p in people])
    n = len(people)
    boxes = np.zeros((n, 4)) if boxes is None else boxes
    return Poses(keypoints, scores, boxes, np.linspace(0.9, 0.5, n))


class CountingDetector:
    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.calls = 0

    def __call__(self, frame):
        self.calls += 1
        return Detections(self.boxes, np.full(len(self.boxes), 0.8))


def test_box_is_the_enlarged_extent_of_confident_keypoints():
    kps, scores = standing_person(100, 50, height=100)
    kps[5], scores[5] = (600, 400), 0.1  # an unconfident outlier must not stretch the box
    boxes = boxes_from_poses(kps[None], scores[None], np.zeros((1, 4)), threshold=0.3, enlarge=1.2)
    # extent 100..140 x 50..150, centre (120, 100), enlarged 1.2 -> 48 x 120
    np.testing.assert_allclose(boxes[0], [96, 40, 144, 160], atol=1e-4)


@pytest.mark.parametrize("confident, expect_fallback", [(17, False), (4, False), (3, True), (0, True)])
def test_too_few_confident_keypoints_keep_the_previous_box(confident, expect_fallback):
    kps, scores = standing_person(100, 50)
    scores[confident:] = 0.05
    previous = np.array([[10, 20, 30, 40]], np.float32)
    box = boxes_from_poses(kps[None], scores[None], previous)[0]
    assert np.allclose(box, previous[0]) == expect_fallback


def test_a_collapsed_pose_keeps_the_previous_box():
    kps = np.full((1, 17, 2), 200.0)
    previous = np.array([[10, 20, 30, 40]], np.float32)
    np.testing.assert_array_equal(boxes_from_poses(kps, np.ones((1, 17)), previous), previous)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="fallback_boxes"):
        boxes_from_poses(np.zeros((2, 17, 2)), np.zeros((2, 17)), np.zeros((3, 4)))
    assert boxes_from_poses(np.zeros((0, 17, 2)), np.zeros((0, 17)), np.zeros((0, 4))).shape == (0, 4)


def test_detector_runs_every_n_frames_and_boxes_follow_the_poses():
    detector = CountingDetector([[100, 50, 140, 150]])
    scheduler = DetectEveryN(detector, every=3)
    poses = None
    produced = []
    for t in range(7):
        detections, detected = scheduler(FRAME, poses)
        produced.append(detected)
        # the person walks 5 px right per frame; the "pose model" finds them where they are
        poses = make_poses([standing_person(100 + 5 * t, 50)], detections.boxes)
        if not detected:
            # carried from the previous frame's pose, which stood 5 px left of this frame's
            np.testing.assert_allclose(detections.boxes[0], [96 + 5 * (t - 1), 40, 144 + 5 * (t - 1), 160], atol=1e-3)
            assert detections.scores[0] == pytest.approx(0.9)  # the box score is carried too
    assert produced == [True, False, False, True, False, False, True]
    assert detector.calls == 3


def test_every_1_always_detects_and_an_empty_scene_is_redetected():
    detector = CountingDetector(np.zeros((0, 4)))
    scheduler = DetectEveryN(detector, every=5)
    for _ in range(4):
        detections, detected = scheduler(FRAME, Poses.empty())
        assert detected and len(detections) == 0
    always = DetectEveryN(CountingDetector([[0, 0, 10, 10]]), every=1)
    poses = make_poses([standing_person(100, 50)])
    assert all(always(FRAME, poses)[1] for _ in range(3))


def test_carried_boxes_are_clipped_to_the_frame():
    scheduler = DetectEveryN(CountingDetector([[0, 0, 1, 1]]), every=2)
    scheduler(FRAME, None)
    detections, detected = scheduler(FRAME, make_poses([standing_person(600, 420, height=100)]))
    assert not detected
    assert detections.boxes[0, 2] <= 639 and detections.boxes[0, 3] <= 479


@pytest.mark.parametrize("every", [0, -1, 1.5, "2", True])
def test_every_is_validated(every):
    with pytest.raises(ValueError, match="detect_every"):
        DetectEveryN(CountingDetector([]), every=every)


class BoxFollowingEstimator:
    """Stands in for the pose network (slow): finds the person wherever they are now, whatever box it gets."""

    def __init__(self):
        self.position = 100.0
        self.boxes_seen = []

    def estimate(self, image, detections, timings=None):
        self.boxes_seen.append(detections.boxes.copy())
        if timings is not None:
            timings["pose"] = timings.get("pose", 0.0) + 0.001
        kps, scores = standing_person(self.position, 50)
        return make_poses([(kps, scores)], detections.boxes)


def test_pose_tracker_feeds_previous_poses_back_as_boxes():
    from livepose.stream.detect_every import DetectAndPose

    detector = CountingDetector([[100, 50, 140, 150]])
    estimator = BoxFollowingEstimator()
    tracker = DetectAndPose(detector, estimator, detect_every=4)
    for t in range(8):
        times = {}
        estimator.position = 100.0 + 5 * t
        poses = tracker(FRAME, times)
        assert len(poses) == 1 and "detect" in times and "pose" in times
    assert detector.calls == tracker.detections_run == 2
    # frame 1 got the box carried from frame 0's pose (at x 100), frame 5 from frame 4's (at x 120)
    np.testing.assert_allclose(estimator.boxes_seen[1][0], [96, 40, 144, 160], atol=1e-3)
    np.testing.assert_allclose(estimator.boxes_seen[5][0], [116, 40, 164, 160], atol=1e-3)
    np.testing.assert_allclose(estimator.boxes_seen[4][0], [100, 50, 140, 150])  # a detection
