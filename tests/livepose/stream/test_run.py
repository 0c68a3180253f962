"""The stream core: every way of processing a stream goes through run_stream, and it works on any
frame source (a video, a fake camera, a numpy generator) with any sinks."""
import json
import re

import cv2
import numpy as np
import pytest

from conftest import REPO, shared_path
from livepose.cli import main
from livepose.stream import run as stream_run
from livepose.stream import sources
from tiny_pose_model import write_tiny_pose_onnx


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_pose_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture
def models(tiny_model, yolox_nano):
    return ["--pose-model", str(tiny_model), "--detector", str(yolox_nano), "--no-fetch", "--backend", "onnxruntime"]


@pytest.fixture
def stream_calls(monkeypatch):
    """Wraps stream.run.run_stream: each call is recorded with the kind of its frame source."""
    calls = []
    original = stream_run.run_stream

    def recording(frames, work, sinks=(), **options):
        calls.append({"live": options.get("live", False), "sinks": [type(s).__name__ for s in sinks]})
        return original(frames, work, sinks, **options)

    monkeypatch.setattr(stream_run, "run_stream", recording)
    return calls


class FakeCamera:
    """cv2.VideoCapture for camera indices, delivering the frames of a real video as a camera would."""

    def __init__(self, index, *rest, real=cv2.VideoCapture, video=None):
        self._capture = real(str(video))

    def isOpened(self):
        return self._capture.isOpened()

    def read(self):
        return self._capture.read()

    def get(self, prop):
        return self._capture.get(prop)

    def set(self, prop, value):
        return True

    def release(self):
        self._capture.release()


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_command_runs_through_the_stream_core(tmp_path, models, stream_calls):
    video = shared_path("videos", "mmpose_demo.mp4")
    out = tmp_path / "poses.jsonl"
    assert main(["video", str(video), "--json", str(out), "--no-progress", *models]) == 0
    assert stream_calls == [{"live": False, "sinks": ["JsonlWriter", "ProgressBar"]}]
    assert [r["frame"] for r in read_jsonl(out)] == [0, 1, 2, 3, 4]


def test_webcam_command_on_a_fake_camera_runs_through_the_stream_core(tmp_path, models, stream_calls, monkeypatch):
    video = shared_path("videos", "opencv_vtest.avi")
    monkeypatch.setattr(sources.cv2, "VideoCapture", lambda index, *rest: FakeCamera(index, video=video))
    out = tmp_path / "live.jsonl"
    assert main(["webcam", "--camera", "0", "--no-preview", "--max-frames", "3", "--json", str(out),
                 "--no-progress", *models]) == 0
    assert stream_calls == [{"live": True, "sinks": ["JsonlWriter", "ProgressBar"]}]
    frames = [r["frame"] for r in read_jsonl(out)]
    assert 1 <= len(frames) <= 3 and frames == sorted(set(frames))


def test_bench_command_runs_what_video_runs(tmp_path, models, stream_calls, capsys):
    video = shared_path("videos", "mmpose_demo.mp4")
    assert main(["bench", str(video), "--max-frames", "2", "--warmup", "0", *models]) == 0
    # the same core, with the annotated video encoded as `video --out` does
    assert stream_calls == [{"live": False, "sinks": ["VideoWriter"]}]
    assert "end-to-end" in capsys.readouterr().out


def test_python_api_runs_through_the_stream_core(tiny_model, yolox_nano, tmp_path, stream_calls):
    from livepose import PoseEstimator, process_video

    seen = []
    with PoseEstimator(tiny_model, detector=yolox_nano, backend="onnxruntime") as estimator:
        stats = process_video(shared_path("videos", "mmpose_demo.mp4"), estimator, out=tmp_path / "a.mp4",
                              sinks=[lambda result: seen.append(result.frame.index)])
    assert stream_calls == [{"live": False, "sinks": ["VideoWriter", "function"]}]
    assert stats.frames == 5 and seen == [0, 1, 2, 3, 4] and stats.detector_runs == 5


def test_numpy_frames_are_numbered_and_stamped_and_sinks_see_every_one(tiny_model, yolox_nano):
    from livepose import PoseEstimator, run_stream

    image = cv2.imread(str(shared_path("images", "ultralytics_bus.jpg")))
    results = []
    with PoseEstimator(tiny_model, detector=yolox_nano, backend="onnxruntime") as estimator:
        stats = run_stream((image for _ in range(4)), estimator, sinks=[results.append], fps=20)
    assert [r.frame.index for r in results] == [0, 1, 2, 3]
    np.testing.assert_allclose([r.frame.timestamp for r in results], [0.0, 0.05, 0.1, 0.15])
    assert all(r.canvas is None for r in results)  # nobody asked for a drawing: none was made
    assert stats.frames == 4 and stats.persons == sum(len(r.poses) for r in results) >= 4


def test_a_sink_that_needs_the_drawing_gets_one_drawn_frame(tiny_model, yolox_nano):
    from livepose import PoseEstimator, run_stream

    class Canvas:
        needs_canvas = True

        def __init__(self):
            self.canvases = []

        def __call__(self, result):
            self.canvases.append(result.canvas)

    image = cv2.imread(str(shared_path("images", "ultralytics_bus.jpg")))
    sink = Canvas()
    with PoseEstimator(tiny_model, detector=yolox_nano, backend="onnxruntime") as estimator:
        stats = run_stream([image, image], estimator, sinks=[sink])
    assert len(sink.canvases) == 2 and not np.array_equal(sink.canvases[0], image)
    assert "draw" in stats.stages_ms


def test_work_that_is_neither_an_estimator_nor_callable_is_refused():
    from livepose import run_stream

    with pytest.raises(TypeError, match="work: expected a PoseEstimator or a callable"):
        run_stream([], object())


def readme_stream_examples():
    """The Python code blocks of the README that process a stream."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    return [block for block in blocks if "process_video" in block or "run_stream" in block]


def test_readme_stream_examples_run_on_a_real_video(tiny_model, yolox_nano, tmp_path, monkeypatch, capsys):
    examples = readme_stream_examples()
    assert len(examples) == 2, "the README shows processing a video and processing your own frames"
    video = shared_path("videos", "mmpose_demo.mp4")
    monkeypatch.chdir(tmp_path)
    for code in examples:
        code = (code.replace("engines/pose_r50-256x192_mmpose.onnx", str(tiny_model))
                .replace("engines/yolox_nano.onnx", str(yolox_nano)).replace('"people.mp4"', f'"{video}"'))
        exec(compile(code, "README.md", "exec"), {})
    assert [r["frame"] for r in read_jsonl(tmp_path / "people_poses.jsonl")] == [0, 1, 2, 3, 4]
    assert cv2.VideoCapture(str(tmp_path / "people_poses.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 5
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("5 frames") and len(printed) == 1 + 5  # the summary, then one line per frame
