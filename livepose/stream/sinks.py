"""Where results go: poses as JSON Lines (one line per frame), COCO keypoint results, annotated images.

Nothing a user produced may be left corrupt by an interruption, a kill or a full disk: every file
goes through the commit protocol of livepose.files (a temporary beside the target, fsynced,
checked, renamed over it), so an existing output is replaced only by a complete one.
"""
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from livepose.core.coco import rescore
from livepose.files import (
    CommittedOutput,
    MediaError,
    StagedFile,
    check_writable,
    close_quietly,
    commit_outputs,
    write_atomic,
    write_failure,
)


def frame_record(index, timestamp, poses):
    """The JSONL record of one frame: {frame, timestamp, smoothed, persons: [{track_id, box,
    box_score, keypoints}]}; smoothed says whether the keypoints went through the One-Euro filter."""
    return {"frame": int(index), "timestamp": round(float(timestamp), 4), "smoothed": bool(poses.smoothed),
            "persons": poses.to_dicts()}


class JsonlWriter(CommittedOutput):
    """Context manager writing one JSON object per frame to `path` ("-": stdout).

    A file goes through the commit protocol (files.StagedFile): lines go to a temporary beside
    `path`, which replaces `path` only when the run's outputs are committed together
    (files.commit_outputs; `close()` alone commits it too). stdout gets each line flushed as it
    is written, for a reader that wants them live (`tail -f` of a webcam run).
    """

    output, stage = True, "write"  # as a stream sink (see stream.run)

    def __init__(self, path):
        self.lines_written = self._bytes = 0
        if str(path) == "-":
            self.path, self.staged, self._handle = "-", None, sys.stdout
            return
        self.path = Path(path)
        check_writable(self.path, "JSON output")
        self.staged = StagedFile(self.path, "JSON output")
        try:
            self._handle = open(self.staged.temporary, "w", encoding="utf-8")
        except OSError as error:
            raise write_failure("JSON output", self.path, error) from None

    @property
    def empty(self):
        return self.lines_written == 0

    def __call__(self, result):
        """Write one stream FrameResult."""
        self.write(result.frame.index, result.frame.timestamp, result.poses)

    def write(self, index, timestamp, poses):
        """Write the record of frame `index` (seconds `timestamp`) with its Poses."""
        line = json.dumps(frame_record(index, timestamp, poses), separators=(",", ":"))
        try:
            self._handle.write(line + "\n")
            self._handle.flush()
        except OSError as error:
            raise write_failure("JSON output", self.path, error) from None
        self.lines_written += 1
        self._bytes += len(line) + 1  # json.dumps writes ASCII: characters are bytes

    def finish(self):
        """Close and fsync the temporary (commit protocol step 2)."""
        if self.staged is None:
            return
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.close()
            except OSError as error:
                raise write_failure("JSON output", self.path, error) from None
        size = self.staged.temporary.stat().st_size
        if size != self._bytes:
            raise MediaError(f"JSON output {self.path}: {self._bytes} bytes written but {size} on disk; "
                             f"an existing {self.path.name} is kept")
        self.staged.sync()

    def abandon(self):
        if self.staged is not None and self._handle is not None:
            handle, self._handle = self._handle, None
            close_quietly(handle)

    def close(self):
        """Commit the file (idempotent); stdout is only flushed."""
        if self.staged is None:
            sys.stdout.flush()
        elif self._handle is not None:
            commit_outputs([self])


def coco_image_id(path, position):
    """COCO image id of a file: its numeric stem for COCO-named files (000000000139.jpg -> 139),
    else its 1-based position in the input list."""
    stem = Path(path).stem
    return int(stem) if stem.isdigit() else position + 1


def coco_results(image_id, poses, file_name=None):
    """COCO keypoint results of one image: one dict per person.

    keypoints: 3K numbers x, y, score (COCOeval ignores the third); score: box score times the
    mean keypoint score above core.coco.RESCORE_KEYPOINT_THRESHOLD (0 when none is).
    """
    results = []
    person_scores = rescore(poses.box_scores, poses.scores)
    for keypoints, scores, box, score in zip(poses.keypoints, poses.scores, poses.boxes, person_scores):
        x1, y1, x2, y2 = (float(v) for v in box)
        record = {
            "image_id": int(image_id),
            "category_id": 1,
            "keypoints": [round(float(v), 2) for v in np.concatenate([keypoints, scores[:, None]], axis=1).ravel()],
            "score": round(float(score), 5),
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
        }
        if file_name is not None:
            record["file_name"] = str(file_name)
        results.append(record)
    return results


class CocoResultsWriter:
    """Collects COCO keypoint results per image and writes them as one JSON list on close()."""

    def __init__(self, path):
        self.path = Path(path)
        check_writable(self.path, "COCO results")
        self.results = []

    def add(self, image_id, poses, file_name=None):
        self.results.extend(coco_results(image_id, poses, file_name))

    def close(self):
        write_atomic(self.path, json.dumps(self.results).encode("utf-8"), "COCO results")


class AnnotatedImageWriter:
    """Writes annotated copies of input images into `folder` under their own file names.

    The folder is created if its parent exists. Refuses up front to overwrite an input image, or to
    write two inputs of the same name into it.
    """

    def __init__(self, folder, input_paths):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise MediaError(f"output folder {self.folder}: exists and is not a folder")
        if not self.folder.exists():
            if not self.folder.parent.is_dir():
                raise MediaError(f"output folder {self.folder}: its parent {self.folder.parent} does not exist")
            try:
                self.folder.mkdir()
            except OSError as error:
                raise MediaError(f"output folder {self.folder}: cannot be created ({error.strerror})") from None
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise MediaError(f"output folder {self.folder}: not writable")
        seen = {}
        for path in input_paths:
            target = self.target(path)
            if target.exists() and target.resolve() == Path(path).resolve():
                raise MediaError(f"output folder {self.folder}: would overwrite the input image {path}; choose another --out")
            if target.name in seen:
                raise MediaError(f"images {seen[target.name]} and {path}: same file name, one would overwrite the other in {self.folder}")
            seen[target.name] = path

    def target(self, input_path):
        return self.folder / Path(input_path).name

    def write(self, input_path, image):
        """Encode `image` (H, W, 3) uint8 BGR in the input's format and write it; returns the path."""
        target = self.target(input_path)
        ok, encoded = cv2.imencode(target.suffix, image)
        if not ok:
            raise MediaError(f"annotated image {target}: OpenCV cannot encode {target.suffix}")
        write_atomic(target, encoded.tobytes(), "annotated image")
        return target


class PreviewWindow:
    """A stream sink showing each drawn frame in a window; q or Esc ends the run.

    Open it with PreviewWindow.open(), which gives None where no window can be shown."""

    needs_canvas, stage = True, "show"
    TITLE = "livepose (q or Esc quits)"

    @classmethod
    def open(cls):
        """A PreviewWindow, or None without a display or with an OpenCV that has no GUI (the pip
        opencv-python-headless wheel)."""
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return None
        try:
            cv2.namedWindow(cls.TITLE, cv2.WINDOW_NORMAL)
        except cv2.error:
            return None
        return cls()

    def __call__(self, result):
        cv2.imshow(self.TITLE, result.canvas)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise StopIteration

    def close(self):
        cv2.destroyAllWindows()


class ProgressBar:
    """A stream sink counting frames (or any items: call it with None) on a progress bar on stderr
    (tqdm); a context manager, closed before any message after it so that none is glued to it."""

    def __init__(self, total=None, description=None, enabled=True, unit="frame"):
        from tqdm import tqdm

        self._bar = tqdm(total=total or None, unit=unit, desc=description, dynamic_ncols=True,
                         disable=not enabled, file=sys.stderr)

    def __call__(self, result):
        self._bar.update(1)

    def close(self):
        self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
