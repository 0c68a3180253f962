"""Export ultralytics YOLO11n-pose (random weights, built from its yaml: nothing is downloaded) to ONNX
for benchmarks/compare.py. Needs the `yolo` extra (ultralytics, torch): run it with that environment's python.

    python benchmarks/export_yolo_pose.py [--out ~/.cache/livepose/benchmarks/yolo11n-pose.onnx]
"""
import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path


def main(argv=None):
    cache = Path(os.environ.get("LIVEPOSE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "livepose")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=cache / "benchmarks" / "yolo11n-pose.onnx")
    parser.add_argument("--imgsz", type=int, default=640)
    args = parser.parse_args(argv)
    # ultralytics would pip-install missing export helpers at run time; never let it
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as work:
        os.environ.setdefault("YOLO_CONFIG_DIR", work)
        os.chdir(work)
        from ultralytics import YOLO

        exported = YOLO("yolo11n-pose.yaml").export(format="onnx", imgsz=args.imgsz, simplify=False, dynamic=False)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(exported, args.out)
    print(f"wrote {args.out} (random weights: for speed comparisons only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
