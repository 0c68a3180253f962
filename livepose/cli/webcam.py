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
    parser.add_argument("--camera", default="0", help="camera index (default 0) or stream URL (rtsp://, http://); a video file is `livepose video`'s")
    add_stream_outputs(parser)
    parser.add_argument("--no-preview", action="store_true", help="no preview window even where a display exists")
    add_model_arguments(parser)


def run(args):
    from livepose.stream.sources import VideoSource

    check_thresholds(args)
    check_camera(args.camera)
    return run_stream_command(args, VideoSource(args.camera), preview=not args.no_preview, live=True)


def check_camera(spec):
    """ValueError unless `spec` is a camera index (0, 1, ...) or a stream URL: a file is not live."""
    from livepose.stream.sources import camera_index, is_stream_url

    if camera_index(spec) is not None or is_stream_url(spec):
        return
    if spec.lstrip("-").isdigit():
        raise ValueError(f"--camera {spec}: expected a camera index 0, 1, ... (see `ls /dev/video*`) or a stream URL")
    raise ValueError(f"--camera {spec}: expected a camera index or a stream URL; for a video file use "
                     f"`livepose video {spec}` (every frame, none dropped)")
