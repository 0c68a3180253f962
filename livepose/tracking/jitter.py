"""Jitter and lag of smoothed keypoints against the truth, on the walking trajectory the tracking
issue defines (1.5 body heights per second, joint noise 2 % of the height, 25 fps)."""
import numpy as np

from livepose.core.types import Detections
from livepose.tracking.smoothing import OneEuroFilter, OneEuroSettings
from livepose.tracking.synthetic import BOX_MARGIN
from livepose.tracking.tracker import Tracker, TrackerSettings

WALK_SPEED = 1.5      # body heights per second
NOISE = 0.02          # joint noise sigma, body heights
FPS = 25.0
TURN_SECONDS = 2.0    # the walker turns back every 2 s, so the motion has edges to align


def walk(pose, seconds=20.0, height=200.0, seed=0):
    """(truth (T, 17, 2), noisy (T, 17, 2), timestamps (T,)) of a pose walking back and forth."""
    times = np.arange(int(seconds * FPS)) / FPS
    phase = (times / TURN_SECONDS) % 2
    travelled = np.where(phase < 1, phase, 2 - phase) * WALK_SPEED * height * TURN_SECONDS
    centers = np.stack([200 + travelled, np.full_like(times, 300.0)], axis=1)
    truth = pose[0][None] * height + centers[:, None, :]
    noisy = truth + np.random.default_rng(seed).normal(0, NOISE * height, truth.shape)
    return truth, noisy, times


def jitter(keypoints, truth):
    """RMS over frames and joints of the frame-to-frame motion's error: (T, K, 2) twice -> px."""
    return float(np.sqrt((((np.diff(keypoints, axis=0) - np.diff(truth, axis=0)) ** 2).sum(axis=2)).mean()))


def lag_seconds(keypoints, truth, times, step=0.001, window=0.2):
    """The delay of `keypoints` behind `truth` in seconds: the shift that maximises the
    cross-correlation of their mean x velocities (upsampled to `step` seconds)."""
    fine = np.arange(times[0], times[-1], step)
    out_v = np.gradient(np.interp(fine, times, keypoints[..., 0].mean(axis=1)))
    true_v = np.gradient(np.interp(fine, times, truth[..., 0].mean(axis=1)))
    out_v, true_v = out_v - out_v.mean(), true_v - true_v.mean()
    shifts = np.arange(int(window / step))
    n = len(fine) - len(shifts)
    correlation = [np.dot(out_v[s:s + n], true_v[:n]) for s in shifts]
    return float(shifts[int(np.argmax(correlation))] * step)


def tracked_keypoints(noisy, times, visible, smooth=True, smoothing=OneEuroSettings()):
    """(T, 17, 2) keypoints out of the tracker for one walker (boxes: the noisy joints' extent)."""
    tracker = Tracker(TrackerSettings(smooth=smooth, smoothing=smoothing))
    scores = np.repeat(visible[None] * 0.9, 1, axis=0)
    out = []
    for keypoints, t in zip(noisy, times):
        points = keypoints[visible > 0]
        center, half = (points.min(0) + points.max(0)) / 2, np.ptp(points, axis=0) * BOX_MARGIN / 2
        detections = Detections(np.concatenate([center - half, center + half])[None], np.array([0.9]))

        def estimate(boxes, keypoints=keypoints):
            from livepose.core.types import Poses
            return Poses(keypoints[None], scores, boxes.boxes, boxes.scores)

        out.append(tracker.update(t, detections, estimate).keypoints[0])
    return np.stack(out)


def plain_one_euro(noisy, times, settings=OneEuroSettings(), height=200.0):
    """(T, 17, 2): the One-Euro filter on the frame pixels directly (no body anchor), for comparison."""
    smoother = OneEuroFilter(settings)
    return np.stack([smoother(k, t, scale=height) for k, t in zip(noisy, times)])
