"""`livepose fetch-models`: download (or copy) and verify the published detector and pose weights."""
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


def run(args):
    from livepose.runtime.model_files import fetch_models

    paths = fetch_models(args.pose_size, source_dir=args.source_dir, progress=not args.no_progress)
    for kind, path in paths.items():
        print(f"livepose: {kind}: {path}", file=sys.stderr)
    return 0
