"""Box -> center/scale and the affine maps between frame, crop and heatmap (SimpleBaselines conventions).

Sizes are (H, W) everywhere in livepose. The tutorial's IMAGE_SIZE / output_size are [W, H]; the
functions here take (H, W) and convert internally. `scale` is the box size in units of
PIXEL_STD = 200 px, as in the tutorial and the original Microsoft code, so published weights and our
training crops agree.
"""
import numpy as np

PIXEL_STD = 200.0
BOX_PADDING = 1.25  # the tutorial's margin around a person box
# How crops, targets and decoding place a joint (a model is trained with one and must be decoded with it):
#   standard  SimpleBaselines: the box centre goes to x = W/2, zoom W / box width, heatmap = crop / 4
#   unbiased  UDP (Huang et al., CVPR 2020): measured in unit lengths (size - 1), so the box centre goes
#             to the middle pixel (W - 1)/2, zoom (W - 1) / box width per axis, heatmap = crop * (w-1)/(W-1);
#             a mirrored crop is then exactly the reversed columns, and targets keep sub-pixel centres
TARGET_ENCODINGS = ("standard", "unbiased")


def xyxy_to_xywh(boxes):
    """(N, 4) x1, y1, x2, y2 -> (N, 4) x, y, w, h."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def box_to_center_scale(boxes_xywh, input_size, padding=BOX_PADDING):
    """The tutorial's `_xywh2cs`, vectorised.

    boxes_xywh: (N, 4) x, y, w, h in frame pixels.  input_size: (H, W) of the network input.
    Returns center (N, 2) and scale (N, 2) (box w, h / PIXEL_STD after the aspect fix and padding).
    The box grows along one axis to the network's aspect ratio, never shrinks.
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    height, width = input_size
    aspect = width / height
    x, y, w, h = boxes.T
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=1)
    w_fixed = np.where(w > aspect * h, w, h * aspect)
    h_fixed = np.where(w > aspect * h, w / aspect, h)
    scale = np.stack([w_fixed, h_fixed], axis=1) / PIXEL_STD * padding
    return center, scale


def _rotate(vectors, angle_rad):
    """Rotate (N, 2) vectors by (N,) angles: the tutorial's `get_dir`."""
    sn, cs = np.sin(angle_rad), np.cos(angle_rad)
    x, y = vectors[:, 0], vectors[:, 1]
    return np.stack([x * cs - y * sn, x * sn + y * cs], axis=1)


def _third_point(a, b):
    """The tutorial's `get_3rd_point`: b + (a - b) turned by 90 degrees. (N, 2) each."""
    d = a - b
    return b + np.stack([-d[:, 1], d[:, 0]], axis=1)


def get_affine_transforms(centers, scales, output_size, rotations=None, shift=(0.0, 0.0), inverse=False,
                          encoding="standard"):
    """The tutorial's `get_affine_transform`, for N boxes at once, or UDP's with encoding="unbiased".

    centers, scales: (N, 2); output_size: (H, W) of the crop (or heatmap); rotations: (N,) degrees
    or None. Returns (N, 2, 3) float64 affines mapping frame -> crop (or crop -> frame if inverse).
    Standard: like the tutorial, only the scale's width sets the zoom (the aspect fix made the height
    agree). Unbiased: see TARGET_ENCODINGS.
    """
    if encoding not in TARGET_ENCODINGS:
        raise ValueError(f"encoding: expected one of {TARGET_ENCODINGS}, got {encoding!r}")
    if encoding == "unbiased":
        return _unbiased_transforms(centers, scales, output_size, rotations, shift, inverse)
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    scales = np.asarray(scales, dtype=np.float64).reshape(-1, 2)
    n = len(centers)
    rot = np.zeros(n) if rotations is None else np.broadcast_to(np.asarray(rotations, dtype=np.float64), (n,))
    out_h, out_w = output_size
    scale_px = scales * PIXEL_STD
    shift = np.asarray(shift, dtype=np.float64)

    src = np.empty((n, 3, 2))
    dst = np.empty((n, 3, 2))
    src_dir = _rotate(np.stack([np.zeros(n), scale_px[:, 0] * -0.5], axis=1), np.deg2rad(rot))
    src[:, 0] = centers + scale_px * shift
    src[:, 1] = src[:, 0] + src_dir
    dst[:, 0] = (out_w * 0.5, out_h * 0.5)
    dst[:, 1] = dst[:, 0] + (0.0, out_w * -0.5)
    src[:, 2] = _third_point(src[:, 0], src[:, 1])
    dst[:, 2] = _third_point(dst[:, 0], dst[:, 1])
    if inverse:
        src, dst = dst, src
    # Solve [x y 1] @ M.T = [x' y'] for each box: (N, 3, 3) @ (N, 3, 2)
    lhs = np.concatenate([src, np.ones((n, 3, 1))], axis=2)
    return np.linalg.solve(lhs, dst).transpose(0, 2, 1)


def _unbiased_transforms(centers, scales, output_size, rotations, shift, inverse):
    """UDP's warp (mmpose's get_warp_matrix), with the tutorial's rotation direction: (N, 2, 3)."""
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    scales = np.asarray(scales, dtype=np.float64).reshape(-1, 2)
    out_h, out_w = output_size
    # the rotation part of the standard map at unit zoom (a similarity: its linear part / its zoom)
    unit = get_affine_transforms(np.zeros_like(centers), np.full_like(scales, out_w / PIXEL_STD), output_size,
                                 rotations)[:, :, :2]
    zoom = np.stack([(out_w - 1) / (scales[:, 0] * PIXEL_STD), (out_h - 1) / (scales[:, 1] * PIXEL_STD)], axis=1)
    linear = zoom[:, :, None] * unit  # (N, 2, 2): scale rows x and y
    source = centers + scales * PIXEL_STD * np.asarray(shift, dtype=np.float64)
    middle = np.array([(out_w - 1) * 0.5, (out_h - 1) * 0.5])
    offset = middle - np.einsum("nij,nj->ni", linear, source)
    affines = np.concatenate([linear, offset[:, :, None]], axis=2)
    return invert_affines(affines) if inverse else affines


def invert_affines(affines):
    """(N, 2, 3) affines -> their inverses (N, 2, 3)."""
    linear = np.linalg.inv(affines[:, :, :2])
    return np.concatenate([linear, -np.einsum("nij,nj->ni", linear, affines[:, :, 2])[:, :, None]], axis=2)


def get_affine_transform(center, scale, rotation, output_size, shift=(0.0, 0.0), inverse=False, encoding="standard"):
    """One-box form of `get_affine_transforms`: returns a (2, 3) affine."""
    return get_affine_transforms(center, scale, output_size, [rotation], shift, inverse, encoding)[0]


def warp_points(points, affines):
    """Apply (N, 2, 3) affines to (N, K, 2) points -> (N, K, 2). A (2, 3) affine and (K, 2) points also work."""
    points = np.asarray(points, dtype=np.float64)
    affines = np.asarray(affines, dtype=np.float64)
    if affines.ndim == 2:
        return points @ affines[:, :2].T + affines[:, 2]
    # (N, K, 2) @ (N, 2, 2) + (N, 1, 2)
    return points @ affines[:, :, :2].transpose(0, 2, 1) + affines[:, None, :, 2]


def heatmap_to_frame(coords, centers, scales, heatmap_size, encoding="standard"):
    """Keypoints (N, K, 2) in heatmap pixels -> frame pixels, for crops made with rotation 0.

    Uses the inverse of the encoding's affine at heatmap resolution (the tutorial's `transform_preds`
    for standard), the same map training used to place targets, so decode and warp-back agree with the crops.
    """
    inverse = get_affine_transforms(centers, scales, heatmap_size, inverse=True, encoding=encoding)
    return warp_points(coords, inverse)
