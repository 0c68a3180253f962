"""`livepose bench VIDEO`: how fast the whole pipeline runs here, stage by stage.

Runs the streaming pipeline exactly as `livepose video` does (read, detect, crop, pose, decode,
draw, encode into a temporary video), after a short warm-up that is not timed, and reports
per-stage milliseconds per frame, end-to-end fps, pose crops per second, persons per frame and the
process's peak resident memory.
"""
import os
import platform
import resource
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from livepose.stream.pipeline import STAGES
from livepose.stream.run import Drawing, process_video
from livepose.stream.sources import VideoSource
from livepose.tracking.tracker import TrackerSettings

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
                    warmup=DEFAULT_WARMUP, out=None, drawing=Drawing(), tracking=TrackerSettings()):
    """Run `livepose video`'s stream over the first `max_frames` frames of `video` and measure it.

    estimator: a PoseEstimator with its detector (a PersonDetector). The annotated video is encoded to `out`
    (an .mp4/.avi path) or to a temporary file that is deleted, so encoding is timed as in real use.
    tracking: TrackerSettings as `livepose video` tracks (None: untracked).
    Returns a BenchResult.
    """
    check_settings(max_frames, warmup, detect_every)
    source = VideoSource(video)
    if source.live:
        source.release()
        raise ValueError(f"{source.name}: bench needs a video file (a live source's rate is the camera's, not ours)")
    try:
        for _ in range(warmup):  # the first calls compile kernels and allocate: not timed
            estimator.estimate(source.first_image)
    except BaseException:
        source.release()
        raise
    with tempfile.TemporaryDirectory(prefix="livepose-bench-") as scratch:
        target = Path(out) if out else Path(scratch) / "bench.mp4"
        stats = process_video(source, estimator, out=target, max_frames=max_frames, detect_every=detect_every,
                              drawing=drawing, live=False, tracking=tracking)
    pose_seconds = stats.stages_ms.get("pose", 0.0) * stats.frames / 1000.0
    return BenchResult(
        fps=round(stats.fps, 3),
        frames=stats.frames,
        persons_per_frame=round(stats.persons_per_frame, 3),
        crops_per_s=round(stats.persons / pose_seconds, 2) if pose_seconds > 0 else 0.0,
        peak_rss_mb=round(peak_rss_mb(), 1),
        stages_ms={stage: round(stats.stages_ms.get(stage, 0.0), 3) for stage in STAGES},
        backend=estimator.backend.name,
        precision=estimator.precision,
        model=estimator.meta.config,
        model_path=str(estimator.model_path),
        detector=f"{estimator.detector.backend.name} {estimator.detector.layout}",
        detect_every=detect_every,
        detector_runs=stats.detector_runs,
        video=str(video),
        machine=machine_info(),
    )


def check_settings(max_frames, warmup, detect_every):
    """ValueError naming the flag when a run length or detector interval is out of range."""
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames: expected a positive integer, got {max_frames}")
    if warmup < 0:
        raise ValueError(f"--warmup: expected 0 or more frames, got {warmup}")
    if detect_every < 1:
        raise ValueError(f"--detect-every: expected a positive integer, got {detect_every}")


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
