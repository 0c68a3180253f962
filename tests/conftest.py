"""Shared fixtures: the real test material in ../shared/data and exported pose models."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LIVEPOSE_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_path(*parts):
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test material not found: {path} (see ../shared/data/MANIFEST.md)")
    return path


def decoded_frames(path):
    """(frame count, (H, W)) of a video as a player decodes it."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    count, size = 0, None
    while True:
        ok, image = capture.read()
        if not ok:
            break
        count, size = count + 1, image.shape[:2]
    capture.release()
    return count, size


@pytest.fixture(scope="session")
def coco_subset():
    """(annotation file, image folder) of the COCO train2017 subset with keypoints."""
    root = shared_path("coco", "coco_train2017_subset")
    return root / "person_keypoints.json", root / "images"


@pytest.fixture(scope="session")
def yolox_nano():
    return shared_path("models", "yolox_nano.onnx")


_EXPORTS = {}


def export_pose_model(config, out_dir, checkpoint=None):
    """Run `python -m train export` once per (config, checkpoint) for the session; skip without paddle."""
    pytest.importorskip("paddle", reason="the pose model is exported with PaddlePaddle: pip install -e '.[train]'")
    key = (config, checkpoint)
    if key not in _EXPORTS:
        out = Path(out_dir) / f"{config}{'-' + Path(checkpoint).stem if checkpoint else ''}.onnx"
        cmd = [sys.executable, "-m", "train", "export", "--config", config, "--out", str(out)]
        if checkpoint:
            cmd += ["--checkpoint", str(checkpoint)]
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"export failed:\n{result.stdout}\n{result.stderr}")
        _EXPORTS[key] = out
    return _EXPORTS[key]


@pytest.fixture(scope="session")
def r18_onnx(tmp_path_factory):
    """A random-weight r18-256x192 pose model exported to ONNX (for shapes, speed and plumbing only)."""
    return export_pose_model("r18-256x192", tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def overfit_r18_checkpoint(coco_subset, tmp_path_factory):
    """An r18-256x192 checkpoint (.safetensors) that has memorised 8 real persons of the COCO subset
    (mean keypoint error ~0.5 heatmap px on them): a network with real heatmap peaks, for precision
    checks. Costs 240 CPU training steps (~8 min on 2 cores) once per session; see
    train.fit.overfit_checkpoint."""
    pytest.importorskip("paddle", reason="training needs PaddlePaddle: pip install -e '.[train]'")
    from train.fit import overfit_checkpoint

    # a developer may keep the checkpoint between sessions (LIVEPOSE_TEST_CACHE=DIR); CI never does
    cache = os.environ.get("LIVEPOSE_TEST_CACHE")
    folder = Path(cache) if cache else tmp_path_factory.mktemp("overfit")
    path = folder / "r18-256x192-overfit.safetensors"
    if not path.is_file():
        overfit_checkpoint(path, *coco_subset)
    return path
