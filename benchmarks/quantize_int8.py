"""INT8 variants of a pose model, made by the product path (`livepose quantize`), for speed comparisons.

    pip install -e '.[cpu,int8]'
    python benchmarks/quantize_int8.py --model engines/r50-256x192.onnx                      # = livepose quantize
    python benchmarks/quantize_int8.py --model M.onnx --keep-f32 2 --out M-int8-keep2.onnx   # a fixed head scope

Without --keep-f32 this runs `livepose quantize` itself (NNCF's accuracy control decides which
layers stay f32; the result lands beside the model as NAME-int8.onnx, where `--backend auto` picks
it). --keep-f32 N makes the older hand-picked variant (the head's last N layers f32, no accuracy
control) through the same library code, for benchmarks/compare.py's `--int8-model`.
Calibration: --calib-coco / --calib-video as for `livepose quantize`; by default the COCO subset's
ground-truth persons in ../shared/data.
"""
import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
COCO = SHARED / "coco" / "coco_train2017_subset"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="f32 livepose pose model (ONNX)")
    parser.add_argument("--out", type=Path, help="INT8 model to write (default NAME-int8.onnx, or NAME-int8-keepN.onnx)")
    parser.add_argument("--calib-coco", type=Path, nargs=2, metavar=("ANN", "IMAGES"),
                        default=[COCO / "person_keypoints.json", COCO / "images"])
    parser.add_argument("--calib-video", type=Path, help="calibrate on the persons of this video instead")
    parser.add_argument("--detector", type=Path, default=SHARED / "models" / "yolox_nano.onnx")
    parser.add_argument("--keep-f32", type=int, choices=range(5),
                        help="keep exactly the head's last N layers f32, no accuracy control (0 = every layer INT8)")
    args = parser.parse_args(argv)
    calibration = (["--calib-video", args.calib_video, "--detector", args.detector, "--no-fetch"] if args.calib_video
                   else ["--calib-coco", *args.calib_coco])
    if args.keep_f32 is None:
        from livepose.cli import main as livepose

        out = ["--out", args.out] if args.out else []
        return livepose(["quantize", "--pose", str(args.model), *map(str, calibration), *map(str, out)])
    return keep_head_variant(args)


def keep_head_variant(args):
    from livepose.core.metadata import read_onnx_metadata
    from livepose.quantize.calibration import coco_crops, detected_crops
    from livepose.quantize.int8 import QuantizeJob, quantize_pose_model

    meta = read_onnx_metadata(args.model)
    if args.calib_video:
        from livepose.runtime.detector import PersonDetector

        with PersonDetector(args.detector) as detector:
            crops = detected_crops(meta, detector, video=args.calib_video)
    else:
        crops = coco_crops(meta, *args.calib_coco)
    out = args.out or args.model.with_name(f"{args.model.stem}-int8-keep{args.keep_f32}.onnx")
    result = quantize_pose_model(QuantizeJob(args.model, out, force=True, keep_head_f32=args.keep_f32), crops)
    print(json.dumps(result.note, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
