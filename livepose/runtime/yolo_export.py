"""`livepose export-detector`: an ultralytics YOLO checkpoint -> the static ONNX PersonDetector reads.

Needs the `yolo` extra (ultralytics, torch); imported only here. The export is static (fixed
1x3xSxS input, no NMS in the graph), the layout PersonDetector decodes; ultralytics writes its
metadata (author, task, names, imgsz) into the file, which is how the detector recognises it.
"""
import os
import shutil
import tempfile
from pathlib import Path

from livepose.core.metadata import read_onnx_metadata_props
from livepose.runtime.detector_layout import identify_layout

_INSTALL = "pip install 'livepose[yolo]' (ultralytics and torch, several GB)"


class ExportError(RuntimeError):
    """The YOLO export failed; the message says why and what to do."""


def export_detector(weights, out=None, imgsz=640, opset=None):
    """Export `weights` (a .pt checkpoint, or a model .yaml for random weights) to ONNX.

    out: the .onnx to write (default: the weights' name with .onnx, in the current folder);
    imgsz: the square input side. Written atomically: an interrupted export leaves no partial file.
    Returns the path written.
    """
    # ultralytics pip-installs missing packages at run time unless told not to; we never let it
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    try:
        from ultralytics import YOLO
    except ImportError as error:
        raise ExportError(f"export-detector needs ultralytics ({error}): {_INSTALL}") from None
    out = Path(out) if out else Path(Path(str(weights)).stem + ".onnx")
    if out.suffix != ".onnx":
        raise ValueError(f"out: expected a path ending in .onnx, got {out}")
    if not isinstance(imgsz, int) or imgsz <= 0 or imgsz % 32:
        raise ValueError(f"imgsz: expected a positive multiple of 32 (the largest YOLO stride), got {imgsz!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as work:
        try:
            model = YOLO(str(weights), task="detect")
            if model.task != "detect":
                raise ExportError(f"weights {weights}: a YOLO '{model.task}' model; export-detector needs a 'detect' model")
            # the exporter writes beside `pt_path` (a .yaml model: into the current folder); point it at our folder
            model.model.pt_path = str(Path(work) / "model.pt")
            exported = model.export(format="onnx", imgsz=imgsz, dynamic=False, simplify=False, nms=False,
                                    half=False, opset=opset, device="cpu")
        except ExportError:
            raise
        except FileNotFoundError as error:
            raise FileNotFoundError(f"weights {weights}: {error}") from None
        except Exception as error:  # ultralytics raises assorted types for unusable weights
            raise ExportError(f"weights {weights}: ultralytics could not export it ({type(error).__name__}: {error})") from None
        exported = Path(exported)
        if identify_layout(exported, read_onnx_metadata_props(exported)) != "ultralytics":
            raise ExportError(f"weights {weights}: the export does not carry ultralytics detector metadata")
        staged = Path(work) / "staged.onnx"
        shutil.copyfile(exported, staged)  # same folder as `out`: the rename below is atomic
        os.replace(staged, out)
    return out
