"""A small real pose-shaped ONNX model (conv, BN, ReLU, transposed conv) with livepose metadata.

It follows the artifact contract (input `image` [N,3,H,W] with dynamic N, output `heatmaps`
[N,17,H/4,W/4]) so engine building, FP16 conversion and comparison run in a second on a CPU.
Its weights are random: for plumbing and numerics, never for keypoint accuracy.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from livepose.core.metadata import METADATA_KEY, PoseModelMeta

INPUT_SIZE = (64, 48)
HEATMAP_SIZE = (16, 12)


def tiny_pose_meta(trained=False, input_size=INPUT_SIZE):
    height, width = input_size
    return PoseModelMeta(
        architecture="tiny_test_net", config=f"tiny-{height}x{width}", input_size=tuple(input_size),
        heatmap_size=(height // 4, width // 4),
        trained=trained, weights_source="test" if trained else "random",
    )


def write_tiny_pose_onnx(path, seed=0, trained=False, input_size=INPUT_SIZE):
    """The model at `path`; input_size (H, W), multiples of 8 (the GPU suite uses 256x192)."""
    rng = np.random.default_rng(seed)
    weights = {}

    def param(name, *shape, scale=None):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        value = rng.standard_normal(shape) * (scale if scale is not None else np.sqrt(2.0 / fan_in))
        weights[name] = numpy_helper.from_array(value.astype(np.float32), name)
        return name

    nodes = [
        helper.make_node("Conv", ["image", param("w1", 16, 3, 3, 3)], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", param("g1", 16, scale=0.1), param("b1", 16, scale=0.1),
                                                param("m1", 16, scale=0.1), "v1"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", param("w2", 32, 16, 3, 3)], ["c2"], strides=[4, 4], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("ConvTranspose", ["r2", param("w3", 32, 32, 4, 4)], ["d1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d1"], ["r3"]),
        helper.make_node("Conv", ["r3", param("w4", 17, 32, 1, 1), param("bias4", 17, scale=0.1)], ["heatmaps"]),
    ]
    weights["v1"] = numpy_helper.from_array(np.abs(rng.standard_normal(16)).astype(np.float32) + 0.5, "v1")
    height, width = input_size
    graph = helper.make_graph(
        nodes, "tiny_pose",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", 17, height // 4, width // 4])],
        initializer=list(weights.values()),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: tiny_pose_meta(trained, input_size).to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
