"""Heatmaps -> keypoints in heatmap pixels. Pure numpy; never modifies the caller's heatmaps.

Coordinates are (x, y) with pixel centres at integers, the convention of the training targets.
"""
import cv2
import numpy as np

REFINEMENTS = ("quarter", "dark", "none")
# the refinement each target encoding is decoded with unless the caller asks for another (UDP pairs with DARK)
DEFAULT_REFINE = {"standard": "quarter", "unbiased": "dark"}


def argmax_heatmaps(heatmaps):
    """(N, K, h, w) -> integer peak coords (N, K, 2) float64 (x, y) and peak values (N, K)."""
    heatmaps = _check_heatmaps(heatmaps)
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    index = flat.argmax(axis=2)
    scores = np.take_along_axis(flat, index[..., None], axis=2)[..., 0]
    coords = np.stack([index % w, index // w], axis=2).astype(np.float64)
    return coords, scores.astype(np.float32)


def decode_heatmaps(heatmaps, refine="quarter", sigma=2.0):
    """Keypoints from heatmaps.

    heatmaps: (N, K, h, w). refine: "quarter" (SimpleBaselines: a quarter pixel toward the higher
    neighbour), "dark" (Zhang et al. 2020: Taylor expansion of the log of the heatmap smoothed with
    the training Gaussian of `sigma`), or "none". Returns coords (N, K, 2) float64 in heatmap pixels and
    scores (N, K) float32 = heatmap maxima.
    """
    if refine not in REFINEMENTS:
        raise ValueError(f"refine: expected one of {REFINEMENTS}, got {refine!r}")
    heatmaps = _check_heatmaps(heatmaps)
    coords, scores = argmax_heatmaps(heatmaps)
    if refine == "quarter":
        coords = coords + 0.25 * np.sign(_central_differences(heatmaps, coords))
    elif refine == "dark":
        coords = _refine_dark(heatmaps, coords, sigma)
    return coords, scores


def _check_heatmaps(heatmaps):
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 4 or heatmaps.shape[2] < 1 or heatmaps.shape[3] < 1:
        raise ValueError(f"heatmaps: expected an array of shape (N, K, h, w), got shape {heatmaps.shape}")
    return heatmaps


def _gather(maps, x, y):
    """maps (N, K, h, w), integer x, y (N, K) -> values (N, K)."""
    n, k = x.shape
    return maps[np.arange(n)[:, None], np.arange(k)[None, :], y, x]


def _central_differences(heatmaps, coords):
    """h(x+1) - h(x-1) and h(y+1) - h(y-1) at integer coords (N, K, 2); 0 where a neighbour is missing."""
    _, _, h, w = heatmaps.shape
    x = coords[..., 0].astype(np.int64)
    y = coords[..., 1].astype(np.int64)
    has_x = (x > 0) & (x < w - 1)
    has_y = (y > 0) & (y < h - 1)
    xl, xr = np.clip(x - 1, 0, w - 1), np.clip(x + 1, 0, w - 1)
    yu, yd = np.clip(y - 1, 0, h - 1), np.clip(y + 1, 0, h - 1)
    dx = np.where(has_x, _gather(heatmaps, xr, y) - _gather(heatmaps, xl, y), 0.0)
    dy = np.where(has_y, _gather(heatmaps, x, yd) - _gather(heatmaps, x, yu), 0.0)
    return np.stack([dx, dy], axis=2)


def _refine_dark(heatmaps, coords, sigma):
    """DARK: coords += -H^-1 g of the log of the smoothed heatmap at the peak; quarter shift near borders."""
    n, k, h, w = heatmaps.shape
    smooth = np.empty((n, k, h, w), dtype=np.float32)
    for i in range(n):
        for j in range(k):
            hm = heatmaps[i, j].astype(np.float32)
            peak = hm.max()
            blurred = cv2.GaussianBlur(hm, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_CONSTANT)
            # keep the original peak height, as DARK's modulation does
            smooth[i, j] = blurred * (peak / blurred.max()) if blurred.max() > 0 else blurred
    logmap = np.log(np.maximum(smooth, 1e-10)).astype(np.float64)

    x = coords[..., 0].astype(np.int64)
    y = coords[..., 1].astype(np.int64)
    inside = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)
    xc, yc = np.clip(x, 2, w - 3), np.clip(y, 2, h - 3)

    def at(dx, dy):
        return _gather(logmap, xc + dx, yc + dy)

    centre = at(0, 0)
    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    dyy = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy * dxy
    usable = inside & (det > 1e-12) & (dxx < 0)  # a maximum: negative-definite Hessian
    safe_det = np.where(usable, det, 1.0)
    # offset = -H^-1 g with H^-1 = [[dyy, -dxy], [-dxy, dxx]] / det
    off_x = -(dyy * gx - dxy * gy) / safe_det
    off_y = -(-dxy * gx + dxx * gy) / safe_det
    offsets = np.stack([off_x, off_y], axis=2)
    # a Taylor step longer than a pixel means the quadratic model does not hold there
    usable &= np.abs(offsets).max(axis=2) <= 1.0
    quarter = 0.25 * np.sign(_central_differences(heatmaps, coords))
    return coords + np.where(usable[..., None], offsets, quarter)
