"""Batched person crops and their normalisation."""
import numpy as np
import pytest

from livepose.core.crops import crop_persons, normalize_crops
from livepose.core.geometry import box_to_center_scale, warp_points
from livepose.core.metadata import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB


def frame_with_dots(size_hw, dots):
    """A black BGR frame with 3x3 squares of distinct colours centred on integer (x, y) dots."""
    frame = np.zeros(size_hw + (3,), np.uint8)
    for i, (x, y) in enumerate(dots):
        frame[y - 1 : y + 2, x - 1 : x + 2] = (40 * (i + 1), 255 - 40 * i, 200)
    return frame


@pytest.mark.parametrize("rotation", [0.0, 30.0])
def test_dots_land_where_the_affine_says(rotation):
    dots = [(100, 80), (130, 200), (60, 150)]
    frame = frame_with_dots((300, 400), dots)
    centers, scales = box_to_center_scale([[40.0, 50.0, 120.0, 200.0]], (256, 192))
    crops, affines = crop_persons(frame, centers, scales, (256, 192), rotations=[rotation])
    assert crops.shape == (1, 256, 192, 3) and crops.dtype == np.uint8
    expected = warp_points(np.array(dots, np.float64), affines[0])
    for i, (x, y) in enumerate(expected):
        colour = np.array((40 * (i + 1), 255 - 40 * i, 200))
        # the dot is magnified ~1.3x; its nearest crop pixel carries its colour
        pixel = crops[0, int(round(y)), int(round(x))].astype(int)
        assert np.abs(pixel - colour).max() <= 30, (i, pixel, colour)


def test_batch_of_crops_outside_and_inside_the_frame():
    frame = np.full((100, 120, 3), 200, np.uint8)
    boxes = [[10.0, 10.0, 50.0, 80.0], [500.0, 500.0, 20.0, 30.0], [0.0, 0.0, 2.0, 3.0]]
    centers, scales = box_to_center_scale(boxes, (64, 48))
    crops, affines = crop_persons(frame, centers, scales, (64, 48))
    assert crops.shape == (3, 64, 48, 3) and affines.shape == (3, 2, 3)
    assert crops[0, 32, 24].tolist() == [200, 200, 200]
    assert crops[1].max() == 0  # entirely outside the frame: black, as in training
    assert crops[2].max() == 200  # a tiny box at the corner still gives a crop


def test_no_persons_gives_empty_batch():
    crops, affines = crop_persons(np.zeros((10, 10, 3), np.uint8), np.zeros((0, 2)), np.zeros((0, 2)), (64, 48))
    assert crops.shape == (0, 64, 48, 3) and affines.shape == (0, 2, 3)
    assert normalize_crops(crops, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, True).shape == (0, 3, 64, 48)


@pytest.mark.parametrize("swap", [True, False])
def test_normalize_values_and_channel_order(swap):
    crops = np.zeros((2, 4, 5, 3), np.uint8)
    crops[..., 0], crops[..., 1], crops[..., 2] = 10, 128, 250  # B, G, R of a BGR frame
    original = crops.copy()
    out = normalize_crops(crops, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, swap_channels=swap)
    assert out.shape == (2, 3, 4, 5) and out.dtype == np.float32 and out.flags.c_contiguous
    pixels = np.array([250, 128, 10] if swap else [10, 128, 250], np.float64)
    expected = (pixels / 255.0 - np.array(IMAGENET_MEAN_RGB)) / np.array(IMAGENET_STD_RGB)
    np.testing.assert_allclose(out[1, :, 3, 4], expected, rtol=1e-5)
    np.testing.assert_array_equal(crops, original)
