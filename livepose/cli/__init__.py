"""`livepose`: multi-person pose estimation on video files, webcams, streams and images.

  livepose video in.mp4 --out out.mp4 [--json poses.jsonl]
  livepose webcam [--camera 0] [--out out.mp4]
  livepose image a.jpg b.jpg photos/ --out annotated/
  livepose batch videos/ --out results/ [--parquet] [--workers N | --ray [ADDRESS]]
  livepose fetch-models [--from DIR] [--pose-size 256x192|384x288]
  livepose export-detector yolo11n.pt
  livepose build-engine --pose M.onnx [--detector D.onnx] [--fp16]
  livepose quantize --pose M.onnx --calib-video V   (INT8 for the CPU)
  livepose bench video.avi [--backend openvino --precision bf16]

User errors (a missing file, a dead camera, an unusable model) print one line and exit with 2;
Ctrl-C exits with 130 after finishing the output files (a playable video, complete JSON lines).
"""
import argparse
import os
import signal
import sys
import threading
import warnings

from livepose.cli import (
    batch,
    bench,
    build_engine,
    export_detector,
    fetch_models,
    image,
    quantize,
    video,
    webcam,
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
# Each subcommand is a module with NAME, HELP, DESCRIPTION, add_arguments(parser) and run(args);
# a new subcommand is a new module added here.
SUBCOMMANDS = (video, webcam, image, batch, fetch_models, quantize, export_detector, build_engine, bench)


def build_parser():
    parser = argparse.ArgumentParser(prog="livepose", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in SUBCOMMANDS:
        subparser = sub.add_parser(command.NAME, help=command.HELP, description=command.DESCRIPTION)
        command.add_arguments(subparser)
        subparser.set_defaults(handler=command.run)
    return parser


def main(argv=None):
    """Run the command line; returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    _quiet_opencv()
    on_main_thread = threading.current_thread() is threading.main_thread()
    interrupts = _Interrupts()
    previous = {signum: signal.signal(signum, interrupts) for signum in (signal.SIGINT, signal.SIGTERM)} if on_main_thread else {}
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.handler(args) or 0
    except KeyboardInterrupt as interrupt:
        print(f"livepose: interrupted {interrupt}".rstrip(), file=sys.stderr)
        return EXIT_INTERRUPTED
    except _user_errors() as error:
        print(f"livepose: error: {_describe(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Interrupts:
    """SIGINT and SIGTERM: the first raises KeyboardInterrupt, and the run finishes its outputs;
    later ones (a second Ctrl-C while it does) are noted and ignored, so that they cannot cut the
    outputs short or leave a C++ thread (OpenVINO, FFmpeg) running while Python exits."""

    def __init__(self):
        self.count = 0

    def __call__(self, signum, frame):
        self.count += 1
        if self.count == 1:
            raise KeyboardInterrupt
        if self.count == 2:  # os.write: print() may be running in the interrupted code
            os.write(sys.stderr.fileno(), b"livepose: still finishing the outputs; SIGKILL abandons them\n")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    from tqdm import tqdm

    tqdm.write(f"livepose: warning: {message}", file=sys.stderr)  # on a line of its own above a progress bar


def _user_errors():
    """Exception types that mean the user's input is wrong (not a bug): reported in one line."""
    from livepose.runtime.backends import BackendUnavailable
    from livepose.runtime.download import DownloadError

    return (OSError, ValueError, BackendUnavailable, DownloadError)


def _quiet_opencv():
    """OpenCV and FFmpeg log their own warnings about a file they cannot open; the CLI reports that
    itself, in one line naming the file."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg is first used
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _describe(error):
    """The message of a user error; an OSError from the system names its file this way, and a
    precision the runtime lacks names the flag."""
    from livepose.runtime.backends import PrecisionUnsupported

    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    if isinstance(error, PrecisionUnsupported):
        return f"--{error}"
    return str(error)
