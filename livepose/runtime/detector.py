"""Person boxes from YOLO detectors exported to ONNX, in two output layouts.

- "ultralytics": YOLOv8 / YOLO11 exports (`yolo export format=onnx`). Input RGB 0-1, letterboxed
  centred with pad 114; output (1, 4 + C, A): cx, cy, w, h in input pixels and C class scores, no
  objectness. Told apart by the metadata_props ultralytics writes (author, task, names, imgsz).
- "yolox": YOLOX exports as Megvii's tools/export_onnx.py writes them (grid predictions, no
  decode in the graph). Input BGR 0-255, letterboxed top-left with pad 114 (YOLOX's `preproc`);
  output (1, A, 5 + C) over strides 8, 16, 32: xy = (p + grid) * stride, wh = exp(p) * stride,
  objectness and class scores already sigmoid; score = objectness * class score. YOLOX files carry
  no metadata, so they are recognised by SHA-256 or named with `layout=` (detector_layout).

A box is a person when person is its best class (as ultralytics and YOLOX report classes).
"""
from dataclasses import dataclass

import cv2
import numpy as np

from livepose.core.types import Detections, check_frame
from livepose.runtime.detector_layout import DetectorLayoutError
from livepose.runtime.open_model import open_model

PAD_VALUE = 114  # both YOLO families pad with this grey
YOLOX_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the detector input: input = frame * ratio + pad."""

    ratio: float
    pad: tuple  # (x, y) pixels added on the left and top

    def to_frame(self, boxes):
        """(N, 4) x1, y1, x2, y2 in input pixels -> frame pixels."""
        pad = np.array(self.pad * 2, dtype=np.float64)
        return (np.asarray(boxes, dtype=np.float64) - pad) / self.ratio


def letterbox(frame, input_size, centered):
    """Fit a (H0, W0, 3) frame into input_size (H, W) keeping its aspect, padding with 114.

    centered=True: ultralytics' LetterBox (round the resized size, split the padding, the odd pixel
    to the bottom/right); False: YOLOX's preproc (truncate the resized size, pad bottom/right only).
    Returns the (H, W, 3) uint8 image and its Letterbox.
    """
    height, width = input_size
    frame_h, frame_w = frame.shape[:2]
    ratio = min(height / frame_h, width / frame_w)
    # a side of at least 1 px keeps very thin frames valid
    if centered:
        new_w, new_h = max(int(round(frame_w * ratio)), 1), max(int(round(frame_h * ratio)), 1)
        left, top = int(round((width - new_w) / 2 - 0.1)), int(round((height - new_h) / 2 - 0.1))
    else:
        new_w, new_h = max(int(frame_w * ratio), 1), max(int(frame_h * ratio), 1)
        left, top = 0, 0
    image = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    resized = frame if (new_w, new_h) == (frame_w, frame_h) else cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    image[top : top + new_h, left : left + new_w] = resized
    return image, Letterbox(ratio, (left, top))


def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression. boxes (N, 4) xyxy, scores (N,) -> kept indices, best first.

    A box is dropped when its IoU with a kept, higher-scoring box exceeds iou_threshold.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def yolox_grid(input_size, strides=YOLOX_STRIDES):
    """Grid cells (A, 2) x, y and their strides (A,) in YOLOX's output order (stride, then row-major)."""
    height, width = input_size
    grids, cell_strides = [], []
    for stride in strides:
        ys, xs = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
        grids.append(np.stack([xs, ys], axis=2).reshape(-1, 2))
        cell_strides.append(np.full(len(grids[-1]), stride))
    return np.concatenate(grids).astype(np.float64), np.concatenate(cell_strides).astype(np.float64)


def decode_yolox(output, input_size, person_class=0):
    """Raw YOLOX output (1, A, 5 + C) -> person boxes (M, 4) xyxy in input pixels and scores (M,)."""
    grid, strides = yolox_grid(input_size)
    if output.ndim != 3 or output.shape[0] != 1 or output.shape[1] != len(grid) or output.shape[2] < 6:
        raise DetectorLayoutError(
            f"yolox output: expected shape (1, {len(grid)}, 5 + classes) for a {input_size[0]}x{input_size[1]} "
            f"input, got {output.shape}"
        )
    pred = output[0].astype(np.float64)
    class_scores = pred[:, 5:] * pred[:, 4:5]  # objectness * class probability
    is_person = class_scores.argmax(axis=1) == person_class
    centre = (pred[is_person, :2] + grid[is_person]) * strides[is_person, None]
    size = np.exp(pred[is_person, 2:4]) * strides[is_person, None]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    return boxes, class_scores[is_person, person_class]


def decode_ultralytics(output, num_classes=None, person_class=0):
    """Ultralytics output (1, 4 + C, A) -> person boxes (M, 4) xyxy in input pixels and scores (M,).

    num_classes: C from the model's metadata; None (unknown) accepts any C with C + 4 <= A.
    """
    channels_ok = output.ndim == 3 and (
        output.shape[1] == 4 + num_classes if num_classes else 5 <= output.shape[1] <= output.shape[2]
    )
    if not channels_ok or output.shape[0] != 1:
        expected = f"4 + {num_classes}" if num_classes else "4 + classes"
        raise DetectorLayoutError(
            f"ultralytics output: expected shape (1, {expected}, anchors) as YOLOv8/YOLO11 export it, got {output.shape} "
            "(end-to-end exports with NMS in the graph are not supported)"
        )
    # (4 + C, A) -> (A, 4 + C)
    pred = output[0].T.astype(np.float64)
    class_scores = pred[:, 4:]
    is_person = class_scores.argmax(axis=1) == person_class
    centre, size = pred[is_person, :2], pred[is_person, 2:4]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    return boxes, class_scores[is_person, person_class]


class PersonDetector:
    """A YOLO detector that returns person boxes in frame pixels.

    model_path: an ONNX file, or a TensorRT .engine (see open_model for how the runtime is chosen);
    layout: None (identify it, see detector_layout.identify_layout), "yolox" or "ultralytics".
    """

    def __init__(self, model_path, backend="auto", layout=None, score_threshold=0.3, nms_iou=0.45,
                 max_detections=300, precision=None, num_threads=None):
        opened = open_model(model_path, "detector", backend, precision=precision, num_threads=num_threads, layout=layout)
        self.backend, self.model_path = opened.backend, opened.path
        self.layout = opened.layout.name
        self.person_class, self.num_classes = opened.layout.person_class, opened.layout.num_classes
        self.input_size = opened.layout.input_size
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_detections = int(max_detections)

    def preprocess(self, frame_bgr):
        """(H0, W0, 3) uint8 BGR frame -> (1, 3, H, W) float32 input and its Letterbox."""
        if self.layout == "ultralytics":
            image, box = letterbox(frame_bgr, self.input_size, centered=True)
            # (H, W, 3) BGR -> (1, 3, H, W) RGB in 0-1
            tensor = image[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        else:
            image, box = letterbox(frame_bgr, self.input_size, centered=False)
            tensor = image.transpose(2, 0, 1)[None].astype(np.float32)
        return np.ascontiguousarray(tensor), box

    def __call__(self, frame_bgr):
        """(H0, W0, 3) uint8 BGR frame -> Detections of persons, boxes clipped to the frame."""
        frame_bgr = check_frame(frame_bgr)
        tensor, box = self.preprocess(frame_bgr)
        output = self.backend.run(tensor)
        if self.layout == "ultralytics":
            boxes, scores = decode_ultralytics(output, self.num_classes, self.person_class)
        else:
            boxes, scores = decode_yolox(output, self.input_size, self.person_class)
        confident = scores > self.score_threshold
        boxes, scores = boxes[confident], scores[confident]
        # NMS before clipping, in input pixels, as ultralytics and YOLOX do
        keep = nms(boxes, scores, self.nms_iou)[: self.max_detections]
        height, width = frame_bgr.shape[:2]
        boxes = np.clip(box.to_frame(boxes[keep]), 0, [width, height, width, height])
        # a box wholly outside the frame clips to nothing
        visible = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return Detections(boxes[visible], scores[keep][visible])

    def close(self):
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
