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
    outputs = {"--out": args.out, "--json": args.json, "--mot": args.mot, "--posetrack": args.posetrack}
    if all(path is None for path in outputs.values()) and not args.preview:
        raise ValueError("video: nothing to write; give --out OUT.mp4, --json F.jsonl, --mot F.txt and/or --posetrack F.json")
    for output in outputs.values():
        if _same_file(output, args.input):
            raise ValueError(f"output {output}: is the input video; choose another name")
    named = [(flag, path) for flag, path in outputs.items() if path is not None]
    for position, (flag, path) in enumerate(named):
        for other_flag, other in named[position + 1:]:
            if _same_file(path, other):
                raise ValueError(f"{flag} and {other_flag}: both are {path}; choose two names")
    # a video is processed frame by frame, also from a URL; `webcam --camera URL` drops stale frames
    return run_stream_command(args, VideoSource(args.input), preview=args.preview, live=False)


def _same_file(a, b):
    from pathlib import Path

    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()
