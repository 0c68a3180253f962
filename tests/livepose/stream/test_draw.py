"""Drawing: limbs in their own colours, hidden low-score keypoints, boxes, and the FPS overlay."""
import numpy as np
import pytest

from livepose.core import skeleton
from livepose.core.types import Poses
from livepose.stream.draw import draw_fps, draw_poses

SIZE = (1280, 1280)  # lines 4 px wide: their middle pixels carry the exact colour


def one_person(scores):
    """A person with its 17 keypoints on a circle: no limb's midpoint lies on a keypoint."""
    angles = 2 * np.pi * np.arange(17) / 17
    points = 640 + 560 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return Poses(points[None].astype(np.float32), np.asarray(scores, np.float32)[None],
                 np.array([[20, 20, 1200, 1200]], np.float32), np.array([0.9], np.float32))


def pixel(image, point):
    x, y = (int(round(v)) for v in point)
    return tuple(int(c) for c in image[y, x])


def test_limbs_take_their_colour_and_low_scores_are_hidden():
    frame = np.zeros(SIZE + (3,), np.uint8)
    scores = np.full(17, 0.9)
    scores[9] = 0.1  # left wrist below the threshold: it and the left forearm (7, 9) are not drawn
    poses = one_person(scores)
    kps = poses.keypoints[0]
    for (a, b), color in zip(skeleton.EDGES, skeleton.EDGE_COLORS):
        # one limb at a time: limbs cross each other
        drawn = draw_poses(frame, poses, threshold=0.3, edges=[(a, b)], edge_colors=[color], boxes=False)
        expected = (0, 0, 0) if 9 in (a, b) else tuple(color)
        assert pixel(drawn, (kps[a] + kps[b]) / 2) == expected, (a, b)
    assert not frame.any()  # the caller's frame is untouched
    drawn = draw_poses(frame, poses, threshold=0.3, boxes=False)
    for index, point in enumerate(kps):
        expected = skeleton.KEYPOINT_COLORS[index] if index != 9 else (0, 0, 0)
        assert pixel(drawn, point) == tuple(expected), index
    # colours differ by side: a left limb, a right limb and the shoulders' line
    assert len({skeleton.EDGE_COLORS[i] for i in (8, 9, 7)}) == 3


def test_boxes_are_optional_and_in_place_draws_on_the_frame():
    frame = np.zeros(SIZE + (3,), np.uint8)
    poses = one_person(np.zeros(17))  # no keypoint shown: only the box can appear
    assert not draw_poses(frame, poses, boxes=False).any()
    boxed = draw_poses(frame, poses, boxes=True)
    assert boxed[600, 20].any() and boxed[20, 600].any()  # left and top edges of the box
    assert not boxed[600, 600].any()
    result = draw_poses(frame, poses, in_place=True)
    assert result is frame and frame.any()


def test_nobody_draws_nothing():
    frame = np.full(SIZE + (3,), 7, np.uint8)
    assert np.array_equal(draw_poses(frame, Poses.empty()), frame)


def test_fps_overlay_writes_in_the_corner_only():
    frame = np.zeros(SIZE + (3,), np.uint8)
    draw_fps(frame, 23.4)
    ys, xs = np.nonzero(frame.any(axis=2))
    assert len(ys) > 50 and ys.max() < 150 and xs.max() < 400


@pytest.mark.parametrize("frame, message", [
    (np.zeros((10, 10), np.uint8), r"expected \(H, W, 3\) uint8"),
    (np.zeros((10, 10, 3), np.float32), r"expected \(H, W, 3\) uint8"),
])
def test_bad_frames_are_refused(frame, message):
    with pytest.raises(ValueError, match=message):
        draw_poses(frame, Poses.empty())
