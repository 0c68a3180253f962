"""The tracking per-frame work of a stream: detect (every N frames), associate, pose, smooth.

Where the pose network runs relative to association: on the confident boxes before association
(their OKS is part of the cost, and unmatched ones start tracks, so they need poses anyway), and on
the low-score boxes only after they matched a track, so no crop is spent on a low-score box that
is dropped. Between detections (detect_every > 1) the boxes come from the confirmed tracks (their
motion prediction and last pose's extent), and the detector still runs at once when nothing is
tracked.
"""
import time

from livepose.timing import timed
from livepose.tracking.tracker import Tracker, TrackerSettings


class TrackAndPose:
    """Per-frame work (image, times, timestamp) -> Poses with `track_ids`, for run_stream.

    detector(image) -> Detections, run with its own score floor (the lowest score the tracker
    sees); estimator: a PoseEstimator (its metadata says whether the model is trained: an untrained
    one's poses take no part in association nor in carrying boxes); settings: TrackerSettings.
    `detections_run` counts detector calls; tracking's own seconds go under the "track" stage.
    """

    uses_timestamps = True

    def __init__(self, detector, estimator, detect_every=1, settings=TrackerSettings()):
        if not isinstance(detect_every, int) or isinstance(detect_every, bool) or detect_every < 1:
            raise ValueError(f"detect_every: expected an integer >= 1, got {detect_every!r}")
        trained = bool(getattr(getattr(estimator, "meta", None), "trained", False))
        if settings.use_pose and not trained:
            settings = _replace(settings, use_pose=False)
        self.detector, self.estimator, self.detect_every = detector, estimator, detect_every
        self.tracker = Tracker(settings, getattr(estimator, "num_keypoints", 17))
        self.detections_run = 0
        self._since_detection = None
        self._start = time.monotonic()

    @property
    def settings(self):
        return self.tracker.settings

    def __call__(self, image, times=None, timestamp=None):
        if timestamp is None:  # a caller without timestamps: the wall clock
            timestamp = time.monotonic() - self._start
        due = self._since_detection is None or self._since_detection + 1 >= self.detect_every
        if due or not self.tracker.active:
            self._since_detection = 0
            return self._detection_frame(image, times, timestamp)
        self._since_detection += 1
        with timed(times, "track"):
            carried, tracks = self.tracker.carried_boxes(timestamp)
            carried = _clipped(carried, image.shape)
        poses = self.estimator.estimate(image, carried, timings=times)
        with timed(times, "track"):
            return self.tracker.follow(timestamp, tracks, poses)

    def _detection_frame(self, image, times, timestamp):
        with timed(times, "detect"):
            detections = self.detector(image)
        self.detections_run += 1
        network = []

        def estimate(boxes):
            started = time.perf_counter()
            poses = self.estimator.estimate(image, boxes, timings=times)
            network.append(time.perf_counter() - started)
            return poses

        started = time.perf_counter()
        poses = self.tracker.update(timestamp, detections, estimate)
        if times is not None:  # the pose calls have their own stages (crop, pose, decode)
            times["track"] = times.get("track", 0.0) + time.perf_counter() - started - sum(network)
        return poses


def _replace(settings, **changes):
    from dataclasses import replace

    return replace(settings, **changes)


def _clipped(detections, shape):
    """Carried boxes clipped to the (H, W, ...) frame."""
    from livepose.core.types import Detections

    boxes = detections.boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, shape[1] - 1)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, shape[0] - 1)
    return Detections(boxes, detections.scores)
