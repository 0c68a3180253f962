"""Issue 13: outputs that survive full disks, kills and double Ctrl-C, and inputs that are not
bent silently. Every case runs the real `livepose` in a subprocess on generated media, with the
tiny pose model (tests/tiny_pose_model.py) and YOLOX-Nano, so each run costs about 2 s.

Full disk: a real tmpfs of a few hundred KB (we run as root in CI and here; `mount -t tmpfs`
works), else the subprocess gets RLIMIT_FSIZE, which makes the kernel fail its writes past the limit
(EFBIG) the way a full disk fails them (ENOSPC): real failing writes either way, no fake writer.
"""
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
import uuid

import cv2
import numpy as np
import pytest

from conftest import decoded_frames
from test_cli import assert_user_error, cli_env, read_jsonl
from tiny_pose_model import write_tiny_pose_onnx

TIMEOUT_S = 120
SMALL_DISK_BYTES = 256 * 1024


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, yolox_nano):
    pose = write_tiny_pose_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx")
    return ["--pose-model", pose, "--detector", yolox_nano, "--no-fetch", "--no-progress"]


# the detector as rarely as allowed (with nobody found it still runs on every frame: keep videos short)
ONCE = ["--detect-every", "100000"]


def command(*args):
    return [sys.executable, "-m", "livepose", *map(str, args)]


def run_livepose(tmp_path, *args, file_size_limit=None):
    def limit():  # only for the RLIMIT_FSIZE fallback of small_disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(command(*args), cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
                          timeout=TIMEOUT_S, preexec_fn=limit if file_size_limit else None)


def noise_video(path, frames, size=(96, 128), fps=25):
    """An MJPG .avi of random frames (they compress badly: a few KB each in the output)."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size[1], size[0]))
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (*size, 3), np.uint8))
    writer.release()
    return path


def jpeg_stream(path, sizes):
    """A raw MJPEG stream (concatenated JPEGs): the one way to make odd or changing frame sizes here,
    as OpenCV's VideoWriter rounds every size down to even."""
    with open(path, "wb") as handle:
        for number, (height, width) in enumerate(sizes):
            image = np.full((height, width, 3), 40 + 3 * number, np.uint8)
            handle.write(cv2.imencode(".jpg", image)[1].tobytes())
    return path


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".livepose-partial-" in p.name)


@pytest.fixture
def small_disk(tmp_path):
    """(folder, file size limit or None): a 256 KB tmpfs where mounting works, else a folder whose
    writers get RLIMIT_FSIZE = 256 KB."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK_BYTES}", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    yield folder, None if mounted else SMALL_DISK_BYTES
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)


def assert_disk_full_named(result, paths, limit):
    """Exit 2 and one line naming the output that hit the full disk (whichever of `paths` it was)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    assert any(f"output {path}: cannot be written" in result.stderr or f"video {path}: " in result.stderr
               for path in paths), result.stderr
    if limit is None:  # RLIMIT_FSIZE says "File too large", not a full disk
        assert "the disk is full" in result.stderr, result.stderr


# 1 and 2
@pytest.mark.parametrize("with_json", [False, True], ids=["video", "video+json"])
def test_a_full_disk_keeps_the_earlier_outputs_and_names_the_file(tmp_path, tiny_models, small_disk, with_json):
    folder, limit = small_disk
    # noise compresses badly: ~20 KB per 256x192 frame, so 3 frames fit the disk and 24 cannot
    short, long = (noise_video(tmp_path / name, count, size=(192, 256)) for name, count in (("s.avi", 3), ("l.avi", 24)))
    out, jsonl = folder / "o.mp4", folder / "o.jsonl"
    json_flags = ["--json", jsonl] if with_json else []
    first = run_livepose(tmp_path, "video", short, "--out", out, *json_flags, *tiny_models, *ONCE, "--no-fps")
    assert first.returncode == 0, first.stderr
    before = {p: p.read_bytes() for p in (out, jsonl) if p.exists()}
    assert decoded_frames(out) == (3, (192, 256))

    second = run_livepose(tmp_path, "video", long, "--out", out, *json_flags, *tiny_models, *ONCE, "--no-fps",
                          file_size_limit=limit)
    assert_disk_full_named(second, before, limit)
    assert "wrote" not in second.stderr
    assert {p: p.read_bytes() for p in before} == before  # both earlier outputs intact
    assert leftovers(folder) == []


# 2: JSON lines alone
def test_a_full_disk_during_json_lines_keeps_the_earlier_file(tmp_path, tiny_models, small_disk):
    folder, limit = small_disk
    jsonl = folder / "p.jsonl"
    jsonl.write_text('{"frame":0,"timestamp":0.0,"persons":[]}\n')
    filler = folder / "filler"  # leaves one 4 KB page free: under 100 of the 120 JSON lines (~5 KB)
    filler.write_bytes(b"\0" * (SMALL_DISK_BYTES - 8 * 1024))
    result = run_livepose(tmp_path, "video", noise_video(tmp_path / "in.avi", 120), "--json", jsonl, *tiny_models, *ONCE,
                          file_size_limit=limit and 4096)
    assert_disk_full_named(result, [jsonl], limit)
    assert jsonl.read_text() == '{"frame":0,"timestamp":0.0,"persons":[]}\n'
    assert leftovers(folder) == []


def test_json_to_stdout_comes_line_by_line(tmp_path, tiny_models):
    process = subprocess.Popen(command("video", noise_video(tmp_path / "in.avi", 300), "--json", "-", *tiny_models),
                               cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        first = json.loads(process.stdout.readline())  # arrives while the run goes on
        assert first["frame"] == 0 and process.poll() is None
    finally:
        process.send_signal(signal.SIGINT)
        rest, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 130 and "wrote stdout" in stderr, stderr
    assert [json.loads(line)["frame"] for line in rest.splitlines()] == list(range(1, 1 + len(rest.splitlines())))


def start_run(tmp_path, video, out, jsonl, tiny_models):
    # the detector on every frame: the run must not end before the signals arrive
    return subprocess.Popen(command("video", video, "--out", out, "--json", jsonl, *tiny_models), cwd=tmp_path,
                            env=cli_env(tmp_path), stderr=subprocess.PIPE, text=True)


def wait_for_lines(process, folder, stem, lines, real_file_too=False):
    """Wait until the run's temporary JSONL in `folder` holds `lines` lines (the real name appears
    only at the end; `real_file_too`: or the real file does, as when the lines went straight there)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        candidates = [*folder.glob(f".{stem}.livepose-partial-*.jsonl"), *([folder / f"{stem}.jsonl"] * real_file_too)]
        if any(c.exists() and c.read_text().count("\n") >= lines for c in candidates):
            return
        time.sleep(0.02)
    raise AssertionError("the run wrote no lines in time")


# 3
@pytest.mark.slow
def test_double_ctrl_c_ten_times_exits_130_with_complete_outputs(tmp_path, tiny_models):
    video = noise_video(tmp_path / "in.avi", 400)
    out, jsonl = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    rng = random.Random(13)
    start = time.monotonic()
    for attempt in range(10):
        out.unlink(missing_ok=True)  # so that the real file's lines count too (as before the commit protocol)
        jsonl.unlink(missing_ok=True)
        process = start_run(tmp_path, video, out, jsonl, tiny_models)
        try:
            wait_for_lines(process, tmp_path, "o", 2 + attempt, real_file_too=True)
            process.send_signal(signal.SIGINT)
            time.sleep(rng.uniform(0.005, 0.05))
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 130, (attempt, process.returncode, stderr)
        assert "terminate called" not in stderr and "Traceback" not in stderr, stderr
        frames = len(read_jsonl(jsonl))
        assert f"interrupted after {frames} frames; wrote {jsonl} and {out} ({frames} frames)" in stderr, stderr
        assert [r["frame"] for r in read_jsonl(jsonl)] == list(range(frames))
        assert decoded_frames(out) == (frames, (96, 128))
        assert leftovers(tmp_path) == []
    print(f"\n10 double Ctrl-C runs in {time.monotonic() - start:.0f} s")


# 5
def test_sigkill_leaves_the_old_outputs_and_the_next_run_removes_its_debris(tmp_path, tiny_models):
    video = noise_video(tmp_path / "in.avi", 400)
    out, jsonl = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    first = run_livepose(tmp_path, "video", video, "--out", out, "--json", jsonl, "--max-frames", 3, *tiny_models, *ONCE)
    assert first.returncode == 0, first.stderr
    before = {p: p.read_bytes() for p in (out, jsonl)}
    process = start_run(tmp_path, video, out, jsonl, tiny_models)
    try:
        wait_for_lines(process, tmp_path, "o", 5, real_file_too=True)
    finally:
        process.kill()
        process.wait()
    assert {p: p.read_bytes() for p in before} == before  # the pair still matches
    debris = leftovers(tmp_path)
    assert len(debris) == 2 and all(f"-{process.pid}-" in name for name in debris)
    # another host's temporary (a shared folder) and a live process's are not ours to remove
    foreign = tmp_path / f".o.livepose-partial-otherhost-{process.pid}-{uuid.uuid4().hex[:8]}.mp4"
    alive = tmp_path / f".o.livepose-partial-{debris[0].split('-partial-')[1].split('-')[0]}-{os.getpid()}-0badf00d.mp4"
    foreign.write_bytes(b"x")
    alive.write_bytes(b"x")
    again = run_livepose(tmp_path, "video", video, "--out", out, "--json", jsonl, "--max-frames", 4, *tiny_models, *ONCE)
    assert again.returncode == 0, again.stderr
    assert leftovers(tmp_path) == sorted([foreign.name, alive.name])
    assert len(read_jsonl(jsonl)) == 4 and decoded_frames(out)[0] == 4


# 6
def test_a_resolution_change_is_letterboxed_in_the_video_and_warned_once(tmp_path, tiny_models):
    pytest.importorskip("av", reason="OpenCV's reader scales every frame to the first size: PyAV sees the change")
    video = jpeg_stream(tmp_path / "change.mjpeg", [(272, 640)] * 5 + [(240, 320)] * 5)
    result = run_livepose(tmp_path, "video", video, "--out", tmp_path / "o.mp4", "--json", tmp_path / "p.jsonl",
                          *tiny_models, *ONCE)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning") == 1, result.stderr
    assert "frame size changed from 640x272 to 320x240 at frame 5" in result.stderr, result.stderr
    assert decoded_frames(tmp_path / "o.mp4") == (10, (272, 640))
    assert len(read_jsonl(tmp_path / "p.jsonl")) == 10


def test_keypoints_of_a_resized_stream_are_in_each_frames_own_pixels(tmp_path):
    pytest.importorskip("av", reason="OpenCV's reader scales every frame to the first size: PyAV sees the change")
    from livepose.core.types import Poses
    from livepose.stream.run import process_video

    def corner_person(image, times):
        """One person whose keypoints all sit on the frame's bottom-right pixel."""
        height, width = image.shape[:2]
        return Poses(np.tile([[width - 1.0, height - 1.0]], (1, 17, 1)), np.ones((1, 17)),
                     np.array([[0.0, 0.0, width - 1.0, height - 1.0]]), np.ones(1))

    video = jpeg_stream(tmp_path / "change.mjpeg", [(272, 640)] * 3 + [(240, 320)] * 3)
    with pytest.warns(UserWarning, match="letterboxed"):
        process_video(video, corner_person, out=tmp_path / "o.avi", json=tmp_path / "p.jsonl")
    corners = [r["persons"][0]["keypoints"][0][:2] for r in read_jsonl(tmp_path / "p.jsonl")]
    assert corners == [[639.0, 271.0]] * 3 + [[319.0, 239.0]] * 3


# 7
def test_odd_frame_sizes_are_warned_and_documented(tmp_path, tiny_models):
    video = jpeg_stream(tmp_path / "odd.mjpeg", [(273, 641)] * 4)
    result = run_livepose(tmp_path, "video", video, "--out", tmp_path / "o.mp4", "--json", tmp_path / "p.jsonl",
                          *tiny_models, *ONCE)
    assert result.returncode == 0, result.stderr
    assert "warning: output video" in result.stderr and "641x273 frames are written as 640x272" in result.stderr
    assert decoded_frames(tmp_path / "o.mp4") == (4, (272, 640))


# 8
def test_a_truncated_video_is_warned_with_the_counts(tmp_path, tiny_models):
    full = noise_video(tmp_path / "full.avi", 20)
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    result = run_livepose(tmp_path, "video", truncated, "--json", tmp_path / "p.jsonl", *tiny_models, *ONCE)
    assert result.returncode == 0, result.stderr
    frames = len(read_jsonl(tmp_path / "p.jsonl"))
    assert 5 <= frames < 15
    assert f"{frames} frames decoded of the 20 its container announces" in result.stderr, result.stderr
    assert f"livepose: {frames} frames (of 20 announced)" in result.stderr, result.stderr
    whole = run_livepose(tmp_path, "video", full, "--json", tmp_path / "q.jsonl", *tiny_models, *ONCE)
    assert "warning" not in whole.stderr and "announced" not in whole.stderr, whole.stderr


# 9
@pytest.mark.parametrize("layout", [None, "ultralytics"])
def test_a_detector_that_does_not_fit_is_named(tmp_path, tiny_models, layout):
    pose = tiny_models[1]
    flags = ["--pose-model", pose, "--detector", pose if layout is None else tiny_models[3], "--no-fetch", "--no-progress"]
    flags += ["--detector-layout", layout] if layout else []
    result = run_livepose(tmp_path, "video", noise_video(tmp_path / "in.avi", 3), "--json", tmp_path / "p.jsonl",
                          *flags)
    assert_user_error(result, f"detector {flags[3]}")
    assert not (tmp_path / "p.jsonl").exists()


def test_a_json_output_that_cannot_be_written_names_the_file_asked_for(tmp_path):
    from livepose.files import write_atomic

    target = tmp_path / "read_only" / "b.json"
    target.parent.mkdir()
    os.chmod(target.parent, 0o500)
    try:
        if os.access(target.parent, os.W_OK):  # root ignores folder permissions: /proc refuses new files
            target = type(target)("/proc/b.json")
        with pytest.raises(OSError, match=f"^output {target}: cannot be written") as error:
            write_atomic(target, b"{}")
        assert "partial" not in str(error.value)
    finally:
        os.chmod(target.parent if target.parent != type(target)("/proc") else tmp_path, 0o700)


@pytest.mark.parametrize("camera, expected", [
    ("-1", "--camera -1: expected a camera index 0, 1, ..."),
    ("clip.mp4", "for a video file use `livepose video clip.mp4`"),
])
def test_webcam_refuses_what_is_not_a_camera(tmp_path, camera, expected):
    noise_video(tmp_path / "clip.mp4", 3)
    assert_user_error(run_livepose(tmp_path, "webcam", "--camera", camera), expected)


# 4
def image_folder(tmp_path, photo, count, bad=()):
    folder = tmp_path / "photos"
    folder.mkdir()
    data = photo.read_bytes()
    for number in range(count):
        (folder / f"p{number:03d}.jpg").write_bytes(data)
    for name in bad:
        (folder / name).write_bytes(b"\xff\xd8 not a jpeg")
    return folder


@pytest.fixture
def bus():
    from conftest import shared_path

    return shared_path("images", "ultralytics_bus.jpg")


def coco_names(path):
    return sorted({r["file_name"] for r in json.loads(path.read_text())})


def test_bad_images_are_skipped_and_listed_and_strict_stops_keeping_the_results(tmp_path, tiny_models, bus):
    photos = image_folder(tmp_path, bus, 2, bad=["a_broken.jpg", "z_broken.jpg"])
    out = tmp_path / "out"
    result = run_livepose(tmp_path, "image", photos, "--out", out, *tiny_models)
    assert result.returncode == 0, result.stderr
    for name in ("a_broken.jpg", "z_broken.jpg"):
        assert f"livepose: warning: image {photos / name}: cannot be decoded" in result.stderr
    assert "2 of 4 images" in result.stderr and "2 skipped (unreadable)" in result.stderr
    assert coco_names(out / "coco_results.json") == ["p000.jpg", "p001.jpg"]

    in_order = [photos / "p000.jpg", photos / "p001.jpg", photos / "z_broken.jpg", photos / "a_broken.jpg"]
    strict = run_livepose(tmp_path, "image", *in_order, "--out", tmp_path / "strict", "--strict", *tiny_models)
    assert_user_error(strict, photos / "z_broken.jpg")
    assert coco_names(tmp_path / "strict" / "coco_results.json") == ["p000.jpg", "p001.jpg"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_image_run_writes_the_results_of_what_was_done(tmp_path, tiny_models, bus, signum):
    photos = image_folder(tmp_path, bus, 60)
    out = tmp_path / "out"
    process = subprocess.Popen(command("image", photos, "--out", out, *tiny_models), cwd=tmp_path,
                               env=cli_env(tmp_path), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (out.is_dir() and len(list(out.glob("p*.jpg"))) >= 5):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.02)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    copies = sorted(p.name for p in out.glob("p*.jpg"))
    assert 5 <= len(copies) < 60
    assert coco_names(out / "coco_results.json") == copies
    assert f"after {len(copies)} of 60 images" in stderr, stderr


# 10
def test_image_help_and_progress_flags_tell_the_truth(tmp_path, tiny_models, bus):
    help_text = run_livepose(tmp_path, "image", "--help").stdout
    assert "its parent must exist" in " ".join(help_text.split()) and "--no-progress" in help_text
    photos = image_folder(tmp_path, bus, 2, bad=["z_broken.jpg"])
    result = run_livepose(tmp_path, "image", photos, "--out", tmp_path / "missing" / "out", *tiny_models)
    assert_user_error(result, "its parent")
    with_bar = [a for a in tiny_models if a != "--no-progress"]
    strict = run_livepose(tmp_path, "image", photos, "--out", tmp_path / "out", "--strict", *with_bar)
    error_lines = [line for line in strict.stderr.splitlines() if "livepose: error" in line]
    assert len(error_lines) == 1 and error_lines[0].startswith("livepose: error: "), strict.stderr
