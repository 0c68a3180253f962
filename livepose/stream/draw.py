"""Draw poses on frames: limbs in per-limb colours, keypoints, boxes and an FPS overlay.

Knows nothing of models: it takes a Poses result and a skeleton (edges and colours).
"""
import cv2
import numpy as np

from livepose.core import skeleton

BOX_COLOR = (80, 220, 80)      # BGR
TEXT_COLOR = (255, 255, 255)
TEXT_SHADOW = (0, 0, 0)


def _thickness(frame, base):
    """Line width scaled to the frame, so drawings look alike on 480p and 4K."""
    return max(1, int(round(base * max(frame.shape[:2]) / 640.0)))


def draw_poses(frame, poses, threshold=0.3, edges=skeleton.EDGES, edge_colors=skeleton.EDGE_COLORS,
               keypoint_colors=skeleton.KEYPOINT_COLORS, boxes=True, in_place=False):
    """Draw every person of `poses` on `frame` and return the drawing.

    frame: (H, W, 3) uint8 BGR. poses: livepose.core.types.Poses in frame pixels.
    threshold: keypoints scoring below it are not drawn, nor limbs touching them.
    edges: limbs as (a, b) keypoint index pairs, with one BGR colour each in `edge_colors`;
    keypoint_colors: one BGR colour per keypoint. boxes: also draw the detector boxes and scores.
    in_place: draw on `frame` itself instead of a copy. Tracked poses (with track_ids) get their
    box and limbs in a colour of their id and "#id" by the box.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame: expected (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    if len(edge_colors) != len(edges):
        raise ValueError(f"edge_colors: expected one colour per edge ({len(edges)}), got {len(edge_colors)}")
    if len(poses) and len(keypoint_colors) != poses.num_keypoints:
        raise ValueError(f"keypoint_colors: expected {poses.num_keypoints} colours, got {len(keypoint_colors)}")
    canvas = frame if in_place else frame.copy()
    line = _thickness(canvas, 2)
    radius = _thickness(canvas, 3)
    ids = [None] * len(poses) if poses.track_ids is None else poses.track_ids.tolist()
    for keypoints, scores, box, box_score, track_id in zip(poses.keypoints, poses.scores, poses.boxes,
                                                           poses.box_scores, ids):
        person_color = BOX_COLOR if track_id is None else id_color(track_id)
        if boxes:
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), person_color, max(1, line // 2), cv2.LINE_AA)
            label = f"{box_score:.2f}" if track_id is None else f"#{track_id} {box_score:.2f}"
            _text(canvas, label, (x1 + 2, max(y1 - 4, 12)), scale=0.4 * line)
        visible = scores >= threshold                              # (K,)
        points = np.round(keypoints).astype(np.int32)              # (K, 2)
        for (a, b), color in zip(edges, edge_colors):
            if visible[a] and visible[b]:
                cv2.line(canvas, tuple(points[a]), tuple(points[b]), color if track_id is None else person_color,
                         line, cv2.LINE_AA)
        for point, color, shown in zip(points, keypoint_colors, visible):
            if shown:
                cv2.circle(canvas, tuple(point), radius, color, -1, cv2.LINE_AA)
    return canvas


def id_color(track_id):
    """A bright BGR colour for a track id: hues 137.5 degrees apart (the golden angle), so ids
    that follow each other look unlike."""
    hue = int((track_id * 137.508) % 360) // 2  # OpenCV hue is 0-179
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(v) for v in bgr)


def draw_fps(frame, fps, in_place=True):
    """Write 'NN.N fps' in the top-left corner of `frame` (H, W, 3) uint8 and return it."""
    canvas = frame if in_place else frame.copy()
    scale = 0.6 * _thickness(canvas, 1.0)
    _text(canvas, f"{fps:.1f} fps", (8, int(24 * scale / 0.6)), scale=scale)
    return canvas


def _text(canvas, text, origin, scale):
    """Text with a dark outline, readable on any background."""
    scale = max(scale, 0.4)
    width = max(1, int(round(scale * 2)))
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_SHADOW, width + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOR, width, cv2.LINE_AA)
