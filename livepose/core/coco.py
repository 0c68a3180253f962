"""COCO keypoint results: SimpleBaselines' person rescoring and the result records COCOeval reads."""
import numpy as np

# SimpleBaselines' rescoring: a person's score is the box score times the mean of the keypoint
# scores above this (its `in_vis_thre`), so confident skeletons outrank confident boxes
RESCORE_KEYPOINT_THRESHOLD = 0.2


def rescore(box_scores, keypoint_scores, threshold=RESCORE_KEYPOINT_THRESHOLD):
    """(N,) box scores and (N, K) keypoint scores -> (N,) person scores: box score times the mean of
    the keypoint scores above `threshold` (0 for a person with none)."""
    keypoint_scores = np.asarray(keypoint_scores, dtype=np.float64)
    confident = keypoint_scores > threshold                           # (N, K)
    counts = confident.sum(axis=1)
    means = np.where(counts > 0, (keypoint_scores * confident).sum(axis=1) / np.maximum(counts, 1), 0.0)
    return np.asarray(box_scores, dtype=np.float64) * means
