"""How alike tracks and detections are: box IoU, and OKS where both poses are confident.

SimpleBaselines' tracker matches people by OKS; a box tracker by IoU. When two people cross, their
boxes overlap alike while their joints do not, so where both poses have enough confident joints
the similarity is the mean of IoU and OKS; elsewhere (an untrained model, a hidden person) it is
IoU alone, so a bad pose never makes the tracker worse than a box tracker.
"""
import numpy as np

from livepose.core.skeleton import OKS_SIGMAS

KEYPOINT_THRESHOLD = 0.3   # a heatmap maximum below this is a guess, not a joint
MIN_COMMON_KEYPOINTS = 4   # fewer joints confident in both poses say too little about who it is
OKS_WEIGHT = 0.5           # share of OKS in the similarity where it applies
# COCO's object area is the segment's, about 0.53 of the box's for people (keypoint sigmas assume it)
SEGMENT_PER_BOX_AREA = 0.53


def iou_matrix(boxes_a, boxes_b):
    """(A, 4) and (B, 4) x1, y1, x2, y2 boxes -> (A, B) intersection over union (0 for empty boxes)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def oks_matrix(keypoints_a, scores_a, keypoints_b, scores_b, areas, sigmas=OKS_SIGMAS,
               threshold=KEYPOINT_THRESHOLD, min_common=MIN_COMMON_KEYPOINTS):
    """OKS between every pose of A and every pose of B over the joints confident in both.

    keypoints_a (A, K, 2), scores_a (A, K), keypoints_b (B, K, 2), scores_b (B, K) in pixels;
    areas (A,): box areas of A in pixels squared. Returns ((A, B) OKS, (A, B) bool: at least
    `min_common` joints confident in both, where the OKS means something).
    """
    a = np.asarray(keypoints_a, dtype=np.float64)
    b = np.asarray(keypoints_b, dtype=np.float64)
    common = (np.asarray(scores_a)[:, None, :] >= threshold) & (np.asarray(scores_b)[None, :, :] >= threshold)
    squared = ((a[:, None] - b[None]) ** 2).sum(axis=3)                                   # (A, B, K)
    variances = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2                          # COCOeval's vars
    area = np.maximum(np.asarray(areas, dtype=np.float64) * SEGMENT_PER_BOX_AREA, 1.0)[:, None, None]
    similarity = np.exp(-squared / variances / (2 * area))
    count = common.sum(axis=2)
    oks = np.where(common, similarity, 0).sum(axis=2) / np.maximum(count, 1)
    return oks, count >= min_common


def similarity_matrix(track_boxes, det_boxes, track_pose=None, det_pose=None, oks_weight=OKS_WEIGHT):
    """(T, D) similarity in [0, 1] of T tracks' predicted boxes to D detections.

    track_pose, det_pose: (keypoints (N, K, 2), scores (N, K)) or None for boxes only; the track's
    keypoints are its last pose moved with its predicted box.
    """
    iou = iou_matrix(track_boxes, det_boxes)
    if track_pose is None or det_pose is None or iou.size == 0:
        return iou
    boxes = np.asarray(track_boxes, dtype=np.float64).reshape(-1, 4)
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    oks, usable = oks_matrix(*track_pose, *det_pose, areas)
    return np.where(usable, (1 - oks_weight) * iou + oks_weight * oks, iou)
