"""Which output layout a YOLO detector file has, and what its input and person class are.

See livepose.runtime.detector for the two layouts. YOLOX files carry no metadata, so they are
recognised by SHA-256 (KNOWN_DETECTORS) or named with `layout=`; ultralytics exports by the
metadata_props they write (author, task, names, imgsz). A wrong guess would still "work" and find
the wrong boxes, so a file matching neither is refused with a message saying how to name it.
"""
import ast
from dataclasses import dataclass

from livepose.files import sha256_of

LAYOUTS = ("ultralytics", "yolox")

# sha256 -> (layout, what the file is); files without metadata that we know how to read
KNOWN_DETECTORS = {
    "c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d": (
        "yolox", "YOLOX-Nano 416x416, Megvii-BaseDetection/YOLOX release 0.1.1rc0 (grid output)"),
    "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14": (
        "yolox", "YOLOX-Nano 416x416, Kazuhito00/YOLOX-ONNX-TFLite-Sample export (grid output)"),
}


class DetectorLayoutError(ValueError):
    """A detector model whose output layout is unknown or contradicts the layout asked for."""



@dataclass(frozen=True)
class DetectorLayout:
    """How to read one detector file: its output layout, person class, class count (None where the
    file does not say) and input size (H, W)."""

    name: str
    person_class: int
    num_classes: int | None
    input_size: tuple


def _ultralytics_names(props):
    """Class names from ultralytics metadata ("{0: 'person', ...}"), or None where absent."""
    if "names" not in props:
        return None
    try:
        names = ast.literal_eval(props["names"])  # literal_eval: data only, never code
    except (ValueError, SyntaxError):
        return None
    return names if isinstance(names, dict) else None


def identify_layout(model_path, props, layout=None):
    """The output layout of a detector file: `layout` when given, else by SHA-256, else by metadata.

    props: the model's ONNX metadata_props. Raises DetectorLayoutError when neither identifies it.
    """
    if layout is not None:
        if layout not in LAYOUTS:
            raise DetectorLayoutError(f"detector layout: expected one of {LAYOUTS}, got {layout!r}")
        return layout
    sha256 = sha256_of(model_path)
    if sha256 in KNOWN_DETECTORS:
        return KNOWN_DETECTORS[sha256][0]
    if "ultralytics" in props.get("author", "").lower() and "names" in props:
        if props.get("task", "detect") != "detect":
            raise DetectorLayoutError(
                f"detector {model_path}: an ultralytics '{props['task']}' model, expected a 'detect' model"
            )
        return "ultralytics"
    raise DetectorLayoutError(
        f"detector {model_path}: unknown output layout (sha256 {sha256}, no ultralytics metadata); if it is a "
        "YOLOX export pass --detector-layout yolox, if an ultralytics YOLOv8/YOLO11 export --detector-layout "
        "ultralytics (Python: PersonDetector(..., layout=...))"
    )


def describe_detector(model_path, props, input_shape, layout=None):
    """The DetectorLayout of a detector file.

    props: its ONNX metadata_props; input_shape: the loaded model's input shape (ints, None where
    dynamic); layout: None to identify it (identify_layout), or "yolox" / "ultralytics".
    """
    name = identify_layout(model_path, props, layout)
    person_class, num_classes = 0, None
    classes = _ultralytics_names(props) if name == "ultralytics" else None
    if classes:
        people = [index for index, label in classes.items() if label == "person"]
        if not people:
            raise DetectorLayoutError(f"detector {model_path}: none of its {len(classes)} classes is 'person'")
        person_class, num_classes = people[0], len(classes)
    return DetectorLayout(name, person_class, num_classes, _input_size(model_path, props, input_shape))


def _input_size(path, props, shape):
    if len(shape) != 4 or shape[1] != 3:
        raise DetectorLayoutError(f"detector {path}: expected an input of shape (1, 3, H, W), got {shape}")
    if shape[2] and shape[3]:
        return int(shape[2]), int(shape[3])
    try:  # a dynamic ultralytics export: its metadata says the size it was made for
        height, width = ast.literal_eval(props["imgsz"])
        return int(height), int(width)
    except (KeyError, ValueError, SyntaxError, TypeError):
        raise DetectorLayoutError(f"detector {path}: dynamic input size and no 'imgsz' metadata") from None
