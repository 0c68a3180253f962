"""Box -> center/scale and the crop affines: against the tutorial's formulas, and round trips."""
import cv2
import numpy as np
import pytest

from livepose.core.geometry import (
    PIXEL_STD,
    box_to_center_scale,
    get_affine_transform,
    get_affine_transforms,
    heatmap_to_frame,
    warp_points,
    xyxy_to_xywh,
)


def tutorial_affine(center, scale, rot, output_size_wh, shift=(0.0, 0.0), inv=False):
    """SimpleBaselines' get_affine_transform (the tutorial's work/transforms.py), written out here as
    the reference: three points mapped with cv2.getAffineTransform, output_size as [W, H]."""
    scale_tmp = np.asarray(scale, np.float64) * 200.0
    shift = np.asarray(shift, np.float64)
    src_w = scale_tmp[0]
    dst_w, dst_h = output_size_wh
    rot_rad = np.pi * rot / 180
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    src_point = [0, src_w * -0.5]
    src_dir = np.array([src_point[0] * cs - src_point[1] * sn, src_point[0] * sn + src_point[1] * cs])
    dst_dir = np.array([0, dst_w * -0.5])

    def third(a, b):
        direct = a - b
        return b + np.array([-direct[1], direct[0]])

    src = np.zeros((3, 2))
    dst = np.zeros((3, 2))
    src[0] = center + scale_tmp * shift
    src[1] = center + src_dir + scale_tmp * shift
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    src[2] = third(src[0], src[1])
    dst[2] = third(dst[0], dst[1])
    if inv:
        return cv2.getAffineTransform(np.float32(dst), np.float32(src))
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def tutorial_xywh2cs(x, y, w, h, aspect_ratio):
    """The tutorial's COCOPose._xywh2cs."""
    center = np.array([x + w * 0.5, y + h * 0.5])
    if w > aspect_ratio * h:
        h = w * 1.0 / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return center, np.array([w / PIXEL_STD, h / PIXEL_STD]) * 1.25


CASES = [
    # center, scale, rotation (deg), output (H, W), shift
    ((320.0, 240.0), (1.0, 1.333), 0.0, (256, 192), (0.0, 0.0)),
    ((100.5, 400.25), (0.4, 0.533), 30.0, (384, 288), (0.0, 0.0)),
    ((10.0, -20.0), (2.5, 3.333), -75.0, (64, 48), (0.1, -0.05)),
    ((640.0, 360.0), (0.05, 0.0667), 180.0, (96, 72), (0.0, 0.0)),
]


@pytest.mark.parametrize("center, scale, rot, size_hw, shift", CASES)
@pytest.mark.parametrize("inverse", [False, True])
def test_affine_matches_tutorial_formula(center, scale, rot, size_hw, shift, inverse):
    ours = get_affine_transform(center, scale, rot, size_hw, shift=shift, inverse=inverse)
    reference = tutorial_affine(np.array(center), scale, rot, size_hw[::-1], shift, inverse)
    # the tutorial solves in float32: compare where points land, relative to the map's magnitude
    points = np.array([[0.0, 0.0], [size_hw[1], size_hw[0]], [center[0], center[1]]])
    np.testing.assert_allclose(warp_points(points, ours), warp_points(points, reference), rtol=1e-4, atol=2e-3)


def test_batched_affines_equal_one_at_a_time():
    centers = np.array([c[0] for c in CASES])
    scales = np.array([c[1] for c in CASES])
    rotations = np.array([c[2] for c in CASES])
    batched = get_affine_transforms(centers, scales, (256, 192), rotations)
    assert batched.shape == (len(CASES), 2, 3)
    for i in range(len(CASES)):
        np.testing.assert_allclose(batched[i], get_affine_transform(centers[i], scales[i], rotations[i], (256, 192)))


@pytest.mark.parametrize("rotation", [0.0, 17.0, -45.0, 90.0, 135.0])
@pytest.mark.parametrize("size_hw", [(256, 192), (384, 288), (64, 48)])
def test_round_trip_frame_crop_frame_under_1e3_px(rotation, size_hw):
    rng = np.random.default_rng(0)
    n, k = 5, 17
    boxes = np.column_stack([rng.uniform(-50, 600, n), rng.uniform(-50, 400, n), rng.uniform(3, 300, n), rng.uniform(3, 400, n)])
    centers, scales = box_to_center_scale(boxes, size_hw)
    points = rng.uniform(-100, 800, (n, k, 2))
    forward = get_affine_transforms(centers, scales, size_hw, np.full(n, rotation))
    backward = get_affine_transforms(centers, scales, size_hw, np.full(n, rotation), inverse=True)
    back = warp_points(warp_points(points, forward), backward)
    assert np.abs(back - points).max() < 1e-3
    # as 3x3 matrices, backward is exactly forward's inverse
    def full(affines):
        return np.concatenate([affines, np.broadcast_to([0.0, 0.0, 1.0], (len(affines), 1, 3))], axis=1)

    np.testing.assert_allclose(full(backward) @ full(forward), np.broadcast_to(np.eye(3), (n, 3, 3)), atol=1e-9)


def test_heatmap_to_frame_inverts_the_crop_map_at_quarter_resolution():
    """A point at crop pixel p sits at heatmap pixel p / 4 (the training targets' convention)."""
    input_size, heatmap_size = (256, 192), (64, 48)
    centers, scales = box_to_center_scale([[40.0, 30.0, 120.0, 260.0], [300.0, 10.0, 15.0, 20.0]], input_size)
    frame_points = np.array([[[60.0, 50.0], [150.0, 280.0], [100.0, 100.0]], [[305.0, 12.0], [310.0, 25.0], [290.0, 0.0]]])
    crop_points = warp_points(frame_points, get_affine_transforms(centers, scales, input_size))
    back = heatmap_to_frame(crop_points / 4.0, centers, scales, heatmap_size)
    assert np.abs(back - frame_points).max() < 1e-3


@pytest.mark.parametrize(
    "box, size_hw",
    [
        ((10.0, 20.0, 100.0, 300.0), (256, 192)),  # tall: width grows
        ((10.0, 20.0, 400.0, 100.0), (256, 192)),  # wide: height grows
        ((0.0, 0.0, 75.0, 100.0), (256, 192)),  # exactly the network's 3:4 aspect
        ((5.0, 5.0, 2.0, 1.0), (384, 288)),  # a few pixels
    ],
)
def test_box_to_center_scale_matches_tutorial(box, size_hw):
    center, scale = box_to_center_scale([box], size_hw)
    ref_center, ref_scale = tutorial_xywh2cs(*box, aspect_ratio=size_hw[1] / size_hw[0])
    np.testing.assert_allclose(center[0], ref_center)
    np.testing.assert_allclose(scale[0], ref_scale)
    # the padded box has the network's aspect and contains the original box
    w, h = scale[0] * PIXEL_STD
    assert w / h == pytest.approx(size_hw[1] / size_hw[0])
    assert w >= box[2] * 1.25 - 1e-9 and h >= box[3] * 1.25 - 1e-9


def test_xyxy_to_xywh():
    np.testing.assert_allclose(xyxy_to_xywh([[1, 2, 11, 22], [0, 0, 0, 0]]), [[1, 2, 10, 20], [0, 0, 0, 0]])
