"""`livepose video IN [--out OUT.mp4] [--json F.jsonl]`: annotate a video file or stream."""
from livepose.cli.common import (
    add_model_arguments,
    add_stream_outputs,
    check_thresholds,
    run_stream_command,
)

NAME = "video"
HELP = "annotate a video file or stream"
DESCRIPTION = "Annotate a video file (or an RTSP/HTTP stream) with the poses of everyone in it."


def add_arguments(parser):
    parser.add_argument("input", help="video file, or rtsp:// / http:// stream URL")
    add_stream_outputs(parser)
    parser.add_argument("--preview", action="store_true", help="also show a preview window (where a display exists)")
    add_model_arguments(parser)


def run(args):
    from livepose.stream.sources import VideoSource

    check_thresholds(args)
    if args.out is None and args.json is None and not args.preview:
        raise ValueError("video: nothing to write; give --out OUT.mp4 and/or --json F.jsonl")
    for output in (args.out, args.json):
        if _same_file(output, args.input):
            raise ValueError(f"output {output}: is the input video; choose another name")
    if _same_file(args.out, args.json):
        raise ValueError(f"--out and --json: both are {args.out}; choose two names")
    # a video is processed frame by frame, also from a URL; `webcam --camera URL` drops stale frames
    return run_stream_command(args, VideoSource(args.input), preview=args.preview, live=False)


def _same_file(a, b):
    from pathlib import Path

    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()
