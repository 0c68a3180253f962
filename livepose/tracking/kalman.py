"""Constant-velocity Kalman filter on person boxes, batched over tracks and driven by seconds.

State (8,): box centre x, y, width, height and their velocities in pixels per second; the
measurement is the box (cx, cy, w, h). Noise scales with the box height, as in ByteTrack/BoT-SORT
(a person twice as tall moves twice as many pixels), and grows with the time since the last
prediction, so a live source that drops frames predicts further instead of a fixed step.
"""
import numpy as np

# ByteTrack's per-frame standard deviations (position 1/20, velocity 1/160 of the height) at its
# 30 fps, turned into variances per second: a random walk's variance grows linearly with time.
NOMINAL_FPS = 30.0
POSITION_STD = 1.0 / 20.0
VELOCITY_STD = 1.0 / 160.0
MEASUREMENT_STD = 1.0 / 20.0   # a detector box is off by about 5 % of the height (ByteTrack's R)
INITIAL_VELOCITY_STD = 10 * VELOCITY_STD * NOMINAL_FPS  # heights per second: unknown at birth


def xyxy_to_cxcywh(boxes):
    """(N, 4) x1, y1, x2, y2 -> (N, 4) centre x, y, width, height (float64)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    size = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + size / 2, size], axis=1)


def cxcywh_to_xyxy(boxes):
    """(N, 4) centre x, y, width, height -> (N, 4) x1, y1, x2, y2."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)


def _height(means):
    return np.maximum(means[:, 3], 1.0)  # (T,) px; a collapsed box must not zero the noise


def initiate(boxes):
    """New states for (T, 4) cxcywh boxes: (T, 8) means at rest and (T, 8, 8) covariances."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    means = np.concatenate([boxes, np.zeros_like(boxes)], axis=1)
    height = _height(means)[:, None]
    std = np.concatenate([np.repeat(2 * MEASUREMENT_STD * height, 4, axis=1),
                          np.repeat(INITIAL_VELOCITY_STD * height, 4, axis=1)], axis=1)
    return means, _diagonal(std**2)


def predict(means, covariances, dt):
    """States moved on by `dt` seconds ((T,) or a scalar, >= 0).

    means (T, 8), covariances (T, 8, 8) -> the same shapes: x += v dt; P = F P F^T + Q dt with Q
    the per-second process noise of the height.
    """
    means = np.asarray(means, dtype=np.float64)
    dt = np.broadcast_to(np.asarray(dt, dtype=np.float64), (len(means),))
    transition = np.broadcast_to(np.eye(8), (len(means), 8, 8)).copy()
    transition[:, np.arange(4), np.arange(4) + 4] = dt[:, None]
    moved = means.copy()
    moved[:, :4] += means[:, 4:] * dt[:, None]
    height = _height(means)[:, None]
    per_second = np.concatenate([np.repeat((POSITION_STD * height) ** 2, 4, axis=1),
                                 np.repeat((VELOCITY_STD * height) ** 2, 4, axis=1)], axis=1) * NOMINAL_FPS
    spread = transition @ covariances @ transition.transpose(0, 2, 1) + _diagonal(per_second * dt[:, None])
    return moved, spread


def update(means, covariances, boxes):
    """States corrected by measured (T, 4) cxcywh boxes; returns (T, 8) means, (T, 8, 8) covariances."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height = _height(means)[:, None]
    innovation_cov = covariances[:, :4, :4] + _diagonal(np.repeat((MEASUREMENT_STD * height) ** 2, 4, axis=1))
    # K = P H^T S^-1, solved rather than inverted; S and P are symmetric
    gain = np.linalg.solve(innovation_cov, covariances[:, :4, :]).transpose(0, 2, 1)   # (T, 8, 4)
    corrected = means + (gain @ (boxes - means[:, :4])[:, :, None])[:, :, 0]
    return corrected, covariances - gain @ covariances[:, :4, :]


def _diagonal(values):
    """(T, D) -> (T, D, D) diagonal matrices."""
    out = np.zeros(values.shape + (values.shape[-1],))
    index = np.arange(values.shape[-1])
    out[:, index, index] = values
    return out
