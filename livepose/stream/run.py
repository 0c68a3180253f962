"""The stream core: frames -> per-frame work -> sinks, through the threaded pipeline.

`livepose video`, `webcam`, `bench` and the Python API all process a stream here: `run_stream`
takes any frame source, the per-frame work and a list of sinks; `process_video` opens a video
(file, stream URL or camera) and its output files around it. Sinks are plain callables given a
FrameResult; this module knows nothing of argparse, progress bars or windows beyond them.

    from livepose import PoseEstimator, process_video
    with PoseEstimator("engines/r50-256x192.onnx", detector="engines/yolox_nano.onnx") as estimator:
        stats = process_video("in.mp4", estimator, out="out.mp4", json="poses.jsonl")
"""
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from livepose.files import MediaError, outputs_committed, signals_deferred
from livepose.stream.detect_every import DetectAndPose
from livepose.stream.draw import draw_fps, draw_poses
from livepose.stream.pipeline import run_pipeline
from livepose.stream.sinks import JsonlWriter
from livepose.stream.sources import Frame, VideoSource, VideoWriter
from livepose.timing import timed
from livepose.tracking.outputs import MotWriter, PoseTrackWriter
from livepose.tracking.tracker import TrackerSettings
from livepose.tracking.work import TrackAndPose

FPS_SMOOTHING = 0.9  # exponential moving average of the frame rate shown on the output
TRUNCATION_TOLERANCE, TRUNCATION_TOLERANCE_FRAMES = 0.05, 2  # decoded vs announced frames, see _check_count


@dataclass(frozen=True)
class Drawing:
    """How poses are drawn for the video output and the preview window."""

    keypoint_threshold: float = 0.3  # a heatmap maximum below this is a guess: not drawn
    boxes: bool = True               # person boxes and their scores
    fps: bool = True                 # the frame-rate overlay

    def draw(self, image, poses, fps):
        """A drawn copy of the (H, W, 3) uint8 BGR image; `fps` 0 shows no rate yet."""
        canvas = draw_poses(image, poses, threshold=self.keypoint_threshold, boxes=self.boxes)
        if self.fps and fps > 0:
            draw_fps(canvas, fps)
        return canvas


@dataclass
class FrameResult:
    """One processed frame as every sink receives it.

    frame: the Frame (image, index, timestamp); poses: its Poses; times: seconds per stage so far;
    fps: the smoothed rate of frames out of the stream (0 until the second frame); canvas: the
    drawing (None unless a sink has `needs_canvas`).
    """

    frame: Frame
    poses: object
    times: dict
    fps: float
    canvas: np.ndarray = None


@dataclass(frozen=True)
class StreamStats:
    """What one run did. stages_ms: mean milliseconds per frame of each timed stage (stages overlap
    in threads, so their sum may exceed the time per frame); detector_runs: None for work that does
    not say."""

    frames: int
    persons: int
    seconds: float
    dropped: int = 0              # stale frames a live source skipped
    stages_ms: dict = field(default_factory=dict)
    detector_runs: int | None = None
    announced_frames: int | None = None  # the frame count a video file's container announces

    @property
    def fps(self):
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def persons_per_frame(self):
        return self.persons / self.frames if self.frames else 0.0


class StreamInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a stream; every frame before it reached every sink. `frames` and
    `persons` count them."""

    def __init__(self, frames, persons):
        super().__init__(f"after {frames} frames")
        self.frames, self.persons = frames, persons


def run_stream(frames, work, sinks=(), live=False, fps=None, drawing=Drawing(), queue_size=4):
    """Run `work` over `frames` into `sinks`; returns StreamStats.

    frames: an iterable of Frame objects or of (H, W, 3) uint8 BGR arrays (numbered from 0 and
    stamped index / fps when `fps` is given, else with seconds since the start).
    work: a PoseEstimator (with its detector: tracked, see as_work), or any callable
    (image, times) -> Poses such as TrackAndPose (given `timestamp=` too when it has
    `uses_timestamps`) or DetectAndPose; it runs on the pipeline's inference thread.
    sinks: callables sink(FrameResult), run on this thread in frame order. Attributes they may
    have: `needs_canvas` (the drawing is made once per frame for all of them), `output` (a file:
    a frame goes to all outputs or to none, Ctrl-C held back in between), `stage` (the name their
    time is reported under). A sink raises StopIteration to end the run early.
    live: a camera or stream: inference takes the newest frame, dropping stale ones.
    Ctrl-C raises StreamInterrupted once the frames so far are in every sink.
    """
    work = as_work(work)
    outputs = [sink for sink in sinks if getattr(sink, "output", False)]
    others = [sink for sink in sinks if not getattr(sink, "output", False)]
    draws = any(getattr(sink, "needs_canvas", False) for sink in sinks)
    counts = {"frames": 0, "persons": 0, "fps": 0.0, "last": None}

    def sink_all(frame, poses, times):
        result = FrameResult(frame, poses, times, _update_rate(counts))
        if draws:
            with timed(times, "draw"):
                result.canvas = drawing.draw(frame.image, poses, result.fps)
        with signals_deferred():  # counted with its outputs: a Ctrl-C held back here lands after both
            _call_sinks(outputs, result)
            counts["frames"] += 1
            counts["persons"] += len(poses)
        _call_sinks(others, result)

    stream = frames if isinstance(frames, _FrameStream) else _FrameStream(frames, fps)
    if getattr(work, "uses_timestamps", False):  # a tracker predicts by seconds, not frame counts
        infer = lambda frame, times: work(frame.image, times, timestamp=frame.timestamp)  # noqa: E731
    else:
        infer = lambda frame, times: work(frame.image, times)  # noqa: E731
    try:
        stats = run_pipeline(stream, infer, sink_all, queue_size=queue_size, live=live)
    except KeyboardInterrupt:
        raise StreamInterrupted(counts["frames"], counts["persons"]) from None
    runs = getattr(work, "detections_run", None)
    return StreamStats(stats.frames, counts["persons"], stats.seconds, stats.dropped, stats.stages_ms, runs)


def as_work(work, detect_every=1, tracking=TrackerSettings()):
    """Per-frame work: a PoseEstimator becomes TrackAndPose (ids, smoothing; `tracking` its
    TrackerSettings) or, with tracking=None, DetectAndPose, with its own detector run every
    `detect_every` frames; a callable (image, times) -> Poses is used as it is."""
    if hasattr(work, "estimate"):
        if work.detector is None:
            raise ValueError("work: the PoseEstimator has no detector; give it one (detector=...) to process a stream")
        if tracking is not None:
            return TrackAndPose(work.detector, work, detect_every, tracking)
        return DetectAndPose(work.detector, work, detect_every)
    if not callable(work):
        raise TypeError(f"work: expected a PoseEstimator or a callable (image, times) -> Poses, got {type(work).__name__}")
    return work


def _call_sinks(sinks, result):
    for sink in sinks:
        stage = getattr(sink, "stage", None)  # sinks may be plain functions
        with timed(result.times if stage else None, stage):
            sink(result)


def _update_rate(counts):
    """The smoothed rate of frames reaching the sinks, updated for one more frame."""
    now = time.perf_counter()
    if counts["last"] is not None:
        rate = 1.0 / max(now - counts["last"], 1e-6)
        counts["fps"] = rate if counts["fps"] == 0.0 else FPS_SMOOTHING * counts["fps"] + (1 - FPS_SMOOTHING) * rate
    counts["last"] = now
    return counts["fps"]


class _FrameStream:
    """Frames from any iterable as Frame objects, at most `limit` of them; close() and `dropped`
    reach the source (a generator releasing its capture, a LatestFrameReader)."""

    def __init__(self, frames, fps=None, limit=None):
        self._source, self._iterator = frames, iter(frames)
        self._fps, self._left, self._index = fps, limit, 0
        self._start = time.monotonic()

    def __iter__(self):
        return self

    def __next__(self):
        if self._left is not None:
            if self._left <= 0:
                raise StopIteration
            self._left -= 1
        item = next(self._iterator)
        if not isinstance(item, Frame):
            stamp = self._index / self._fps if self._fps else time.monotonic() - self._start
            item = Frame(item, self._index, stamp)
        self._index += 1
        return item

    @property
    def dropped(self):
        return getattr(self._source, "dropped", 0)

    def close(self):
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()


def process_video(source, work, out=None, json=None, sinks=(), max_frames=None, detect_every=1,
                  drawing=Drawing(), live=None, mot=None, posetrack=None, tracking=TrackerSettings()):
    """Poses of everyone in a video file, stream URL or camera; returns StreamStats.

    source: a path, URL, camera index or an opened VideoSource (released on the way out);
    work: a PoseEstimator with its detector (run every `detect_every` frames, boxes following the
    poses in between) or a callable as in run_stream; out: annotated video to write (.mp4, .avi,
    ...); json: poses as JSON Lines; mot / posetrack: box tracks in MOTChallenge format /
    PoseTrack18 JSON; sinks: more sinks after those (preview, progress, a callback); live: drop
    stale frames (default: True for cameras and streams); tracking: TrackerSettings, or None for
    untracked poses (no ids: no mot / posetrack).
    """
    source = source if isinstance(source, VideoSource) else VideoSource(source)
    with ExitStack() as stack:
        stack.callback(source.release)
        live = source.live if live is None else live
        work = as_work(work, detect_every, tracking)
        # committed in this order: the poses first, then the tracks, then the video (see files.commit_outputs)
        outputs = stack.enter_context(outputs_committed([]))
        if json is not None:
            outputs.append(JsonlWriter(json))
        if mot is not None:
            outputs.append(MotWriter(mot))
        if posetrack is not None:
            outputs.append(PoseTrackWriter(posetrack, video_name=Path(str(source.name)).stem))
        if out is not None:
            outputs.append(VideoWriter(out, source.fps, source.size))
        frames = source.live_reader() if live else source.frames(max_frames)
        stream = _FrameStream(frames, limit=max_frames if live else None)
        stats = run_stream(stream, work, [*outputs[::-1], *sinks], live=live, drawing=drawing)
    if stats.frames == 0:
        raise MediaError(f"{source.name}: no frame was processed")
    return _check_count(source, stats, max_frames)


def _check_count(source, stats, max_frames):
    """Stats with the frame count the container announced; a warning when clearly fewer frames
    were decoded (a truncated file). Live sources and estimated counts (a tolerance of 5 %, at
    least 2 frames, for variable frame rates and counts from the duration) are not judged."""
    announced = source.frame_count if not source.live and max_frames is None else 0
    if announced <= 0:
        return stats
    stats = replace(stats, announced_frames=announced)
    if stats.frames < announced - max(TRUNCATION_TOLERANCE_FRAMES, TRUNCATION_TOLERANCE * announced):
        warnings.warn(f"{source.name}: {stats.frames} frames decoded of the {announced} its container announces "
                      "(a truncated or damaged file?)", stacklevel=3)
    return stats
