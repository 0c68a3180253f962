"""`livepose bench VIDEO`: how fast the whole pipeline runs here, stage by stage.

Runs the streaming pipeline exactly as `livepose video` does (read, detect, crop, pose, decode,
draw, encode into a temporary video), after a short warm-up that is not timed, and reports
per-stage milliseconds per frame, end-to-end fps, pose crops per second, persons per frame and the
process's peak resident memory.
"""
import json
import os
import platform
import resource
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from livepose.stream.pipeline import STAGES, run_pipeline, timed

DEFAULT_MAX_FRAMES = 200  # ~20 s of a 10 fps clip: long enough for stable medians, short enough to rerun
DEFAULT_WARMUP = 3        # frames run before timing: the first calls compile kernels and allocate


@dataclass(frozen=True)
class BenchResult:
    """One benchmark run; the JSON `livepose bench --json` writes (see to_dict)."""

    fps: float                  # frames per second, end to end (wall clock, all stages overlapped)
    frames: int
    persons_per_frame: float
    crops_per_s: float          # pose crops per second of the pose stage (network time only)
    peak_rss_mb: float          # peak resident memory of this process (ru_maxrss)
    stages_ms: dict             # stage -> mean ms per frame (read, detect, crop, pose, decode, draw, write)
    backend: str
    precision: str
    model: str                  # the pose model's config name, e.g. r50-256x192
    model_path: str = ""
    detector: str = ""
    detect_every: int = 1
    detector_runs: int = 0
    video: str = ""
    machine: dict = field(default_factory=dict)

    def to_dict(self):
        return asdict(self)


def peak_rss_mb():
    """Peak resident set size of this process in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def machine_info():
    """What the numbers were measured on: CPU model, cores, and the ISA extensions that matter here."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": _cpu_count(), "python": platform.python_version(),
            # other programs' load makes the figures noisy; recorded so a reader can tell
            "load_average_1min": round(os.getloadavg()[0], 2)}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            info["cpu"] = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            info["isa"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
            break
    return info


def _cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def benchmark_video(video, estimator, max_frames=DEFAULT_MAX_FRAMES, detect_every=1,
                    warmup=DEFAULT_WARMUP, out=None, kpt_threshold=0.3):
    """Run the pipeline over the first `max_frames` frames of `video` and measure it.

    estimator: a PoseEstimator with its detector (a PersonDetector). The annotated video is encoded to `out`
    (an .mp4/.avi path) or to a temporary file that is deleted, so encoding is timed as in real use.
    Returns a BenchResult.
    """
    from livepose.stream.draw import draw_poses
    from livepose.stream.detect_every import PoseTracker
    from livepose.stream.sources import VideoSource, VideoWriter

    _check_settings(max_frames, warmup, detect_every)
    detector = estimator.detector
    source = VideoSource(video)
    if source.live:
        source.release()
        raise ValueError(f"{source.name}: bench needs a video file (a live source's rate is the camera's, not ours)")
    frames = source.frames(max_frames)
    try:
        first = next(frames)  # VideoSource has decoded one frame already, so there is one
        for _ in range(warmup):
            estimator.estimate(first.image, detector(first.image))
    except BaseException:
        frames.close()  # releases the capture
        raise

    tracker = PoseTracker(detector, estimator, detect_every)
    counts = {"persons": 0}

    def infer(frame, times):
        return tracker(frame.image, times)

    with tempfile.TemporaryDirectory(prefix="livepose-bench-") as scratch:
        target = Path(out) if out else Path(scratch) / "bench.mp4"
        with VideoWriter(target, source.fps, source.size) as writer:
            def sink(frame, poses, times):
                with timed(times, "draw"):
                    canvas = draw_poses(frame.image, poses, threshold=kpt_threshold)
                with timed(times, "write"):
                    writer.write(canvas)
                counts["persons"] += len(poses)

            stats = run_pipeline(_prepend(first, frames), infer, sink)
    if stats.frames == 0:
        raise ValueError(f"{source.name}: no frame was processed")
    pose_seconds = stats.stages_ms.get("pose", 0.0) * stats.frames / 1000.0
    return BenchResult(
        fps=round(stats.fps, 3),
        frames=stats.frames,
        persons_per_frame=round(counts["persons"] / stats.frames, 3),
        crops_per_s=round(counts["persons"] / pose_seconds, 2) if pose_seconds > 0 else 0.0,
        peak_rss_mb=round(peak_rss_mb(), 1),
        stages_ms={stage: round(stats.stages_ms.get(stage, 0.0), 3) for stage in STAGES},
        backend=estimator.backend.name,
        precision=_precision(estimator),
        model=estimator.meta.config,
        model_path=str(estimator.model_path),
        detector=f"{detector.backend.name} {getattr(detector, 'layout', '')}".strip(),
        detect_every=detect_every,
        detector_runs=tracker.detections_run,
        video=str(video),
        machine=machine_info(),
    )


def _precision(estimator):
    """The runtime's precision, or int8 for a quantised (QDQ) model: the runtime's hint says f32 for
    those, but their convolutions run in INT8."""
    return "int8" if "quantization" in estimator.meta.extra else estimator.backend.precision


def _check_settings(max_frames, warmup, detect_every):
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames: expected a positive integer, got {max_frames}")
    if warmup < 0:
        raise ValueError(f"--warmup: expected 0 or more frames, got {warmup}")
    if detect_every < 1:
        raise ValueError(f"--detect-every: expected a positive integer, got {detect_every}")


def _prepend(first, frames):
    """Yield `first`, then the rest of the `frames` generator, closing it on the way out."""
    try:
        yield first
        yield from frames
    finally:
        frames.close()


def format_result(result):
    """The human-readable report: one line per stage, then the totals."""
    lines = [f"livepose bench: {result.video}, {result.frames} frames, model {result.model} on "
             f"{result.backend} {result.precision}, detector every {result.detect_every} frame(s) "
             f"({result.detector_runs} runs)"]
    lines += [f"  {stage:<7} {ms:8.2f} ms/frame" for stage, ms in result.stages_ms.items()]
    lines.append(f"  end-to-end {result.fps:.2f} fps | {result.crops_per_s:.1f} pose crops/s | "
                 f"{result.persons_per_frame:.2f} persons/frame | peak RSS {result.peak_rss_mb:.0f} MB")
    lines.append("  (stages overlap in threads: their sum exceeds the time per frame)")
    return "\n".join(lines)


def add_bench_arguments(parser):
    """The `livepose bench` flags: the video, run length, JSON output and the usual model flags."""
    from livepose.cli import _add_model_arguments

    parser.add_argument("video", help="video file to run over (e.g. ../shared/data/videos/opencv_vtest.avi)")
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, metavar="N",
                        help=f"frames to time (default {DEFAULT_MAX_FRAMES})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, metavar="N",
                        help=f"untimed runs on the first frame before timing (default {DEFAULT_WARMUP})")
    parser.add_argument("--detect-every", type=int, default=1, metavar="N",
                        help="run the detector every N frames; in between, boxes follow the previous poses (default 1)")
    parser.add_argument("--json", type=Path, metavar="F.json", help="also write the results as JSON")
    parser.add_argument("--out", type=Path, metavar="OUT.mp4", help="keep the annotated video (default: discarded)")
    _add_model_arguments(parser)


def run_bench(args):
    """`livepose bench`: run, print the report, write --json atomically. Returns the exit code."""
    from livepose.cli import load_models
    from livepose.files import write_atomic
    from livepose.stream.sources import check_readable_file, check_writable

    # user errors surface before the (slow) model loading
    _check_settings(args.max_frames, args.warmup, args.detect_every)
    check_readable_file(args.video, "video")
    if args.json is not None:
        check_writable(args.json, "JSON output")
    estimator = load_models(args)
    try:
        result = benchmark_video(args.video, estimator, max_frames=args.max_frames,
                                 detect_every=args.detect_every, warmup=args.warmup, out=args.out,
                                 kpt_threshold=args.kpt_threshold)
    finally:
        estimator.close()
        estimator.detector.close()
    print(format_result(result))
    if args.json is not None:
        write_atomic(args.json, (json.dumps(result.to_dict(), indent=2) + "\n").encode())
    return 0
