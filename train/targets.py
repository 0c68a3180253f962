"""Gaussian heatmap targets: the tutorial's `generate_target`, vectorised over joints.

Used by training and by `evaluate --oracle`, so the oracle renders exactly what the network learns.
"""
import numpy as np

from livepose.core.geometry import TARGET_ENCODINGS


def generate_targets(joints, visible, input_size, sigma, subpixel=False, encoding="standard"):
    """joints: (K, 2) x, y in crop pixels; visible: (K,) >0 where labelled; input_size: (H, W).

    Returns target (K, h, w) float32 with h, w = H/4, W/4, and weight (K,) float32: 1 for a labelled joint
    whose 3-sigma window touches the heatmap, else 0. Each Gaussian is cut to a (6 sigma + 1)-pixel square.
    encoding "standard" (the tutorial's): heatmap = crop / 4, centred on the nearest heatmap pixel unless
    subpixel. "unbiased" (UDP): heatmap = crop * (w - 1)/(W - 1), centred exactly where the joint is.
    """
    if encoding not in TARGET_ENCODINGS:
        raise ValueError(f"encoding: expected one of {TARGET_ENCODINGS}, got {encoding!r}")
    joints = np.asarray(joints, dtype=np.float64).reshape(-1, 2)
    visible = np.asarray(visible).reshape(-1)
    height, width = input_size
    h, w = height // 4, width // 4
    if encoding == "unbiased":
        stride = np.array([(width - 1) / (w - 1), (height - 1) / (h - 1)])
    else:
        stride = np.array([width / w, height / h])
    centre = joints / stride
    if not subpixel and encoding == "standard":
        centre = np.floor(centre + 0.5)
    radius = sigma * 3
    # the window [centre - radius, centre + radius] must overlap the heatmap
    ul = np.floor(centre - radius)
    br = np.floor(centre + radius + 1)
    weight = ((visible > 0) & (ul[:, 0] < w) & (ul[:, 1] < h) & (br[:, 0] >= 0) & (br[:, 1] >= 0)).astype(np.float32)

    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)
    dx = xs[None, :] - centre[:, 0:1]  # (K, w)
    dy = ys[None, :] - centre[:, 1:2]  # (K, h)
    gx = np.where(np.abs(dx) <= radius, np.exp(-dx**2 / (2 * sigma**2)), 0.0)
    gy = np.where(np.abs(dy) <= radius, np.exp(-dy**2 / (2 * sigma**2)), 0.0)
    # separable Gaussian: (K, h, 1) * (K, 1, w)
    target = (gy[:, :, None] * gx[:, None, :]).astype(np.float32)
    target *= weight[:, None, None]
    return target, weight
