"""Person crops to calibrate and validate an INT8 model: from a video or photos (the detector finds
the persons) or from COCO ground-truth boxes, cut exactly as the estimator cuts them."""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livepose.tensorrt.build import calibration_crops, read_calibration_frames

MIN_CROPS = 4        # two to calibrate on, two to score: fewer says nothing about accuracy
MAX_CROPS = 300      # NNCF's default statistics subset; more only costs time


class CalibrationError(ValueError):
    """The calibration input is unusable (missing, unreadable, nobody in it); the message says which."""


@dataclass(frozen=True)
class CalibrationSet:
    """Person crops as network inputs, split in two: `calibration` (N, 3, H, W) float32 sets the
    INT8 ranges, `validation` (M, 3, H, W) float32 scores candidates against f32; `source` says
    where they came from (recorded in the model's metadata)."""

    calibration: np.ndarray
    validation: np.ndarray
    source: str

    def __post_init__(self):
        for name in ("calibration", "validation"):
            value = getattr(self, name)
            if value.ndim != 4 or value.dtype != np.float32 or len(value) < MIN_CROPS // 2:
                raise ValueError(f"{name}: expected (N >= {MIN_CROPS // 2}, 3, H, W) float32, got "
                                 f"{value.shape} {value.dtype}")

    @property
    def count(self):
        return len(self.calibration) + len(self.validation)


def split_crops(crops, source):
    """(N, 3, H, W) crops -> CalibrationSet: every other crop validates (neighbouring frames are
    alike, so both halves see the same people and scenes)."""
    if len(crops) < MIN_CROPS:
        raise CalibrationError(f"{source}: found {len(crops)} person crop(s), expected at least {MIN_CROPS}; "
                               "calibrate on a video or photos with more people in them")
    crops = crops[:MAX_CROPS]
    return CalibrationSet(np.ascontiguousarray(crops[0::2]), np.ascontiguousarray(crops[1::2]),
                          f"{source}, {len(crops)} crops")


def detected_crops(model_meta, detector, video=None, images_dir=None):
    """CalibrationSet from the persons `detector` (a PersonDetector) finds in a video's evenly
    spaced frames or in a folder of photos."""
    flag, name = ("--calib-images", images_dir) if images_dir is not None else ("--calib-video", video)
    try:
        frames = read_calibration_frames(images_dir, video)
    except FileNotFoundError as error:
        raise CalibrationError(str(error)) from None
    batches = []
    for frame in frames:
        boxes = detector(frame).boxes
        if len(boxes):  # a frame with nobody in it would give a whole-frame crop
            batches.append(calibration_crops([frame], model_meta, [boxes]))
    crops = np.concatenate(batches) if batches else np.empty((0, 3) + model_meta.input_size, np.float32)
    if not len(crops):
        raise CalibrationError(f"{flag} {name}: the detector found no person in {len(frames)} frame(s)")
    return split_crops(crops, f"{flag} {Path(name).name}: persons detected in {len(frames)} frames")


def coco_crops(model_meta, annotations, images_dir):
    """CalibrationSet from the ground-truth person boxes of a COCO keypoints annotation file."""
    from livepose.stream.sources import MediaError, read_image

    boxes_by_image, files = _coco_person_boxes(annotations)
    if not boxes_by_image:
        raise CalibrationError(f"--calib-coco {annotations}: no labelled person in it")
    batches = []
    for image_id, boxes in sorted(boxes_by_image.items()):
        path = Path(images_dir) / files.get(image_id, "")
        try:
            frame = read_image(path)
        except MediaError as error:
            raise CalibrationError(f"--calib-coco images {images_dir}: {error}") from None
        xyxy = np.array(boxes, np.float64)
        xyxy[:, 2:] += xyxy[:, :2]
        batches.append(calibration_crops([frame], model_meta, [xyxy]))
    persons = sum(len(b) for b in boxes_by_image.values())
    return split_crops(np.concatenate(batches), f"--calib-coco {Path(annotations).name}: {persons} ground-truth persons")


def _coco_person_boxes(annotations):
    """image id -> [x, y, w, h] boxes of labelled, non-crowd persons; image id -> file name."""
    path = Path(annotations)
    if not path.is_file():
        raise CalibrationError(f"--calib-coco {path}: no such file")
    try:
        data = json.loads(path.read_text())
        files = {image["id"]: image["file_name"] for image in data["images"]}
        boxes = {}
        for ann in data["annotations"]:
            if not ann.get("iscrowd") and ann.get("num_keypoints", 0) > 0 and min(ann["bbox"][2:]) > 1:
                boxes.setdefault(ann["image_id"], []).append(ann["bbox"])
    except (ValueError, KeyError, TypeError) as error:
        raise CalibrationError(f"--calib-coco {path}: not a COCO keypoints annotation file ({error})") from None
    return boxes, files
