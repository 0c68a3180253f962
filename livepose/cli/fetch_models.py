"""`livepose fetch-models`: download (or copy) and verify the published detector and pose weights;
with --int8 --calib-video V, then quantise the pose model for the CPU (`livepose quantize`)."""
import argparse
import sys
from pathlib import Path

from livepose.runtime.model_files import DEFAULT_POSE_SIZE, POSE_SIZES

NAME = "fetch-models"
HELP = "download the published detector and pose weights"
DESCRIPTION = ("Download (or copy with --from) the published YOLOX-Nano detector and MMPose SimpleBaseline ResNet-50 "
               "weights, check their SHA-256 and convert the pose weights (needs the `train` extra) into the user cache.")


def add_arguments(parser):
    parser.add_argument("--from", dest="source_dir", type=Path, metavar="DIR",
                        help="take the files from this folder instead of downloading them")
    parser.add_argument("--pose-size", choices=POSE_SIZES, default=DEFAULT_POSE_SIZE,
                        help=f"pose model input size H x W (default {DEFAULT_POSE_SIZE})")
    parser.add_argument("--no-progress", action="store_true", help="no download progress bar")
    parser.add_argument("--int8", action="store_true",
                        help="then make NAME-int8.onnx beside the pose model (`livepose quantize`, the `int8` extra), "
                             "checked on the people of --calib-video")
    parser.add_argument("--calib-video", type=Path, metavar="V", help="a video of people to calibrate --int8 on")


def run(args):
    from livepose.runtime.model_files import fetch_models

    if args.int8 != (args.calib_video is not None):
        raise ValueError("--int8 and --calib-video V go together: INT8 is calibrated and checked on a video of people")
    if args.int8:
        from livepose.quantize.int8 import import_nncf

        import_nncf()  # the missing extra is named before anything is downloaded
    paths = fetch_models(args.pose_size, source_dir=args.source_dir, progress=not args.no_progress)
    for kind, path in paths.items():
        print(f"livepose: {kind}: {path}", file=sys.stderr)
    if not args.int8:
        return 0
    from livepose.cli.quantize import run as quantize
    from livepose.quantize import DEFAULT_MAX_DROP, DEFAULT_MAX_REVERTS

    return quantize(argparse.Namespace(
        pose=paths["pose model"], calib_video=args.calib_video, calib_images=None, calib_coco=None,
        detector=paths["detector"], detector_layout=None, no_fetch=True, max_drop=DEFAULT_MAX_DROP,
        max_reverts=DEFAULT_MAX_REVERTS, out=None, force=False))
