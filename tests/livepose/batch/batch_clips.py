"""Short real clips for the batch tests, and how to run and read a batch."""
import json
from pathlib import Path

import cv2

from conftest import shared_path

CLIP_SIZE = (160, 120)  # (W, H): small, so a clip of real people costs well under a second per frame


def cut_clip(path, source="opencv_vtest.avi", start=0, frames=5):
    """Write `frames` real frames of a shared video from `start`, resized, as MPEG-4; returns the path."""
    capture = cv2.VideoCapture(str(shared_path("videos", source)))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, CLIP_SIZE)
    for _ in range(frames):
        ok, image = capture.read()
        assert ok, f"{source} has fewer than {start + frames} frames"
        writer.write(cv2.resize(image, CLIP_SIZE))
    writer.release()
    capture.release()
    return Path(path)


def make_folder(root, good=3, bad=True, frames=5):
    """root/in with `good` real clips (one in a subfolder) and, with `bad`, a corrupt video and a text
    file named .mp4; returns the folder."""
    folder = Path(root) / "in"
    for index in range(good):
        name = f"sub/clip{index}.mp4" if index == 1 else f"clip{index}.mp4"
        cut_clip(folder / name, start=40 * index, frames=frames)
    if bad:
        data = (folder / "clip0.mp4").read_bytes()
        (folder / "corrupt.mp4").write_bytes(data[: len(data) // 3])  # a cut-off download: no index
        (folder / "notes.mp4").write_text("not a video\n")
    return folder


def jsonl_lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def status_records(out_dir):
    """The video records of DIR/batch.jsonl, in order."""
    return [r for r in jsonl_lines(Path(out_dir) / "batch.jsonl") if r["event"] == "video"]


def last_run(out_dir):
    """{video key: status} of the last run in DIR/batch.jsonl."""
    records = jsonl_lines(Path(out_dir) / "batch.jsonl")
    start = max(i for i, r in enumerate(records) if r["event"] == "run")
    return {r["video"]: r["status"] for r in records[start + 1:]}
