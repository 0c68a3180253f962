"""`livepose`: multi-person pose estimation on video files, webcams, streams and images.

  livepose video in.mp4 --out out.mp4 [--json poses.jsonl]
  livepose webcam [--camera 0] [--out out.mp4]
  livepose image a.jpg b.jpg photos/ --out annotated/
  livepose fetch-models [--from DIR] [--pose-size 256x192|384x288]
  livepose export-detector yolo11n.pt
  livepose build-engine --pose M.onnx [--detector D.onnx] [--fp16]
  livepose bench video.avi [--backend openvino --precision bf16]

User errors (a missing file, a dead camera, an unusable model) print one line and exit with 2;
Ctrl-C exits with 130 after finishing the output files (a playable video, complete JSON lines).
"""
import argparse
import importlib
import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
DEFAULT_BOX_THRESHOLD = 0.3   # detector score; YOLOX's own demo default
DEFAULT_KPT_THRESHOLD = 0.3   # heatmap maximum below which a keypoint is a guess and is not drawn
FPS_SMOOTHING = 0.9           # exponential moving average of the overlay's frame rate
WINDOW_TITLE = "livepose (q or Esc quits)"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) after the outputs were finished; the message says what was written."""


def _user_errors():
    """Exception types that mean the user's input is wrong (not a bug): reported in one line."""
    from livepose.runtime.backends import BackendUnavailable
    from livepose.runtime.download import DownloadError

    return (OSError, ValueError, BackendUnavailable, DownloadError)


def _add_model_arguments(parser):
    from livepose.runtime.backends import BACKEND_NAMES
    from livepose.core.decode import REFINEMENTS
    from livepose.runtime.model_files import POSE_SIZES

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
    group.add_argument("--precision", choices=("f32", "bf16", "f16", "int8"),
                       help="pose model precision (OpenVINO: f32 or bf16; default: the runtime's f32)")
    group.add_argument("--pose-size", choices=POSE_SIZES, default=None,
                       help="input size (H x W) of the pose model to look for or fetch (default 256x192)")
    group.add_argument("--no-fetch", action="store_true", help="never download models; fail when none is found")
    tuning = parser.add_argument_group("thresholds and decoding")
    tuning.add_argument("--box-threshold", type=float, default=DEFAULT_BOX_THRESHOLD,
                        help=f"minimum detector score of a person (default {DEFAULT_BOX_THRESHOLD})")
    tuning.add_argument("--kpt-threshold", type=float, default=DEFAULT_KPT_THRESHOLD,
                        help=f"minimum keypoint score to draw it (default {DEFAULT_KPT_THRESHOLD})")
    tuning.add_argument("--refine", choices=REFINEMENTS, default="quarter",
                        help="sub-pixel refinement of heatmap maxima: quarter (SimpleBaselines), dark (DARK), none")
    drawing = parser.add_argument_group("drawing")
    drawing.add_argument("--no-fps", action="store_true", help="no frame-rate overlay on the output")
    drawing.add_argument("--no-boxes", action="store_true", help="draw skeletons only, no person boxes")


def _add_stream_outputs(parser, out_required):
    parser.add_argument("--out", type=Path, required=out_required, metavar="OUT.mp4",
                        help="annotated video to write (.mp4, .mov, .mkv: MPEG-4; .avi: Motion JPEG)")
    parser.add_argument("--json", type=Path, metavar="F.jsonl",
                        help="poses as JSON Lines: one line per frame {frame, timestamp, persons}")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("--detect-every", type=int, default=1, metavar="N",
                        help="run the detector every N frames; in between, boxes follow the previous poses (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser():
    parser = argparse.ArgumentParser(prog="livepose", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    video = sub.add_parser("video", help="annotate a video file or stream", description="Annotate a video file "
                           "(or an RTSP/HTTP stream) with the poses of everyone in it.")
    video.add_argument("input", help="video file, or rtsp:// / http:// stream URL")
    _add_stream_outputs(video, out_required=False)
    video.add_argument("--preview", action="store_true", help="also show a preview window (where a display exists)")
    _add_model_arguments(video)
    video.set_defaults(handler=run_video)

    webcam = sub.add_parser("webcam", help="live poses from a camera", description="Live poses from a camera: a "
                            "preview window where a display exists (q or Esc quits), else headless (Ctrl-C stops).")
    webcam.add_argument("--camera", default="0", help="camera index (default 0) or stream URL")
    _add_stream_outputs(webcam, out_required=False)
    webcam.add_argument("--no-preview", action="store_true", help="no preview window even where a display exists")
    _add_model_arguments(webcam)
    webcam.set_defaults(handler=run_webcam)

    image = sub.add_parser("image", help="annotate images; write COCO keypoint results",
                           description="Annotate images (files or folders of images) and write COCO keypoint results.")
    image.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    image.add_argument("--out", type=Path, required=True, metavar="DIR",
                       help="folder for the annotated copies (created if missing) and coco_results.json")
    image.add_argument("--coco", type=Path, metavar="F.json",
                       help="COCO results file (default: DIR/coco_results.json)")
    _add_model_arguments(image)
    image.set_defaults(handler=run_images)

    from livepose.runtime.model_files import DEFAULT_POSE_SIZE, POSE_SIZES

    fetch = sub.add_parser("fetch-models", help="download the published detector and pose weights",
                           description="Download (or copy with --from) the published YOLOX-Nano detector and MMPose "
                           "SimpleBaseline ResNet-50 weights, check their SHA-256 and convert the pose weights "
                           "(needs the `train` extra) into the user cache.")
    fetch.add_argument("--from", dest="source_dir", type=Path, metavar="DIR",
                       help="take the files from this folder instead of downloading them")
    fetch.add_argument("--pose-size", choices=POSE_SIZES, default=DEFAULT_POSE_SIZE,
                       help=f"pose model input size H x W (default {DEFAULT_POSE_SIZE})")
    fetch.add_argument("--no-progress", action="store_true", help="no download progress bar")
    fetch.set_defaults(handler=run_fetch_models)

    export = sub.add_parser("export-detector", help="export an ultralytics YOLO .pt to ONNX (the `yolo` extra)",
                            description="Export an ultralytics YOLOv8/YOLO11 model to an ONNX person detector "
                            "(needs the `yolo` extra: pip install 'livepose[yolo]').")
    export.add_argument("weights", help="ultralytics checkpoint (yolo11n.pt, yolov8s.pt, ...) or model .yaml")
    export.add_argument("--out", type=Path, metavar="D.onnx", help="ONNX file to write (default: WEIGHTS' name .onnx)")
    export.add_argument("--imgsz", type=int, default=640, help="square input side, a multiple of 32 (default 640)")
    export.set_defaults(handler=run_export_detector)

    engine = sub.add_parser("build-engine", help="compile ONNX models into TensorRT engines (the `gpu` extra)",
                            description="Compile the pose model and/or detector into TensorRT engines with "
                            "a metadata sidecar (needs an NVIDIA GPU and the `gpu` extra).")
    _delegate(engine, "tensorrt.build")

    from livepose.stream.bench import add_bench_arguments, run_bench

    bench = sub.add_parser("bench", help="time every pipeline stage on a video",
                           description="Time every stage of the pipeline (read, detect, crop, pose, decode, draw, "
                           "write) on a video file with the chosen runtime and precision.")
    add_bench_arguments(bench)
    bench.set_defaults(handler=run_bench)
    return parser


def _delegate(parser, module_name):
    """A subcommand implemented by livepose.<module_name>'s add_arguments(parser) and run(args); if
    that module cannot be imported here, the subcommand says why instead of breaking the whole CLI."""
    try:
        module = importlib.import_module(f"livepose.{module_name}")
    except ImportError as error:
        reason = f"`livepose {parser.prog.split()[-1]}` is not available in this installation ({error})"

        def unavailable(args):
            raise ValueError(reason)

        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        parser.set_defaults(handler=unavailable)
        return
    module.add_arguments(parser)
    parser.set_defaults(handler=module.run)


def main(argv=None):
    """Run the command line; returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    _quiet_opencv()
    previous = signal.signal(signal.SIGTERM, _terminate) if _on_main_thread() else None
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt as interrupt:
        print(f"livepose: interrupted {interrupt}".rstrip(), file=sys.stderr)
        return EXIT_INTERRUPTED
    except _user_errors() as error:
        print(f"livepose: error: {_describe(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _quiet_opencv():
    """OpenCV and FFmpeg log their own warnings about a file they cannot open; the CLI reports that
    itself, in one line naming the file."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg is first used
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _on_main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


def _terminate(signum, frame):
    """SIGTERM ends a run like Ctrl-C: outputs are finished, not abandoned."""
    raise KeyboardInterrupt


def _describe(error):
    """The message of a user error; an OSError from the system names its file this way."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)


def _check_thresholds(args):
    for name in ("box_threshold", "kpt_threshold"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')}: expected a score between 0 and 1, got {value}")
    if getattr(args, "max_frames", None) is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames: expected a positive integer, got {args.max_frames}")


def load_models(args):
    """A PoseEstimator with its PersonDetector, from the command-line flags, engines/ or the user cache
    (fetching the published models when none is found)."""
    from livepose.runtime.detector import PersonDetector
    from livepose.runtime.estimator import PoseEstimator
    from livepose.runtime.model_files import resolve_models

    resolved = resolve_models(args.pose_model, args.detector, pose_size=args.pose_size,
                              fetch=not args.no_fetch, progress=not getattr(args, "no_progress", False))
    # an explicit CPU runtime applies to both models; a TensorRT pose engine says nothing of the detector
    detector_backend = args.backend if args.backend in ("openvino", "onnxruntime") else "auto"
    detector = PersonDetector(resolved.detector, backend=detector_backend, layout=args.detector_layout,
                              score_threshold=args.box_threshold)
    return PoseEstimator(resolved.pose_model, detector=detector, backend=args.backend,
                         precision=args.precision, refine=args.refine)


def _same_file(a, b):
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def run_video(args):
    from livepose.stream.sources import VideoSource

    _check_thresholds(args)
    if args.out is None and args.json is None and not args.preview:
        raise ValueError("video: nothing to write; give --out OUT.mp4 and/or --json F.jsonl")
    source = VideoSource(args.input)
    with ExitStack() as stack:
        stack.callback(source.release)
        for output in (args.out, args.json):
            if _same_file(output, args.input):
                raise ValueError(f"output {output}: is the input video; choose another name")
        if _same_file(args.out, args.json):
            raise ValueError(f"--out and --json: both are {args.out}; choose two names")
        # a video is processed frame by frame, also from a URL; `webcam --camera URL` drops stale frames
        return _run_stream(args, source, preview=args.preview, live=False)


def run_webcam(args):
    from livepose.stream.sources import VideoSource

    _check_thresholds(args)
    source = VideoSource(args.camera)
    with ExitStack() as stack:
        stack.callback(source.release)
        return _run_stream(args, source, preview=not args.no_preview, live=True)


def _open_preview():
    """True when a preview window can be shown: a display exists and OpenCV has a GUI backend
    (the pip opencv-python-headless wheel has none)."""
    import os

    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow(WINDOW_TITLE, cv2.WINDOW_NORMAL)
    except cv2.error:
        return False
    return True


def _run_stream(args, source, preview, live):
    """Run detection + pose over a VideoSource into the writers; returns the exit code.

    live: always hand inference the newest frame, dropping stale ones (cameras); else every frame.
    """
    from tqdm import tqdm

    from livepose.stream.draw import draw_fps, draw_poses
    from livepose.stream.pipeline import STAGES, run_pipeline, timed
    from livepose.stream.sinks import JsonlWriter
    from livepose.files import signals_deferred
    from livepose.stream.detect_every import PoseTracker
    from livepose.stream.sources import VideoWriter, check_writable

    if args.detect_every < 1:
        raise ValueError(f"--detect-every: expected a positive integer, got {args.detect_every}")

    # every output is checked before the (slow) model loading, and opened after it
    for output, what in ((args.out, "output video"), (args.json, "JSON output")):
        if output is not None:
            check_writable(output, what)
    estimator = load_models(args)
    if preview and not _open_preview():
        print("livepose: no display (or an OpenCV without GUI support): running without a preview window; "
              "Ctrl-C stops", file=sys.stderr)
        preview = False

    state = {"frames": 0, "persons": 0, "fps": 0.0, "last": None}
    with ExitStack() as stack:
        stack.callback(estimator.detector.close)
        stack.callback(estimator.close)
        writer = stack.enter_context(VideoWriter(args.out, source.fps, source.size)) if args.out else None
        jsonl = stack.enter_context(JsonlWriter(args.json)) if args.json else None
        total = source.frame_count or None
        if total and args.max_frames:
            total = min(total, args.max_frames)
        bar = stack.enter_context(tqdm(total=total, unit="frame", desc=source.name, dynamic_ncols=True,
                                       disable=args.no_progress, file=sys.stderr))
        if preview:
            import cv2

            stack.callback(cv2.destroyAllWindows)

        tracker = PoseTracker(estimator.detector, estimator, detect_every=args.detect_every)

        def infer(frame, times):
            return tracker(frame.image, times)  # adds detect, crop, pose, decode

        def sink(frame, poses, times):
            now = time.perf_counter()
            if state["last"] is not None:
                rate = 1.0 / max(now - state["last"], 1e-6)
                state["fps"] = rate if state["fps"] == 0.0 else FPS_SMOOTHING * state["fps"] + (1 - FPS_SMOOTHING) * rate
            state["last"] = now
            if writer is not None or preview:
                with timed(times, "draw"):
                    canvas = draw_poses(frame.image, poses, threshold=args.kpt_threshold, boxes=not args.no_boxes)
                    if not args.no_fps and state["fps"] > 0:
                        draw_fps(canvas, state["fps"])
            # a frame goes to both outputs or to neither, so after Ctrl-C they hold the same frames
            with timed(times, "write"), signals_deferred():
                if writer is not None:
                    writer.write(canvas)
                if jsonl is not None:
                    jsonl.write(frame.index, frame.timestamp, poses)
            state["frames"] += 1
            state["persons"] += len(poses)
            bar.update(1)
            if preview:
                import cv2

                cv2.imshow(WINDOW_TITLE, canvas)
                key = cv2.waitKey(1) & 0xFF
                if key in (ord("q"), 27):
                    raise StopIteration

        frames = source.live_reader() if live else source.frames(args.max_frames)
        if live and args.max_frames:
            frames = _FirstItems(frames, args.max_frames)
        try:
            stats = run_pipeline(frames, infer, sink, live=live)
        except KeyboardInterrupt:
            bar.close()
            raise Interrupted(f"after {state['frames']} frames; {_written(args, state)}") from None
    if state["frames"] == 0:
        raise ValueError(f"{source.name}: no frame was processed")
    order = {name: position for position, name in enumerate(STAGES)}
    stages = ", ".join(f"{name} {stats.stages_ms[name]:.1f}" for name in sorted(stats.stages_ms, key=lambda n: order.get(n, len(order))))
    print(f"livepose: {stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.1f} fps), "
          f"{state['persons'] / stats.frames:.1f} persons per frame; {_written(args, state)}", file=sys.stderr)
    print(f"livepose: ms per frame: {stages}" + (f"; {stats.dropped} stale frames dropped" if stats.dropped else ""),
          file=sys.stderr)
    return 0


def _written(args, state):
    outputs = [str(p) for p in (args.out, args.json) if p is not None]
    if not outputs:
        return "nothing written"
    return f"wrote {' and '.join(outputs)} ({state['frames']} frames)"


class _FirstItems:
    """The first `count` items of a closable iterator (a LatestFrameReader), closing it at the end."""

    def __init__(self, iterator, count):
        self._iterator, self._left = iterator, count

    def __iter__(self):
        return self

    def __next__(self):
        if self._left <= 0:
            raise StopIteration
        self._left -= 1
        return next(self._iterator)

    @property
    def dropped(self):
        return getattr(self._iterator, "dropped", 0)

    def close(self):
        self._iterator.close()


def run_images(args):
    from tqdm import tqdm

    from livepose.stream.sinks import AnnotatedImageWriter, CocoResultsWriter
    from livepose.stream.sources import list_images

    _check_thresholds(args)
    paths = list_images(args.inputs)
    annotated = AnnotatedImageWriter(args.out, paths)
    coco = CocoResultsWriter(args.coco or Path(args.out) / "coco_results.json")
    estimator = load_models(args)
    with ExitStack() as stack:
        stack.callback(estimator.detector.close)
        stack.callback(estimator.close)
        counts = [_annotate_image(estimator, args, path, position, annotated, coco) for position, path in
                  enumerate(tqdm(paths, unit="image", disable=len(paths) < 2, file=sys.stderr))]
    coco.close()
    print(f"livepose: {len(paths)} images, {sum(counts)} persons; annotated copies in {annotated.folder}/, "
          f"COCO results in {coco.path}", file=sys.stderr)
    return 0


def _annotate_image(estimator, args, path, position, annotated, coco):
    """Estimate the poses of one image file, write its annotated copy, add its COCO results."""
    from livepose.stream.draw import draw_poses
    from livepose.stream.sinks import coco_image_id
    from livepose.stream.sources import read_image

    image = read_image(path)
    poses = estimator.estimate(image)
    annotated.write(path, draw_poses(image, poses, threshold=args.kpt_threshold, boxes=not args.no_boxes))
    coco.add(coco_image_id(path, position), poses, file_name=Path(path).name)
    return len(poses)


def run_export_detector(args):
    from livepose.runtime.yolo_export import ExportError, export_detector

    try:
        out = export_detector(args.weights, out=args.out, imgsz=args.imgsz)
    except ExportError as error:
        raise ValueError(str(error)) from None
    print(f"livepose: wrote {out}; use it with --detector {out}", file=sys.stderr)
    return 0


def run_fetch_models(args):
    from livepose.runtime.model_files import fetch_models

    paths = fetch_models(args.pose_size, source_dir=args.source_dir, progress=not args.no_progress)
    for kind, path in paths.items():
        print(f"livepose: {kind}: {path}", file=sys.stderr)
    return 0
