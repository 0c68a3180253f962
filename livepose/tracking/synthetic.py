"""Synthetic tracking scenes from real COCO poses moved along known paths, for tests and benchmarks.

Each person is a real annotated COCO pose (joints relative to its box, scaled to a height) whose
box centre follows a straight path at a constant speed; the scene says when each person is
visible, which frames the detector misses and which frames a live source dropped. Detector
boxes are the pose's extent enlarged as a detector would draw it, with Gaussian noise; keypoints
get Gaussian noise too. Ground truth is kept per frame, so ids can be asserted exactly.
"""
import json
from dataclasses import dataclass, field

import numpy as np

from livepose.core.types import Detections, Poses

BOX_MARGIN = 1.15   # a detector's box reaches past the outermost joints (head top, feet)


def coco_poses(annotation_file, min_keypoints=15):
    """Real poses from a COCO keypoints file: list of ((17, 2) joints in box-height units relative
    to the box centre, (17,) visibility 0/1), for non-crowd persons with >= `min_keypoints` labels."""
    with open(annotation_file, encoding="utf-8") as handle:
        annotations = json.load(handle)["annotations"]
    poses = []
    for annotation in annotations:
        if annotation.get("iscrowd") or annotation["num_keypoints"] < min_keypoints:
            continue
        values = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(17, 3)
        visible = values[:, 2] > 0
        points = values[visible, :2]
        center = (points.min(axis=0) + points.max(axis=0)) / 2
        height = max(np.ptp(points[:, 1]), 1.0)
        poses.append((np.where(visible[:, None], (values[:, :2] - center) / height, 0.0), visible.astype(float)))
    return poses


@dataclass
class Person:
    """A pose moving from `start` (x, y of the box centre, px) at `velocity` (px/s), `height` px
    tall, visible during [appear, vanish) seconds except within `hidden` (start, end) intervals;
    at `turn` seconds they turn back (velocity reversed)."""

    pose: tuple
    start: tuple
    velocity: tuple
    height: float
    appear: float = 0.0
    vanish: float = float("inf")
    hidden: tuple = ()
    score: float = 0.9
    turn: float = float("inf")

    def center(self, t):
        walked = min(t, self.turn) - max(t - self.turn, 0.0)
        return np.asarray(self.start, float) + np.asarray(self.velocity, float) * walked

    def visible(self, t):
        return self.appear <= t < self.vanish and not any(a <= t < b for a, b in self.hidden)


@dataclass
class Scene:
    """People over a run of frames at `fps`; `missed` frame indices have no detections at all;
    `dropped` frame indices never reach the tracker (a live source skipping stale frames)."""

    people: list
    frames: int
    fps: float = 25.0
    keypoint_noise: float = 0.01    # sigma, in box heights
    box_noise: float = 0.02          # sigma of each box edge, in box heights
    missed: set = field(default_factory=set)
    dropped: set = field(default_factory=set)
    seed: int = 0

    score_noise: float = 0.0         # sigma of the detector score around each person's score

    def __iter__(self):
        """Yields (frame index, timestamp, Detections, Poses, truth) per frame not dropped; truth:
        (N,) index of the person behind each detection (and pose), in the same order."""
        for index, t, detections, poses, truth, _, _ in self.frames_with_truth():
            yield index, t, detections, poses, truth

    def frames_with_truth(self):
        """As __iter__, plus the ground truth of every visible person, detected or not: (M, 4)
        boxes without noise and (M,) person indices."""
        rng = np.random.default_rng(self.seed)
        for index in range(self.frames):
            t = index / self.fps
            people = [(n, p) for n, p in enumerate(self.people) if p.visible(t)]
            clean = [p.pose[0] * p.height + p.center(t) for _, p in people]
            keypoints = [k + rng.normal(0, self.keypoint_noise * p.height, (17, 2)) for k, (_, p) in zip(clean, people)]
            if index in self.dropped:
                continue
            boxes = [self._box(k, p.pose[1], p.height, rng) for k, (_, p) in zip(keypoints, people)]
            scores = np.array([p.score for _, p in people])
            if self.score_noise > 0:
                scores = np.clip(scores + rng.normal(0, self.score_noise, len(scores)), 0.01, 1.0)
            poses = Poses(np.array(keypoints).reshape(-1, 17, 2), np.array([p.pose[1] * 0.9 for _, p in people]).reshape(-1, 17),
                          np.array(boxes).reshape(-1, 4), scores)
            truth = np.array([n for n, _ in people], int)
            truth_boxes = np.array([self._box(k, p.pose[1], p.height, None) for k, (_, p) in zip(clean, people)]).reshape(-1, 4)
            detected = np.ones(len(people), bool) if index not in self.missed else np.zeros(len(people), bool)
            poses = poses.select(detected)
            yield index, t, Detections(poses.boxes, poses.box_scores), poses, truth[detected], truth_boxes, truth

    def _box(self, keypoints, visible, height, rng):
        points = keypoints[visible > 0]
        center = (points.min(axis=0) + points.max(axis=0)) / 2
        half = (points.max(axis=0) - points.min(axis=0)) * BOX_MARGIN / 2
        noise = 0.0 if rng is None else rng.normal(0, self.box_noise * height, 4)
        return np.concatenate([center - half, center + half]) + noise


def pose_lookup(poses):
    """A stand-in for the pose network on a synthetic frame: Detections -> the frame's Poses of the
    persons whose boxes overlap the given ones most (what a network finds in the box)."""
    from livepose.tracking.cost import iou_matrix

    def estimate(detections):
        best = iou_matrix(detections.boxes, poses.boxes).argmax(axis=1)
        picked = poses.select(best)
        return Poses(picked.keypoints, picked.scores, detections.boxes, detections.scores)

    return estimate
