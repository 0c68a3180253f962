"""Streaming loop: read -> infer -> sink as overlapping stages with bounded queues.

Files: a reader thread decodes ahead into a small queue, an inference thread runs detect + pose,
and the caller's thread draws and writes (so a GUI window, which must live on the main thread,
can be the sink, and Ctrl-C lands where it is handled). One thread per stage and FIFO queues keep
frame order; queues are bounded, so a slow stage makes the faster ones wait instead of buffering.

Live sources (webcam, RTSP): `LatestFrameReader` grabs continuously on its own thread and keeps only
the newest frame, and the inference thread pulls from it directly, so a frame waits at most one
inference before being processed and stale frames are dropped (and counted).

Every stage function receives `times`, a dict for this frame that it fills with seconds per named
stage (see `timed`); the pipeline averages them per frame in `PipelineStats.stages_ms`.
"""
import queue
import threading
import time
from dataclasses import dataclass, field

from livepose.files import signals_deferred
from livepose.timing import timed

STAGES = ("read", "detect", "crop", "pose", "decode", "track", "draw", "write")
_POLL_S = 0.05      # how often a blocked stage re-checks the stop flag
_JOIN_S = 5.0       # how long shutdown waits for a stage thread (a source stuck in a blocking read)
_END = object()     # end-of-stream marker passed down the queues


@dataclass(frozen=True)
class PipelineStats:
    """What one run did. stages_ms: mean milliseconds per processed frame for each timed stage
    (stages overlap in threads, so their sum may exceed the wall time per frame)."""

    frames: int                 # frames that went through all stages
    dropped: int                # stale frames a live source skipped (always 0 for files)
    seconds: float              # wall time from the start to the last frame out of the sink
    stages_ms: dict = field(default_factory=dict)

    @property
    def fps(self):
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class PipelineError(RuntimeError):
    """A stage thread did not stop within the shutdown timeout."""


def run_pipeline(frames, infer, sink, queue_size=4, live=False):
    """Run frames through infer and sink until the source ends; return PipelineStats.

    frames: an iterable of frames (a generator from livepose.stream.sources, or a LatestFrameReader for a
    live source; it is closed on the way out, releasing its capture).
    infer(frame, times) -> result, run on the inference thread.
    sink(frame, result, times), run on the calling thread in frame order; it may raise StopIteration
    to end the run early (e.g. a GUI's quit key).
    queue_size: frames allowed to wait between two stages (files); live sources use 1.
    live: True for cameras and streams: inference pulls the newest frame itself (no read-ahead),
    and `frames.dropped` (LatestFrameReader) is reported.

    An exception in any stage (or KeyboardInterrupt in the caller) stops every stage, closes the
    source and is re-raised here after the threads have ended.
    """
    if queue_size < 1:
        raise ValueError(f"queue_size: expected an integer >= 1, got {queue_size!r}")
    run = _Run(frames, infer, live, queue_size)
    count, totals = 0, {}
    start = time.perf_counter()
    threads = run.start_threads()
    try:
        while True:
            frame, result, times = run.get(run.results, (_END, None, None))
            if frame is _END:
                break
            try:
                sink(frame, result, times)
            except StopIteration:
                break
            count += 1
            for stage, seconds in times.items():
                totals[stage] = totals.get(stage, 0.0) + seconds
    finally:
        seconds = time.perf_counter() - start
        stuck = run.stop_threads(threads)
    if run.errors:
        raise run.errors[0]
    if stuck:
        raise PipelineError(f"pipeline stages {stuck} did not stop within {_JOIN_S:.0f} s (a blocked source read?)")
    stages_ms = {stage: 1000.0 * totals[stage] / count for stage in totals} if count else {}
    return PipelineStats(frames=count, dropped=getattr(frames, "dropped", 0), seconds=seconds, stages_ms=stages_ms)


class _Run:
    """The shared state of one pipeline run and its stage threads: the stop flag, the first
    errors, the source iterator and the results queue."""

    def __init__(self, frames, infer, live, queue_size):
        self.stop = threading.Event()
        self.errors = []
        self.iterator = iter(frames)
        self.infer, self.live, self.queue_size = infer, live, queue_size
        self.results = queue.Queue(maxsize=1 if live else queue_size)

    def put(self, q, item):
        """Put unless stopping; False if the run is stopping."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q, stopped):
        """Next item, or `stopped` if the run is stopping."""
        while not self.stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return stopped

    def guarded(self, stage):
        def body():
            try:
                stage()
            except BaseException as error:  # handed to the caller, which re-raises it
                self.errors.append(error)
                self.stop.set()
        return body

    def next_frame(self):
        """(frame, times) from the source, or _END when it is exhausted."""
        times = {}
        with timed(times, "read"):
            frame = next(self.iterator, _END)
        return frame, times

    def read_ahead(self, decoded):
        try:
            while not self.stop.is_set():
                frame, times = self.next_frame()
                if frame is _END or not self.put(decoded, (frame, times)):
                    break
        finally:
            _close(self.iterator)
            self.put(decoded, (_END, None))

    def inference(self, decoded):
        while True:
            frame, times = self.get(decoded, (_END, None)) if decoded is not None else self.next_frame()
            if frame is _END:
                break
            result = self.infer(frame, times)
            if not self.put(self.results, (frame, result, times)):
                return
        self.put(self.results, (_END, None, None))

    def infer_live(self):
        try:
            self.inference(None)
        finally:
            _close(self.iterator)

    def start_threads(self):
        if self.live:
            stages = {"livepose-infer": self.infer_live}
        else:
            decoded = queue.Queue(maxsize=self.queue_size)
            stages = {"livepose-read": lambda: self.read_ahead(decoded), "livepose-infer": lambda: self.inference(decoded)}
        threads = [threading.Thread(target=self.guarded(stage), name=name, daemon=True) for name, stage in stages.items()]
        for thread in threads:
            thread.start()
        return threads

    def stop_threads(self, threads):
        """Stop every stage and wait for it; the names of threads still running after _JOIN_S."""
        # a second Ctrl-C must not abandon the joins: a thread left inside OpenVINO or FFmpeg while
        # Python exits aborts the process ("terminate called without an active exception")
        with signals_deferred():
            self.stop.set()
            if self.live:  # wakes an inference thread waiting for a camera that has stopped delivering
                _close(self.iterator)
            for thread in threads:
                thread.join(_JOIN_S)
        return [t.name for t in threads if t.is_alive()]


def _close(iterator):
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


class LatestFrameReader:
    """Iterate over a live capture, always yielding the newest frame and dropping stale ones.

    capture: an opened cv2.VideoCapture (or anything with read() -> (ok, frame) and release()).
    Its driver buffer is set to one frame (CAP_PROP_BUFFERSIZE; not every backend honours it, so a
    grab thread also keeps only the newest frame). `dropped` counts frames grabbed but never
    yielded. Iteration ends when the capture stops delivering (read() returns ok=False); close()
    stops the grab thread and releases the capture.
    """

    def __init__(self, capture, name="camera"):
        import cv2

        self.name = name
        self._capture = capture
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._condition = threading.Condition()
        self._frame = None
        self._sequence = 0        # frames grabbed so far
        self._yielded = 0         # sequence number of the last frame handed out
        self._handed_out = 0      # frames handed out
        self._ended = False
        self._error = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._grab, name=f"livepose-grab-{name}", daemon=True)
        self._thread.start()

    @property
    def dropped(self):
        with self._condition:
            return self._sequence - self._handed_out - (1 if self._sequence > self._yielded else 0)

    def _grab(self):
        try:
            while not self._closed.is_set():
                ok, frame = self._capture.read()
                with self._condition:
                    if not ok:
                        break
                    self._frame = frame
                    self._sequence += 1
                    self._condition.notify_all()
        except BaseException as error:  # re-raised to the consumer
            with self._condition:
                self._error = error
        finally:
            with self._condition:
                self._ended = True
                self._condition.notify_all()

    def __iter__(self):
        return self

    def __next__(self):
        with self._condition:
            while self._sequence == self._yielded and not self._ended and not self._closed.is_set():
                self._condition.wait(_POLL_S)
            if self._error is not None:
                raise RuntimeError(f"{self.name}: reading a frame failed ({self._error})") from self._error
            if self._sequence == self._yielded or self._closed.is_set():
                raise StopIteration
            self._yielded = self._sequence
            self._handed_out += 1
            return self._frame

    def close(self):
        """Stop grabbing and release the capture (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join(_JOIN_S)
        # releasing a capture under a read() still blocked in it crashes some OpenCV backends
        if not self._thread.is_alive():
            self._capture.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
