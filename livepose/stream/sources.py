"""Frame sources (webcam, video file, RTSP/HTTP stream, image folder or list) and the video writer.

Sources open eagerly, so a missing file or a dead camera is reported before any output is touched,
and hand out frames through generators that release the capture in `finally`. The writer is a
context manager that writes to a temporary file beside the output and moves it into place on
close (also after Ctrl-C or an error), so a playable video always ends up at the output path and
an existing output is only replaced once there is something to replace it with.
"""
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from livepose.files import (
    MediaError,
    check_readable_file,
    check_writable,
    signals_deferred,
    temporary_sibling,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
# container -> fourcc that this OpenCV (pip opencv-python-headless 4.x, FFmpeg backend) can write;
# H.264 ('avc1') is not among them, MPEG-4 part 2 and Motion JPEG are
FOURCC_BY_EXTENSION = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


@dataclass(frozen=True)
class Frame:
    """One frame: image (H, W, 3) uint8 BGR; index from 0; timestamp in seconds from the start
    of the source; path of the image file for image sources, else None."""

    image: np.ndarray
    index: int
    timestamp: float
    path: str = None


def is_image_path(path):
    return Path(str(path)).suffix.lower() in IMAGE_EXTENSIONS


def camera_index(spec):
    """The camera index for a spec like 0 or "0", else None."""
    if isinstance(spec, int):
        return spec
    text = str(spec)
    return int(text) if text.isdigit() else None


def is_stream_url(spec):
    return str(spec).lower().startswith(STREAM_PREFIXES)


class VideoSource:
    """A video file, a camera index or a stream URL, opened on construction.

    `frames()` yields Frame objects and releases the capture when it ends or is closed.
    `live` is True for cameras and streams (frames arrive in real time and may be dropped);
    fps, frame_count (0 where unknown) and size (H, W) come from the first frame and the container.
    """

    def __init__(self, spec):
        self.index = camera_index(spec)
        self.live = self.index is not None or is_stream_url(spec)
        if self.index is not None:
            self.name = f"camera {self.index}"
            capture = cv2.VideoCapture(self.index)
            if not capture.isOpened():
                capture.release()
                raise MediaError(
                    f"{self.name}: cannot be opened (no such camera, or it is in use by another program); "
                    "list cameras with `ls /dev/video*` on Linux and pass --camera N"
                )
        elif is_stream_url(spec):
            self.name = f"stream {spec}"
            capture = cv2.VideoCapture(str(spec), cv2.CAP_FFMPEG)
            if not capture.isOpened():
                capture.release()
                raise MediaError(f"{self.name}: cannot be opened (unreachable, or not a video stream)")
        else:
            self.name = f"video {spec}"
            check_readable_file(spec, "video")
            if is_image_path(spec):
                raise MediaError(f"{self.name}: is an image, not a video; use `livepose image {spec} --out DIR/`")
            capture = cv2.VideoCapture(str(spec), cv2.CAP_FFMPEG)
            if not capture.isOpened():
                capture.release()
                raise MediaError(f"{self.name}: cannot be read as a video (not a video file, corrupt or truncated)")
        ok, first = capture.read()
        if not ok or first is None:
            capture.release()
            raise MediaError(f"{self.name}: opened, but no frame could be decoded (corrupt, or a camera that delivers nothing)")
        self._capture = capture
        self._first = first
        self.first_image = first  # (H, W, 3) BGR, kept for warm-up runs before streaming
        self._first_msec = capture.get(cv2.CAP_PROP_POS_MSEC)
        fps = capture.get(cv2.CAP_PROP_FPS)
        # some containers and most cameras report 0 or nonsense; 25 keeps timestamps and writers sane
        self.fps = float(fps) if 1.0 <= fps <= 240.0 else 25.0
        self.frame_count = 0 if self.live else max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        self.size = first.shape[:2]
        self._started = False

    def _timestamp(self, index, msec, start):
        if self.live:
            return time.monotonic() - start
        # the container's time of the frame just read; index / fps where the container has none
        if msec is not None and msec >= 0 and (index == 0 or msec > 0):
            return msec / 1000.0
        return index / self.fps

    def read(self):
        """(ok, image) from the capture, the already decoded first frame first (cv2.VideoCapture-like)."""
        if self._first is not None:
            first, self._first = self._first, None
            return True, first
        return self._capture.read()

    def frames(self, max_frames=None):
        """Yield Frame objects until the source ends (or after `max_frames`); releases the capture
        on the way out."""
        if self._started:
            raise RuntimeError(f"{self.name}: frames() can be iterated only once")
        self._started = True
        start = time.monotonic()
        index = 0
        try:
            while max_frames is None or index < max_frames:
                first = self._first is not None
                ok, image = self.read()
                if not ok or image is None:
                    break
                msec = self._first_msec if first else self._capture.get(cv2.CAP_PROP_POS_MSEC)
                yield Frame(image, index, self._timestamp(index, msec, start))
                index += 1
        finally:
            self.release()

    def live_reader(self):
        """A pipeline.LatestFrameReader over this live source, yielding Frame objects."""
        from livepose.stream.pipeline import LatestFrameReader

        return LatestFrameReader(_NumberedCapture(self), name=self.name)

    def release(self):
        self._first = None
        self._capture.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class _NumberedCapture:
    """Wraps a live VideoSource so that read() returns Frame objects (for LatestFrameReader)."""

    def __init__(self, source):
        self._source = source
        self._index = 0
        self._start = time.monotonic()

    def set(self, prop, value):
        return self._source._capture.set(prop, value)

    def read(self):
        ok, image = self._source.read()
        if not ok or image is None:
            return False, None
        frame = Frame(image, self._index, time.monotonic() - self._start)
        self._index += 1
        return True, frame

    def release(self):
        self._source.release()


def list_images(inputs):
    """Image files from a list of files and folders (a folder contributes its images, sorted).

    Raises MediaError naming the first input that is missing, empty or not an image.
    """
    paths = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and is_image_path(p))
            if not found:
                raise MediaError(f"image folder {item}: contains no images ({', '.join(IMAGE_EXTENSIONS)})")
            paths.extend(found)
            continue
        check_readable_file(item, "image")
        if not is_image_path(item):
            raise MediaError(f"image {item}: expected one of {', '.join(IMAGE_EXTENSIONS)}, got {item.suffix or 'no extension'!r}")
        paths.append(item)
    if not paths:
        raise MediaError("images: expected at least one image file or folder")
    return paths


def read_image(path):
    """(H, W, 3) uint8 BGR; MediaError naming the file if it cannot be decoded (grey images become BGR)."""
    check_readable_file(path, "image")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(f"image {path}: cannot be decoded (corrupt, or not an image)")
    return image


class VideoWriter:
    """Context manager writing BGR frames of one size to a video file.

    path: .mp4/.m4v/.mov/.mkv (MPEG-4 part 2) or .avi (Motion JPEG); fps: frames per second;
    size: (H, W). Frames go to a temporary file beside `path`; close() (and leaving the `with`
    block for any reason, Ctrl-C included) finalises the container and moves it to `path`. When no
    frame was written, nothing is moved and an existing file at `path` is left alone.
    """

    def __init__(self, path, fps, size):
        self.path = Path(path)
        extension = self.path.suffix.lower()
        if extension not in FOURCC_BY_EXTENSION:
            raise MediaError(
                f"output video {self.path}: expected one of {', '.join(FOURCC_BY_EXTENSION)}, got {extension or 'no extension'!r}"
            )
        height, width = (int(v) for v in size)
        if height <= 0 or width <= 0:
            raise ValueError(f"size: expected (H, W) positive, got {size!r}")
        if not fps or fps <= 0:
            raise ValueError(f"fps: expected a positive number, got {fps!r}")
        check_writable(self.path, "output video")
        self.size = (height, width)
        self.fps = float(fps)
        self.frames_written = 0
        self._temporary = temporary_sibling(self.path)
        self._writer = cv2.VideoWriter(
            str(self._temporary), cv2.VideoWriter_fourcc(*FOURCC_BY_EXTENSION[extension]), self.fps, (width, height)
        )
        if not self._writer.isOpened():
            self._writer.release()
            self._remove_temporary()
            raise MediaError(f"output video {self.path}: OpenCV cannot write {extension} here")

    output, stage, needs_canvas = True, "write", True  # as a stream sink (see stream.run)

    def __call__(self, result):
        """Append the drawing of one stream FrameResult."""
        self.write(result.canvas)

    def write(self, image):
        """Append one (H, W, 3) uint8 BGR frame of the writer's size."""
        if self._writer is None:
            raise ValueError(f"output video {self.path}: already closed")
        if image.shape != (*self.size, 3) or image.dtype != np.uint8:
            # OpenCV silently drops frames of another size; refuse instead
            raise ValueError(
                f"output video {self.path}: expected frames ({self.size[0]}, {self.size[1]}, 3) uint8, "
                f"got {image.shape} {image.dtype}"
            )
        self._writer.write(image)
        self.frames_written += 1

    def close(self):
        """Finalise the file (writes the container index) and move it into place; idempotent."""
        if self._writer is None:
            return
        with signals_deferred():
            writer, self._writer = self._writer, None
            writer.release()
            if self.frames_written:
                os.replace(self._temporary, self.path)
            else:
                self._remove_temporary()

    def _remove_temporary(self):
        try:
            os.unlink(self._temporary)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_writer", None) is not None:
            self.close()

