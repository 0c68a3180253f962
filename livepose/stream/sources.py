"""Frame sources (webcam, video file, RTSP/HTTP stream, image folder or list) and the video writer.

Sources open eagerly, so a missing file or a dead camera is reported before any output is touched,
and hand out frames through generators that release the capture in `finally`. The writer
follows the commit protocol of livepose.files: a temporary beside the output, checked (it opens
and holds every frame) and renamed over it on close, also after Ctrl-C; after an error or a full
disk an existing output stays as it was.
"""
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from livepose.files import (
    CommittedOutput,
    MediaError,
    StagedFile,
    check_readable_file,
    check_writable,
    commit_outputs,
    discard_outputs,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
# container -> fourcc that this OpenCV (pip opencv-python-headless 4.x, FFmpeg backend) can write;
# H.264 ('avc1') is not among them, MPEG-4 part 2 and Motion JPEG are
FULL_DISK_BYTES = 1 << 20  # less free space than this beside a video that failed its check: the disk is full
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
            capture = _open_file(spec, self.name)
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


def _open_file(path, name):
    """A capture of a video file: PyAV where it is installed and the file needs no rotation (it
    gives every frame at its own size), else OpenCV's FFmpeg reader (which scales every frame to
    the first one's size). benchmarks/video_readers.py measures both."""
    try:
        return _PyAVCapture(path)
    except Exception:  # no PyAV, a rotated video, or a file FFmpeg refuses: OpenCV decides and names it
        pass
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise MediaError(f"{name}: cannot be read as a video (not a video file, corrupt or truncated)")
    return capture


class _PyAVCapture:
    """cv2.VideoCapture's read / get / set / release over PyAV (FFmpeg's bindings, `pip install av`).

    Frames come at their own size (a mid-stream resolution change stays visible), timestamps
    from the stream's time base. Raises on opening when PyAV is absent, the file cannot be
    opened, or its frames carry a rotation (OpenCV applies it; left to OpenCV)."""

    def __init__(self, path):
        import av

        self._container = av.open(str(path))
        try:
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._frames = self._container.decode(self._stream)
            self._first = next(self._frames)
            if getattr(self._first, "rotation", 0):
                raise ValueError("rotated")
        except BaseException:
            self._container.close()
            raise
        self._msec = 0.0
        self._open = True

    def isOpened(self):
        return self._open

    def read(self):
        frame, self._first = self._first, None
        if frame is None:
            try:
                frame = next(self._frames)
            except Exception:  # the end, or undecodable data: both end the video, as with OpenCV
                return False, None
        self._msec = frame.time * 1000.0 if frame.time is not None else -1.0
        return True, frame.to_ndarray(format="bgr24")

    def get(self, prop):
        if prop == cv2.CAP_PROP_POS_MSEC:
            return self._msec
        if prop == cv2.CAP_PROP_FPS:
            return float(self._stream.average_rate or 0)
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(self._stream.frames or 0)
        return 0.0

    def set(self, prop, value):
        return False

    def release(self):
        if self._open:
            self._open = False
            self._container.close()


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


def letterboxed(image, size):
    """The (H, W, 3) image scaled to fit `size` (H, W) keeping its aspect, centred on black."""
    height, width = size
    ratio = min(height / image.shape[0], width / image.shape[1])
    new_h, new_w = max(int(round(image.shape[0] * ratio)), 1), max(int(round(image.shape[1] * ratio)), 1)
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return canvas


class VideoWriter(CommittedOutput):
    """Context manager writing BGR frames of one size to a video file.

    path: .mp4/.m4v/.mov/.mkv (MPEG-4 part 2) or .avi (Motion JPEG); fps: frames per second;
    size: (H, W). Both codecs need even sizes: an odd width or height loses its last column or
    row (`size` is what is written; a warning says so). One file has one size: a later frame of
    another size is letterboxed into the first (a warning the first time). Frames go to a temporary beside `path`
    (files.StagedFile); close(), also after Ctrl-C, finalises the container, checks it (it opens
    and holds every frame: OpenCV does not report write errors such as a full disk) and renames
    it over `path`. Without frames, or after an error, an existing file at `path` is left alone.
    """

    output, stage, needs_canvas = True, "write", True  # as a stream sink (see stream.run)

    def __init__(self, path, fps, size):
        self.path = Path(path)
        extension = self.path.suffix.lower()
        if extension not in FOURCC_BY_EXTENSION:
            raise MediaError(
                f"output video {self.path}: expected one of {', '.join(FOURCC_BY_EXTENSION)}, got {extension or 'no extension'!r}"
            )
        height, width = (int(v) for v in size)
        if height <= 1 or width <= 1:
            raise ValueError(f"size: expected (H, W) of at least 2 pixels, got {size!r}")
        if not fps or fps <= 0:
            raise ValueError(f"fps: expected a positive number, got {fps!r}")
        check_writable(self.path, "output video")
        self.input_size = (height, width)
        self.size = (height - height % 2, width - width % 2)
        if self.size != self.input_size:
            warnings.warn(f"output video {self.path}: {width}x{height} frames are written as {self.size[1]}x{self.size[0]} "
                          f"(MPEG-4 and Motion JPEG need even sizes: the last column/row is dropped; "
                          f"--json keypoints stay in the input's pixels)", stacklevel=2)
        self.fps = float(fps)
        self.frames_written = 0
        self._resized = 0  # frames of another size, letterboxed
        self.staged = StagedFile(self.path, "output video")
        self._writer = cv2.VideoWriter(str(self.staged.temporary), cv2.VideoWriter_fourcc(*FOURCC_BY_EXTENSION[extension]),
                                       self.fps, (self.size[1], self.size[0]))
        if not self._writer.isOpened():
            self._writer.release()
            self.staged.discard()
            raise MediaError(f"output video {self.path}: OpenCV cannot write {extension} here")

    @property
    def empty(self):
        return self.frames_written == 0

    def __call__(self, result):
        """Append the drawing of one stream FrameResult."""
        self.write(result.canvas)

    def write(self, image):
        """Append one (H, W, 3) uint8 BGR frame; a frame of another size than the first is
        letterboxed into it (scaled to fit, black bars), with a warning the first time."""
        if self._writer is None:
            raise ValueError(f"output video {self.path}: already closed")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"output video {self.path}: expected (H, W, 3) uint8 frames, got {image.shape} {image.dtype}")
        if image.shape[:2] != self.input_size:
            # OpenCV would silently drop a frame of another size: fit it in, keeping its aspect
            if not self._resized:
                warnings.warn(f"output video {self.path}: the frame size changed from {self.input_size[1]}x{self.input_size[0]} "
                              f"to {image.shape[1]}x{image.shape[0]} at frame {self.frames_written}; such frames are "
                              "letterboxed into the first size (--json keypoints stay in each frame's own pixels)",
                              stacklevel=2)
            self._resized += 1
            image = letterboxed(image, self.input_size)
        self._writer.write(image[: self.size[0], : self.size[1]])
        self.frames_written += 1

    def finish(self):
        """Finalise the container, check it and fsync it (commit protocol step 2)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.release()
        if self.frames_written:
            self._check_written()
            self.staged.sync()

    def _check_written(self):
        """MediaError unless the temporary opens as a video holding every written frame."""
        capture = cv2.VideoCapture(str(self.staged.temporary), cv2.CAP_FFMPEG)
        try:
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else -1
        finally:
            capture.release()
        if count >= self.frames_written:
            return
        found = "cannot be opened" if count < 0 else f"holds {count} of them"
        free = shutil.disk_usage(self.staged.temporary.parent).free
        reason = f"the disk is full ({free // 1024} KiB free)" if free < FULL_DISK_BYTES else "the encoder failed"
        raise MediaError(f"output video {self.path}: {self.frames_written} frames were written but the finished "
                         f"file {found}: {reason}; an existing {self.path.name} is kept")

    def abandon(self):
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.release()

    def close(self):
        """Finalise, check and move the file into place (idempotent)."""
        if self._writer is not None:
            commit_outputs([self])

    def __del__(self):
        if getattr(self, "_writer", None) is not None:
            discard_outputs([self])
