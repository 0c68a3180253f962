"""What several subcommands share: the model and drawing flags, loading the models they name,
and running a video or camera stream into the outputs the flags ask for."""
import argparse
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

from livepose.core.decode import REFINEMENTS
from livepose.runtime.backends import BACKEND_NAMES, PRECISIONS
from livepose.runtime.model_files import POSE_SIZES
from livepose.tracking.tracker import LOW_SCORE

DEFAULT_BOX_THRESHOLD = 0.3   # detector score; YOLOX's own demo default
DEFAULT_KPT_THRESHOLD = 0.3   # heatmap maximum below which a keypoint is a guess and is not drawn


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) after the outputs were finished; the message says what was written."""


def add_model_arguments(parser):
    group = parser.add_argument_group("models")
    group.add_argument("--pose-model", type=Path, metavar="M.onnx",
                       help="pose model (ONNX from `livepose-train export`; a TensorRT .engine beside it is used "
                            "when it runs here). Default: engines/, then the user cache, else fetched on first run")
    group.add_argument("--detector", type=Path, metavar="D.onnx",
                       help="person detector (YOLOX or ultralytics YOLO ONNX). Default: engines/, then the user "
                            "cache (yolox_nano.onnx), else fetched on first run")
    group.add_argument("--detector-layout", choices=("yolox", "ultralytics"),
                       help="output layout of --detector when its metadata and checksum do not say")
    group.add_argument("--backend", choices=("auto",) + BACKEND_NAMES, default="auto",
                       help="runtime: auto = TensorRT engine if present and usable, else OpenVINO, else ONNX Runtime")
    group.add_argument("--precision", metavar="NAME",
                       help=f"compute precision, one of {', '.join(PRECISIONS)} where the runtime runs it (OpenVINO: "
                            "f32, and f16/bf16 on CPUs that have them; ONNX Runtime: f32; an engine: its own). "
                            "Default: f32. INT8 is not a precision setting: it comes from an INT8 model file")
    group.add_argument("--no-int8", action="store_true",
                       help="keep the f32 pose model even where an INT8 sibling NAME-int8.onnx (`livepose quantize`) "
                            "would be picked (auto: OpenVINO on a CPU with VNNI or AMX)")
    group.add_argument("--pose-size", choices=POSE_SIZES, default=None,
                       help="input size (H x W) of the pose model to look for or fetch (default 256x192)")
    group.add_argument("--no-fetch", action="store_true", help="never download models; fail when none is found")
    tuning = parser.add_argument_group("thresholds and decoding")
    tuning.add_argument("--box-threshold", type=float, default=DEFAULT_BOX_THRESHOLD,
                        help=f"minimum detector score of a new person (default {DEFAULT_BOX_THRESHOLD}); when tracking, "
                             f"boxes down to {LOW_SCORE} still follow people already tracked")
    tuning.add_argument("--kpt-threshold", type=float, default=DEFAULT_KPT_THRESHOLD,
                        help=f"minimum keypoint score to draw it (default {DEFAULT_KPT_THRESHOLD})")
    tuning.add_argument("--refine", choices=REFINEMENTS, default=None,
                        help="sub-pixel refinement of heatmap maxima: quarter (SimpleBaselines), dark (DARK), none; "
                             "default: the model's (quarter for standard targets, dark for unbiased)")
    drawing = parser.add_argument_group("drawing")
    drawing.add_argument("--no-fps", action="store_true", help="no frame-rate overlay on the output")
    drawing.add_argument("--no-boxes", action="store_true", help="draw skeletons only, no person boxes")


def add_stream_outputs(parser):
    parser.add_argument("--out", type=Path, metavar="OUT.mp4",
                        help="annotated video to write (.mp4, .mov, .mkv: MPEG-4; .avi: Motion JPEG)")
    parser.add_argument("--json", type=Path, metavar="F.jsonl",
                        help="poses as JSON Lines: one line per frame {frame, timestamp, persons}; F.jsonl "
                             "appears when the run ends, '-' writes the lines to stdout as they come")
    parser.add_argument("--mot", type=Path, metavar="F.txt",
                        help="person box tracks in MOTChallenge format (frame,id,x,y,w,h,score,-1,-1,-1)")
    parser.add_argument("--posetrack", type=Path, metavar="F.json",
                        help="pose tracks as PoseTrack18 JSON (images, annotations with track_id)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    add_detect_every(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_detect_every(parser):
    from livepose.tracking.smoothing import BETA, D_CUTOFF, MIN_CUTOFF
    from livepose.tracking.tracker import MAX_LOST_SECONDS

    parser.add_argument("--detect-every", type=int, default=1, metavar="N",
                        help="run the detector every N frames; in between, each tracked person's box follows its "
                             "motion and last pose (default 1)")
    group = parser.add_argument_group("tracking and smoothing")
    group.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                       help="One-Euro smoothing of the keypoints (default on; --no-smooth writes the raw keypoints)")
    group.add_argument("--smooth-min-cutoff", type=float, default=MIN_CUTOFF, metavar="HZ",
                       help=f"One-Euro cutoff of a still joint (default {MIN_CUTOFF})")
    group.add_argument("--smooth-beta", type=float, default=BETA, metavar="B",
                       help=f"One-Euro cutoff rise per body height per second (default {BETA})")
    group.add_argument("--smooth-d-cutoff", type=float, default=D_CUTOFF, metavar="HZ",
                       help=f"One-Euro cutoff of the speed estimate (default {D_CUTOFF})")
    group.add_argument("--track-lost-seconds", type=float, default=MAX_LOST_SECONDS, metavar="S",
                       help=f"how long an unseen person keeps their id (default {MAX_LOST_SECONDS})")


def tracking_of(args):
    """TrackerSettings from the flags; ValueError naming the flag for a bad value."""
    import math

    from livepose.tracking.smoothing import OneEuroSettings
    from livepose.tracking.tracker import TrackerSettings

    for name in ("smooth_min_cutoff", "smooth_beta", "smooth_d_cutoff", "track_lost_seconds"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"--{name.replace('_', '-')}: expected a positive number, got {value}")
    smoothing = OneEuroSettings(args.smooth_min_cutoff, args.smooth_beta, args.smooth_d_cutoff)
    return TrackerSettings(high_score=args.box_threshold, low_score=min(args.box_threshold, LOW_SCORE),
                           max_lost_seconds=args.track_lost_seconds, smooth=args.smooth, smoothing=smoothing)


def check_thresholds(args):
    for name in ("box_threshold", "kpt_threshold"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')}: expected a score between 0 and 1, got {value}")
    if getattr(args, "max_frames", None) is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames: expected a positive integer, got {args.max_frames}")


def drawing_of(args):
    from livepose.stream.run import Drawing

    return Drawing(keypoint_threshold=args.kpt_threshold, boxes=not args.no_boxes, fps=not args.no_fps)


def load_models(args):
    """(PoseEstimator with its PersonDetector, one line saying which files run where), from the
    command-line flags, engines/ or the user cache (fetching the published models when none is found)."""
    from livepose.runtime.detector import PersonDetector
    from livepose.runtime.estimator import PoseEstimator
    from livepose.runtime.model_files import resolve_models
    from livepose.runtime.open_model import detector_backend

    found = resolve_models(args.pose_model, args.detector, pose_size=args.pose_size,
                           fetch=not args.no_fetch, progress=not getattr(args, "no_progress", False))
    # a tracked stream also takes boxes below --box-threshold, down to the tracker's floor: they only
    # extend existing tracks (ByteTrack's second stage), never start one
    floor = min(args.box_threshold, LOW_SCORE) if hasattr(args, "smooth") else args.box_threshold
    detector = PersonDetector(found.detector, backend=detector_backend(args.backend), layout=args.detector_layout,
                              score_threshold=floor)
    try:
        estimator = PoseEstimator(found.pose_model, detector=detector, backend=args.backend,
                                  precision=args.precision, refine=args.refine, int8=not args.no_int8)
    except BaseException:
        detector.close()
        raise
    used = (f"pose model {estimator.model_path} ({found.pose_origin}) on {estimator.backend.name} {estimator.precision}; "
            f"detector {detector.model_path} ({found.detector_origin}) on {detector.backend.name}")
    return estimator, used


def run_stream_command(args, source, preview, live):
    """`livepose video` / `webcam`: the source's poses into --out / --json; returns the exit code.

    preview: show a window where a display exists; live: drop stale frames (cameras, streams).
    Outputs are checked before the (slow) model loading and opened after it.
    """
    from livepose.files import check_writable
    from livepose.stream.run import StreamInterrupted, process_video
    from livepose.stream.sinks import PreviewWindow, ProgressBar

    if args.detect_every < 1:
        raise ValueError(f"--detect-every: expected a positive integer, got {args.detect_every}")
    tracking = tracking_of(args)
    for output, what in ((args.out, "output video"), (args.json, "JSON output"), (args.mot, "MOT output"),
                         (args.posetrack, "PoseTrack output")):
        if output is not None and str(output) != "-":
            check_writable(output, what)
    with ExitStack() as stack:
        stack.callback(source.release)
        estimator, models_used = load_models(args)
        stack.callback(estimator.detector.close)
        stack.callback(estimator.close)
        window = PreviewWindow.open() if preview else None
        if preview and window is None:
            print("livepose: no display (or an OpenCV without GUI support): running without a preview window; "
                  "Ctrl-C stops", file=sys.stderr)
        if window is not None:
            stack.callback(window.close)
        total = min(filter(None, (source.frame_count, args.max_frames)), default=None)
        bar = stack.enter_context(ProgressBar(total, source.name, enabled=not args.no_progress))
        sinks = [window, bar] if window is not None else [bar]
        try:
            with naming_detector(estimator):
                stats = process_video(source, estimator, out=args.out, json=args.json, sinks=sinks,
                                      max_frames=args.max_frames, detect_every=args.detect_every,
                                      drawing=drawing_of(args), live=live, mot=args.mot, posetrack=args.posetrack,
                                      tracking=tracking)
        except StreamInterrupted as interrupt:
            raise Interrupted(f"after {interrupt.frames} frames; {_written(args, interrupt.frames)}") from None
    _report(args, stats, models_used)
    return 0


@contextmanager
def naming_detector(estimator):
    """A detector whose output does not fit its layout is found on its first frame: name its file."""
    from livepose.runtime.detector_layout import DetectorLayoutError

    try:
        yield
    except DetectorLayoutError as error:
        path = str(estimator.detector.model_path)
        if path in str(error):
            raise
        raise DetectorLayoutError(f"detector {path}: {error} (is it a YOLOX or ultralytics detector? "
                                  "--detector-layout names the layout)") from None


def _report(args, stats, models_used):
    from livepose.stream.pipeline import STAGES

    order = {name: position for position, name in enumerate(STAGES)}
    stages = ", ".join(f"{name} {stats.stages_ms[name]:.1f}"
                       for name in sorted(stats.stages_ms, key=lambda n: order.get(n, len(order))))
    decoded = f" (of {stats.announced_frames} announced)" if stats.announced_frames not in (None, stats.frames) else ""
    print(f"livepose: {stats.frames} frames{decoded} in {stats.seconds:.1f} s ({stats.fps:.1f} fps), "
          f"{stats.persons_per_frame:.1f} persons per frame; {_written(args, stats.frames)}", file=sys.stderr)
    print(f"livepose: ms per frame: {stages}" + (f"; {stats.dropped} stale frames dropped" if stats.dropped else ""),
          file=sys.stderr)
    print(f"livepose: {models_used}", file=sys.stderr)


def _written(args, frames):
    outputs = ["stdout" if str(p) == "-" else str(p) for p in (args.json, args.mot, args.posetrack, args.out)
               if p is not None]
    if not outputs:
        return "nothing written"
    if frames == 0:
        return f"nothing written ({' and '.join(outputs)} left as they were)"
    return f"wrote {' and '.join(outputs)} ({frames} frames)"
