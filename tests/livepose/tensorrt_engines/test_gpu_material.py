"""The GPU suite's material works where the GPU suite runs: no paddle, no ../shared/data.

tests/gpu/ runs only on an NVIDIA machine; what it reaches before TensorRT (its models, photos,
video and the FP32 detector's people) is made and checked here, in a subprocess where importing
paddle fails and LIVEPOSE_SHARED_DATA points nowhere, and the suite's source is walked for the
fixtures that need either. Then the suite itself runs on the fake GPU (fake_gpu_plugin.py).
"""
import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

CHECK = r"""
import json, sys
sys.modules["paddle"] = None  # `import paddle` now raises ImportError
sys.path[:0] = ["tests", "tests/gpu"]
from gpu_material import FRAMES, generated_frames, make_material
from livepose.core.metadata import read_onnx_metadata
from livepose.runtime.backends.onnxruntime import OnnxRuntimeBackend
from livepose.runtime.detector import PersonDetector
from tests.conftest import decoded_frames
import numpy as np

material = make_material(sys.argv[1])
meta = read_onnx_metadata(material.pose_onnx)
with OnnxRuntimeBackend(material.pose_onnx) as pose:
    heatmaps = pose.run(np.zeros((2, 3, *meta.input_size), np.float32))
with PersonDetector(material.detector_onnx, backend="onnxruntime") as detector:
    people = [detector(frame).boxes.tolist() for frame in generated_frames()]
print(json.dumps({"input_size": meta.input_size, "heatmaps": heatmaps.shape, "people": people,
                  "photos": len(list(material.photos.iterdir())), "video_frames": decoded_frames(material.video)[0],
                  "frames": FRAMES, "paddle_loaded": sys.modules["paddle"] is not None}))
"""


def test_gpu_material_is_made_without_paddle_or_shared_data(tmp_path):
    env = {**os.environ, "LIVEPOSE_SHARED_DATA": str(tmp_path / "no-shared-data"), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path / "material")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["input_size"] == [256, 192] and report["heatmaps"] == [2, 17, 64, 48]
    assert report["photos"] == report["video_frames"] == report["frames"] == 5
    # one person per frame, in the middle: build-engine's check then has FRAMES real crops
    assert [len(boxes) for boxes in report["people"]] == [1] * 5
    for x1, y1, x2, y2 in (boxes[0] for boxes in report["people"]):
        assert 0 <= x1 < 160 < x2 <= 320 and 0 <= y1 < 120 < y2 <= 240
    assert report["paddle_loaded"] is False


def test_gpu_suite_uses_no_fixture_that_needs_paddle_or_shared_data():
    source = (REPO / "tests" / "gpu" / "test_tensorrt_gpu.py").read_text()
    for needs in (r"\bshared_path\b", r"\br18_onnx\b", r"\byolox_nano\b", r"export_pose_model", r"overfit_r18",
                  r"import paddle|\"paddle\"", r"pycuda\.driver"):
        assert not re.search(needs, source), needs


@pytest.mark.parametrize("layer, fp16_flag", [("cuda-python", "1"), ("pycuda", "0")])
def test_gpu_suite_passes_on_the_fake_gpu(layer, fp16_flag):
    """`pytest -m gpu tests/gpu` itself, on fake TensorRT (10.x with the FP16 flag, 11.x without) and a
    fake CUDA layer whose engines run their ONNX on ONNX Runtime; paddle unimportable throughout."""
    env = {**os.environ, "LIVEPOSE_FAKE_CUDA": layer, "LIVEPOSE_FAKE_TRT_FP16_FLAG": fp16_flag,
           "LIVEPOSE_SHARED_DATA": "/nonexistent", "PYTHONPATH": f"{REPO / 'tests/livepose/tensorrt_engines'}:{REPO}"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/gpu", "-p", "fake_gpu_plugin",
                             "-p", "no:cacheprovider"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"\b10 passed, 1 deselected\b", result.stdout), result.stdout[-500:]
