"""Everything the GPU suite runs on, made at test time without paddle and without ../shared/data.

A GPU machine has the `gpu` and `dev` extras and nothing else: the pose model is the paddle-free
tiny pose network at 256x192 (tests/tiny_pose_model.py), the detector an ultralytics-shaped ONNX
built with the onnx helper API that finds one "person" in the middle of any frame, and the
photos and the video are generated frames. tests/livepose/tensorrt_engines/test_gpu_material.py
checks all of it in a subprocess where importing paddle fails.
"""
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tiny_pose_model import write_tiny_pose_onnx

POSE_INPUT = (256, 192)
DETECTOR_INPUT = 320
FRAMES = 5
FRAME_SIZE = (240, 320)  # H, W


@dataclass(frozen=True)
class GpuMaterial:
    pose_onnx: Path       # (N, 3, 256, 192) -> (N, 17, 64, 48), livepose metadata, random weights
    detector_onnx: Path   # (1, 3, 320, 320) -> (1, 5, 100), ultralytics metadata, one class "person"
    photos: Path          # a folder of FRAMES generated photos
    video: Path           # FRAMES frames, mp4


def make_material(folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pose = write_tiny_pose_onnx(folder / "tiny-256x192.onnx", input_size=POSE_INPUT)
    detector = write_centre_person_detector(folder / "centre_person.onnx")
    frames = generated_frames()
    photos = folder / "photos"
    photos.mkdir(exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(photos / f"frame{i}.png"), frame)
    return GpuMaterial(pose, detector, photos, write_video(folder / "clip.mp4", frames))


def generated_frames(count=FRAMES, seed=0):
    """BGR frames (H, W, 3) uint8: noise with a bright upright rectangle (a stand-in for a person)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        frame = rng.integers(0, 80, (*FRAME_SIZE, 3), dtype=np.uint8)
        x = 120 + 8 * i
        frame[40:200, x : x + 70] = rng.integers(150, 255, (160, 70, 3), dtype=np.uint8)
        frames.append(frame)
    return frames


def write_video(path, frames):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def write_centre_person_detector(path, seed=0):
    """An ultralytics-layout detector: 100 anchors (a 10x10 grid, stride 32) whose boxes sit near the
    middle of the input (cx, cy 160, 100x200 px, moved a few pixels by the image) and whose person
    score is about 0.88, so NMS leaves one person per frame. Real ONNX, weights chosen, not trained."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((5, 3, 32, 32)) * 1e-3).astype(np.float32)
    bias = np.array([160, 160, 100, 200, 2.0], np.float32)
    anchors = (DETECTOR_INPUT // 32) ** 2
    initializers = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b"),
                    numpy_helper.from_array(np.array([4, 1], np.int64), "split"),
                    numpy_helper.from_array(np.array([1, 5, anchors], np.int64), "shape")]
    nodes = [
        helper.make_node("Conv", ["images", "w", "b"], ["grid"], strides=[32, 32]),
        helper.make_node("Reshape", ["grid", "shape"], ["flat"]),
        helper.make_node("Split", ["flat", "split"], ["box", "logit"], axis=1),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
        helper.make_node("Concat", ["box", "score"], ["output0"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "centre_person",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, DETECTOR_INPUT, DETECTOR_INPUT])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, anchors])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"author": "Ultralytics (shape only: a livepose test model)", "task": "detect",
                                   "names": "{0: 'person'}", "imgsz": f"[{DETECTOR_INPUT}, {DETECTOR_INPUT}]"})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
