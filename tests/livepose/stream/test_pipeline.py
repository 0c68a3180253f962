"""The threaded pipeline with real, tiny stages: order, bounds, drops, errors and shutdown."""
import random
import threading
import time

import cv2
import numpy as np
import pytest

from livepose.stream.pipeline import LatestFrameReader, PipelineStats, run_pipeline
from livepose.timing import timed


def numbered_frames(count, log, max_sleep=0.002, fail_at=None):
    """A file-like source: frames holding their own index; log records reads and closing."""
    rng = random.Random(1)
    try:
        for index in range(count):
            time.sleep(rng.uniform(0, max_sleep))
            if index == fail_at:
                raise OSError(f"decode failed at frame {index}")
            log["read"] = index + 1
            yield np.full((2, 2), index, dtype=np.int32)
    finally:
        log["closed"] = True


def stage_threads():
    return [t for t in threading.enumerate() if t.name.startswith("livepose-")]


class FakeCamera:
    """A camera producing numbered frames at a fixed rate, like cv2.VideoCapture.read()."""

    def __init__(self, fps=200.0, frames=None, fail_at=None, hang_after=None):
        self.period = 1.0 / fps
        self.frames = frames
        self.fail_at = fail_at
        self.hang_after = hang_after
        self.unplugged = threading.Event()  # set by the test to end a hung read
        self.count = 0
        self.released = False
        self.properties = {}
        self._next = time.perf_counter()

    def set(self, prop, value):
        self.properties[prop] = value
        return True

    def read(self):
        if self.frames is not None and self.count >= self.frames:
            return False, None
        if self.count == self.fail_at:
            raise OSError("camera unplugged")
        if self.count == self.hang_after:
            self.unplugged.wait()
            return False, None
        self._next += self.period
        time.sleep(max(0.0, self._next - time.perf_counter()))
        self.count += 1
        return True, np.full((2, 2), self.count, dtype=np.int32)

    def release(self):
        self.released = True


def test_order_and_count_kept_with_jittery_stages():
    log = {}
    rng = random.Random(2)
    seen, ahead = [], []

    def infer(frame, times):
        with timed(times, "pose"):
            time.sleep(rng.uniform(0, 0.003))
        return int(frame[0, 0]) * 10

    def sink(frame, result, times):
        with timed(times, "write"):
            time.sleep(rng.uniform(0, 0.003))
        ahead.append(log["read"] - int(frame[0, 0]))
        seen.append((int(frame[0, 0]), result))

    stats = run_pipeline(numbered_frames(60, log), infer, sink, queue_size=3)
    assert seen == [(i, i * 10) for i in range(60)]
    assert stats.frames == 60 and stats.dropped == 0
    assert set(stats.stages_ms) == {"read", "pose", "write"}
    assert all(v >= 0 for v in stats.stages_ms.values())
    # bounded: two queues of 3, and one frame held by each of the sink, inference and reader
    assert max(ahead) <= 3 + 3 + 3
    assert log["closed"]
    assert not stage_threads()


def test_slow_sink_keeps_the_reader_bounded():
    log = {}
    ahead = []

    def sink(frame, result, times):
        time.sleep(0.01)
        ahead.append(log["read"] - int(frame[0, 0]))

    run_pipeline(numbered_frames(30, log, max_sleep=0), lambda f, t: None, sink, queue_size=2)
    assert len(ahead) == 30
    assert max(ahead) <= 2 + 2 + 3


@pytest.mark.parametrize("where", ["infer", "sink", "source"])
def test_error_in_any_stage_reaches_the_caller_and_threads_end(where):
    log = {}

    def infer(frame, times):
        if where == "infer" and frame[0, 0] == 5:
            raise ValueError("bad crop at frame 5")
        return None

    def sink(frame, result, times):
        if where == "sink" and frame[0, 0] == 5:
            raise ValueError("disk full at frame 5")

    source = numbered_frames(1000, log, max_sleep=0, fail_at=5 if where == "source" else None)
    with pytest.raises((ValueError, OSError), match="frame 5"):
        run_pipeline(source, infer, sink, queue_size=2)
    assert log["closed"], "the source was not closed"
    assert log["read"] < 20, "the reader kept going after the error"
    assert not stage_threads()


def test_keyboard_interrupt_in_the_caller_stops_everything():
    log = {}

    def sink(frame, result, times):
        if frame[0, 0] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(numbered_frames(1000, log, max_sleep=0), lambda f, t: None, sink)
    assert log["closed"]
    assert not stage_threads()


def test_sink_can_end_the_run_early():
    log = {}

    def sink(frame, result, times):
        if frame[0, 0] == 9:
            raise StopIteration

    stats = run_pipeline(numbered_frames(1000, log, max_sleep=0), lambda f, t: None, sink)
    assert stats.frames == 9
    assert log["closed"]
    assert not stage_threads()


def test_latest_frame_reader_drops_stale_frames_for_a_slow_consumer():
    camera = FakeCamera(fps=200.0)
    got, latest_at_yield = [], []
    with LatestFrameReader(camera) as reader:
        for frame in reader:
            got.append(int(frame[0, 0]))
            latest_at_yield.append(camera.count)
            time.sleep(0.03)  # a consumer ~6x slower than the camera
            if len(got) == 12:
                break
    dropped = reader.dropped
    assert camera.properties[cv2.CAP_PROP_BUFFERSIZE] == 1
    assert camera.released
    assert all(b > a for a, b in zip(got, got[1:]))
    assert max(b - a for a, b in zip(got, got[1:])) >= 3, "no frame was skipped"
    # the frame handed out is the newest one (the camera may have grabbed one more meanwhile)
    assert all(latest - frame <= 1 for frame, latest in zip(got, latest_at_yield))
    # every grabbed frame was handed out, dropped, or is the one still waiting
    assert camera.count - len(got) - 1 <= dropped <= camera.count - len(got)
    assert dropped > 20


def test_live_pipeline_processes_the_newest_frame_and_counts_drops():
    camera = FakeCamera(fps=200.0, frames=120)
    seen = []

    def infer(frame, times):
        time.sleep(0.02)
        return int(frame[0, 0])

    stats = run_pipeline(LatestFrameReader(camera), infer, lambda f, r, t: seen.append(r), live=True)
    assert camera.released
    assert seen == sorted(set(seen)) and seen[-1] >= 118
    assert isinstance(stats, PipelineStats)
    assert stats.frames == len(seen) < 60
    assert stats.dropped >= 120 - len(seen) - 1
    assert not stage_threads()


def test_a_failing_camera_is_an_error_not_the_end_of_the_stream():
    camera = FakeCamera(fps=500.0, fail_at=10)
    with pytest.raises(RuntimeError, match="camera unplugged"):
        run_pipeline(LatestFrameReader(camera), lambda f, t: None, lambda f, r, t: None, live=True)
    assert camera.released
    assert not stage_threads()


def test_interrupt_while_the_camera_hangs_returns_promptly(monkeypatch):
    import livepose.stream.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_JOIN_S", 0.3)
    camera = FakeCamera(fps=200.0, hang_after=3)  # delivers 3 frames, then read() blocks

    def sink(frame, result, times):
        if frame[0, 0] == 3:
            time.sleep(0.05)  # the camera is hung by now
            raise KeyboardInterrupt

    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(LatestFrameReader(camera), lambda f, t: None, sink, live=True)
    assert time.perf_counter() - start < 2.0
    assert not camera.released, "a capture blocked in read() must not be released under it"
    camera.unplugged.set()
    time.sleep(0.1)
    assert not stage_threads()


def test_queue_size_is_validated():
    with pytest.raises(ValueError, match="queue_size"):
        run_pipeline([], lambda f, t: None, lambda f, r, t: None, queue_size=0)
