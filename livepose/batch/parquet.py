"""Poses as Parquet: one file per video, one row per person and frame, a fixed schema.

Columns: video (string, the batch key), frame (int32), timestamp (float64, seconds), person
(int16, index within the frame), track_id (int64, nullable: null for untracked poses), box_x1, box_y1,
box_x2, box_y2, box_score (float32, frame pixels), then for each COCO-17 keypoint NAME:
NAME_x, NAME_y, NAME_score (float32). Frames with nobody have no row, so the file's metadata
holds `livepose.frames` (frames processed), `livepose.fps` and `livepose.schema_version`.
pyarrow comes with the `cluster` extra (or `pip install pyarrow`).
"""
import numpy as np

from livepose.core.skeleton import KEYPOINT_NAMES

SCHEMA_VERSION = "1"
BOX_COLUMNS = ("box_x1", "box_y1", "box_x2", "box_y2")
KEYPOINT_COLUMNS = tuple(f"{name}_{part}" for name in KEYPOINT_NAMES for part in ("x", "y", "score"))


class PyarrowMissing(ValueError):
    """--parquet without pyarrow installed; the message says how to install it."""


def import_pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise PyarrowMissing("--parquet needs pyarrow: pip install 'livepose[cluster]' (or pip install pyarrow)") from None
    return pyarrow


def pose_schema():
    """The pyarrow schema every batch Parquet file has."""
    pa = import_pyarrow()
    fields = [pa.field("video", pa.string(), nullable=False), pa.field("frame", pa.int32(), nullable=False),
              pa.field("timestamp", pa.float64(), nullable=False), pa.field("person", pa.int16(), nullable=False),
              pa.field("track_id", pa.int64(), nullable=True)]
    fields += [pa.field(name, pa.float32(), nullable=False) for name in BOX_COLUMNS + ("box_score",) + KEYPOINT_COLUMNS]
    return pa.schema(fields)


class ParquetSink:
    """A stream sink collecting every person of every frame; `write(path, frames, fps)` writes
    the file once the video is complete (a batch output is committed whole, never appended)."""

    output, stage = True, "write"

    def __init__(self, video):
        import_pyarrow()  # fail before the video is processed, not after
        self.video = video
        self._frames, self._timestamps, self._persons, self._tracks, self._values = [], [], [], [], []

    def __call__(self, result):
        poses, count = result.poses, len(result.poses)
        if count == 0:
            return
        self._frames.append(np.full(count, result.frame.index, np.int32))
        self._timestamps.append(np.full(count, result.frame.timestamp, np.float64))
        self._persons.append(np.arange(count, dtype=np.int16))
        track_ids = getattr(poses, "track_ids", None)
        self._tracks.append([None] * count if track_ids is None else [int(t) for t in track_ids])
        keypoints = np.concatenate([poses.keypoints, poses.scores[:, :, None]], axis=2).reshape(count, -1)
        self._values.append(np.concatenate([poses.boxes, poses.box_scores[:, None], keypoints], axis=1))

    def table(self, frames, fps):
        """The pyarrow Table of everything collected, with the video's metadata."""
        pa = import_pyarrow()
        schema = pose_schema()
        values = np.concatenate(self._values) if self._values else np.zeros((0, len(schema) - 5), np.float32)
        columns = [pa.array([self.video] * len(values), pa.string()),
                   pa.array(_joined(self._frames, np.int32)), pa.array(_joined(self._timestamps, np.float64)),
                   pa.array(_joined(self._persons, np.int16)),
                   pa.array([t for chunk in self._tracks for t in chunk], pa.int64())]
        columns += [pa.array(values[:, i].astype(np.float32)) for i in range(values.shape[1])]
        metadata = {"livepose.frames": str(int(frames)), "livepose.fps": repr(float(fps)),
                    "livepose.schema_version": SCHEMA_VERSION}
        return pa.Table.from_arrays(columns, schema=schema.with_metadata(metadata))

    def write(self, path, frames, fps):
        import pyarrow.parquet as pq

        pq.write_table(self.table(frames, fps), path)


def _joined(chunks, dtype):
    return np.concatenate(chunks).astype(dtype) if chunks else np.zeros(0, dtype)
