"""The tutorial's keypoint-weighted heatmap MSE (HMLoss), vectorised over keypoints."""
from paddle import nn


def heatmap_loss(heatmaps, targets, weights):
    """0.5 * mean over (N, K) of weight * mean over pixels of (heatmap - target)^2.

    heatmaps, targets: (N, K, h, w); weights: (N, K) or (N, K, 1). Computed in float32, also under AMP.
    """
    n, k = heatmaps.shape[0], heatmaps.shape[1]
    diff = heatmaps.astype("float32") - targets.astype("float32")
    # (N, K, h, w) -> (N, K, h*w) -> per-joint MSE (N, K)
    per_joint = (diff * diff).reshape([n, k, -1]).mean(axis=2)
    return 0.5 * (per_joint * weights.astype("float32").reshape([n, k])).mean()


class HMLoss(nn.Layer):
    """Layer form of `heatmap_loss`, as the tutorial's HMLoss(heatmap, target, target_weight)."""

    def forward(self, heatmaps, targets, weights):
        return heatmap_loss(heatmaps, targets, weights)
