"""Small validated result types passed between the stages."""
from dataclasses import dataclass

import numpy as np


def _as(array, dtype, shape, name):
    """Return `array` as `dtype`, checking its shape against `shape` (None = any size)."""
    array = np.asarray(array, dtype=dtype)
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        expected = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {expected}, got {array.shape}")
    return array


def check_frame(frame):
    """The frame as an (H, W, 3) uint8 BGR array; ValueError saying what arrived otherwise."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or min(frame.shape[:2]) < 1:
        raise ValueError(f"frame: expected an (H, W, 3) uint8 BGR image, got {frame.dtype} array of shape {frame.shape}")
    return frame


@dataclass(frozen=True)
class Detections:
    """Person boxes in frame pixels: boxes (N, 4) x1, y1, x2, y2 float32; scores (N,) float32."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self):
        boxes = _as(self.boxes, np.float32, (None, 4), "boxes")
        scores = _as(self.scores, np.float32, (len(boxes),), "scores")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)

    @classmethod
    def empty(cls):
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self):
        return len(self.boxes)

    def __getitem__(self, index):
        """Select boxes by index array, slice or boolean mask."""
        return Detections(self.boxes[index].reshape(-1, 4), np.atleast_1d(self.scores[index]))


@dataclass(frozen=True)
class Poses:
    """Keypoints of N persons in frame pixels.

    keypoints (N, K, 2) float32 x, y; scores (N, K) float32 heatmap maxima;
    boxes (N, 4) x1, y1, x2, y2 and box_scores (N,) from the detector;
    track_ids (N,) int64 positive ids from a tracker (None when untracked);
    smoothed: whether the keypoints were temporally smoothed (raw heatmap positions when False).
    """

    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray
    track_ids: np.ndarray = None
    smoothed: bool = False

    def __post_init__(self):
        keypoints = _as(self.keypoints, np.float32, (None, None, 2), "keypoints")
        n, k = keypoints.shape[:2]
        object.__setattr__(self, "keypoints", keypoints)
        object.__setattr__(self, "scores", _as(self.scores, np.float32, (n, k), "scores"))
        object.__setattr__(self, "boxes", _as(self.boxes, np.float32, (n, 4), "boxes"))
        object.__setattr__(self, "box_scores", _as(self.box_scores, np.float32, (n,), "box_scores"))
        if self.track_ids is not None:
            ids = _as(self.track_ids, np.int64, (n,), "track_ids")
            if (ids < 1).any():
                raise ValueError(f"track_ids: expected positive integers, got {ids.tolist()}")
            object.__setattr__(self, "track_ids", ids)

    @classmethod
    def empty(cls, num_keypoints=17):
        return cls(
            np.zeros((0, num_keypoints, 2), np.float32),
            np.zeros((0, num_keypoints), np.float32),
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
        )

    def __len__(self):
        return len(self.keypoints)

    @property
    def num_keypoints(self):
        return self.keypoints.shape[1]

    def select(self, index):
        """The persons picked by an index array, slice or boolean mask, ids and flag kept."""
        ids = None if self.track_ids is None else self.track_ids[index].reshape(-1)
        return Poses(self.keypoints[index].reshape(-1, self.num_keypoints, 2),
                     self.scores[index].reshape(-1, self.num_keypoints), self.boxes[index].reshape(-1, 4),
                     np.atleast_1d(self.box_scores[index]), ids, self.smoothed)

    def to_dicts(self):
        """Plain-python records, one per person: track_id (when tracked), box, box_score and
        K x (x, y, score)."""
        ids = [None] * len(self) if self.track_ids is None else self.track_ids.tolist()
        return [
            {
                **({} if track_id is None else {"track_id": int(track_id)}),
                "box": [round(float(v), 2) for v in box],
                "box_score": round(float(box_score), 4),
                "keypoints": [
                    [round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                    for (x, y), s in zip(kps, scores)
                ],
            }
            for kps, scores, box, box_score, track_id in zip(self.keypoints, self.scores, self.boxes,
                                                              self.box_scores, ids)
        ]
