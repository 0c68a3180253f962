"""`livepose bench VIDEO`: time every stage of `livepose video`'s stream on a video file."""
import json
import time
from pathlib import Path

from livepose.cli.common import (
    add_detect_every,
    add_model_arguments,
    drawing_of,
    load_models,
    tracking_of,
)
from livepose.stream.bench import DEFAULT_MAX_FRAMES, DEFAULT_WARMUP

NAME = "bench"
HELP = "time every pipeline stage on a video"
DESCRIPTION = ("Time every stage of the pipeline (read, detect, crop, pose, decode, draw, write) on a video file with "
               "the chosen runtime and precision.")


def add_arguments(parser):
    parser.add_argument("video", help="video file to run over (e.g. ../shared/data/videos/opencv_vtest.avi)")
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, metavar="N",
                        help=f"frames to time (default {DEFAULT_MAX_FRAMES})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, metavar="N",
                        help=f"untimed runs on the first frame before timing (default {DEFAULT_WARMUP})")
    add_detect_every(parser)
    parser.add_argument("--json", type=Path, metavar="F.json", help="also write the results as JSON")
    parser.add_argument("--out", type=Path, metavar="OUT.mp4", help="keep the annotated video (default: discarded)")
    add_model_arguments(parser)


def run(args):
    """Run, print the report, write --json atomically. Returns the exit code."""
    from livepose.files import check_readable_file, check_writable, write_atomic
    from livepose.stream.bench import benchmark_video, check_settings, format_result

    # user errors surface before the (slow) model loading
    check_settings(args.max_frames, args.warmup, args.detect_every)
    tracking = tracking_of(args)
    check_readable_file(args.video, "video")
    if args.json is not None:
        check_writable(args.json, "JSON output")
    start = time.perf_counter()
    estimator, _ = load_models(args)  # the report names the models itself
    load_s = time.perf_counter() - start  # the second start is faster: OpenVINO's compiled-model cache
    try:
        result = benchmark_video(args.video, estimator, max_frames=args.max_frames, detect_every=args.detect_every,
                                 warmup=args.warmup, out=args.out, drawing=drawing_of(args),
                                 tracking=tracking)
    finally:
        estimator.close()
        estimator.detector.close()
    print(format_result(result))
    print(f"model load (pose model + detector, before the first frame): {load_s:.2f} s")
    if args.json is not None:
        report = {**result.to_dict(), "model_load_s": round(load_s, 3)}
        write_atomic(args.json, (json.dumps(report, indent=2) + "\n").encode(), "JSON output")
    return 0
