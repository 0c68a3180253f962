"""`livepose webcam [--camera 0]`: live poses from a camera or stream, newest frame first."""
from livepose.cli.common import (
    add_model_arguments,
    add_stream_outputs,
    check_thresholds,
    run_stream_command,
)

NAME = "webcam"
HELP = "live poses from a camera"
DESCRIPTION = ("Live poses from a camera: a preview window where a display exists (q or Esc quits), else headless "
               "(Ctrl-C stops).")


def add_arguments(parser):
    parser.add_argument("--camera", default="0", help="camera index (default 0) or stream URL")
    add_stream_outputs(parser)
    parser.add_argument("--no-preview", action="store_true", help="no preview window even where a display exists")
    add_model_arguments(parser)


def run(args):
    from livepose.stream.sources import VideoSource

    check_thresholds(args)
    return run_stream_command(args, VideoSource(args.camera), preview=not args.no_preview, live=True)
