"""The per-frame work of a stream: detect every N frames (in between, each person's box comes
from their previous pose), then the poses of everyone boxed.

The way real-time top-down trackers save the detector: a person moves little between two frames,
so the extent of last frame's confident keypoints, enlarged, is a good box for this frame.
"""
import warnings

import numpy as np

from livepose.core.types import Detections
from livepose.timing import timed

KEYPOINT_THRESHOLD = 0.3  # heatmap maxima below this are guesses, not joints (the drawing threshold)
MIN_KEYPOINTS = 4         # fewer confident joints than this give no usable extent: keep the old box
# the joints' extent misses the top of the head, the feet and the hands' ends; 1.2 brings it back to
# about a detector's box (LightTrack enlarges its keypoint boxes by 20 % the same way)
ENLARGE = 1.2
MIN_SIZE = 4.0            # px; a smaller extent is a collapsed pose, keep the old box


def boxes_from_poses(keypoints, scores, fallback_boxes, threshold=KEYPOINT_THRESHOLD,
                     min_keypoints=MIN_KEYPOINTS, enlarge=ENLARGE):
    """Boxes around each person's confident keypoints.

    keypoints (N, K, 2) x, y and scores (N, K) in frame pixels; fallback_boxes (N, 4) x1, y1, x2, y2,
    used for persons with fewer than `min_keypoints` keypoints scoring >= `threshold`.
    Returns (N, 4) float32 x1, y1, x2, y2: the keypoints' extent scaled by `enlarge` about its centre.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    fallback = np.asarray(fallback_boxes, dtype=np.float32).reshape(-1, 4)
    if keypoints.ndim != 3 or keypoints.shape[2] != 2 or scores.shape != keypoints.shape[:2] or len(fallback) != len(keypoints):
        raise ValueError(
            f"boxes_from_poses: expected keypoints (N, K, 2), scores (N, K) and fallback_boxes (N, 4), got "
            f"{keypoints.shape}, {scores.shape} and {fallback.shape}"
        )
    if len(keypoints) == 0:
        return fallback
    confident = scores >= threshold                                 # (N, K)
    # masked extent: unconfident joints must not pull the box
    xs = np.where(confident, keypoints[..., 0], np.nan)
    ys = np.where(confident, keypoints[..., 1], np.nan)
    usable = confident.sum(axis=1) >= min_keypoints
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows; they fall back below
        x1, x2 = np.nanmin(xs, axis=1), np.nanmax(xs, axis=1)
        y1, y2 = np.nanmin(ys, axis=1), np.nanmax(ys, axis=1)
    usable &= (x2 - x1 >= MIN_SIZE) | (y2 - y1 >= MIN_SIZE)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half_w, half_h = (x2 - x1) * enlarge / 2, (y2 - y1) * enlarge / 2
    carried = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    return np.where(usable[:, None], carried, fallback).astype(np.float32)


class DetectEveryN:
    """Person boxes for a stream: the detector every `every` frames, the previous poses in between.

    detector(frame) -> Detections. Call with each frame in order and the poses found on the previous
    frame (None for the first). The detector also runs whenever nobody is being carried, so a
    person entering an empty scene is found on the next frame, not N frames later.
    """

    def __init__(self, detector, every=1, threshold=KEYPOINT_THRESHOLD, enlarge=ENLARGE):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"detect_every: expected an integer >= 1, got {every!r}")
        self.detector = detector
        self.every = every
        self.threshold = threshold
        self.enlarge = enlarge
        self._since_detection = None  # frames since the detector last ran

    def __call__(self, frame, previous_poses=None):
        """Detections for `frame` (boxes clipped to it) and whether the detector produced them."""
        due = self._since_detection is None or self._since_detection + 1 >= self.every
        if due or previous_poses is None or len(previous_poses) == 0:
            self._since_detection = 0
            return self.detector(frame), True
        self._since_detection += 1
        boxes = boxes_from_poses(previous_poses.keypoints, previous_poses.scores, previous_poses.boxes,
                                 self.threshold, enlarge=self.enlarge)
        height, width = frame.shape[:2]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width - 1)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height - 1)
        return Detections(boxes, previous_poses.box_scores), False


class DetectAndPose:
    """Detection (every `detect_every` frames) + pose for a stream, as a pipeline infer function.

    detector(frame) -> Detections; estimator: a PoseEstimator. Call with each frame's (H, W, 3)
    BGR image in order and the pipeline's per-frame `times` dict (seconds are added under detect,
    crop, pose, decode). Returns the frame's Poses; `detections_run` counts detector calls.
    """

    def __init__(self, detector, estimator, detect_every=1):
        self.boxes = DetectEveryN(detector, detect_every)
        self.estimator = estimator
        self.detections_run = 0
        self._previous = None

    def __call__(self, image, times=None):
        with timed(times, "detect"):
            detections, detected = self.boxes(image, self._previous)
        self.detections_run += detected
        self._previous = self.estimator.estimate(image, detections, timings=times)
        return self._previous
