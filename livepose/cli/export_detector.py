"""`livepose export-detector yolo11n.pt`: an ultralytics YOLO checkpoint as an ONNX person detector."""
import sys
from pathlib import Path

NAME = "export-detector"
HELP = "export an ultralytics YOLO .pt to ONNX (the `yolo` extra)"
DESCRIPTION = ("Export an ultralytics YOLOv8/YOLO11 model to an ONNX person detector "
               "(needs the `yolo` extra: pip install 'livepose[yolo]').")


def add_arguments(parser):
    parser.add_argument("weights", help="ultralytics checkpoint (yolo11n.pt, yolov8s.pt, ...) or model .yaml")
    parser.add_argument("--out", type=Path, metavar="D.onnx", help="ONNX file to write (default: WEIGHTS' name .onnx)")
    parser.add_argument("--imgsz", type=int, default=640, help="square input side, a multiple of 32 (default 640)")


def run(args):
    from livepose.runtime.yolo_export import ExportError, export_detector

    try:
        out = export_detector(args.weights, out=args.out, imgsz=args.imgsz)
    except ExportError as error:
        raise ValueError(str(error)) from None
    print(f"livepose: wrote {out}; use it with --detector {out}", file=sys.stderr)
    return 0
