"""Fold the crop normalisation into the pose graph so crops travel as uint8, and measure what it saves.

    python benchmarks/fold_normalization.py --model engines/r50-256x192.onnx [--out r50-u8.onnx]

The folded graph takes `image` uint8 (N, H, W, 3) in the frame's BGR order, exactly what
cv2.warpAffine produces, and does Cast -> Transpose -> channel flip -> (x / 255 - mean) / std itself.
Its metadata says normalization_in_graph = true, color_order BGR (the tensor's order) and
extra.input_layout "NHWC-uint8". Timed (interleaved, medians): host normalize_crops + the f32
graph against the folded graph alone, on ONNX Runtime and OpenVINO, for a typical 5 crops.
"""
import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def fold_normalization(src, dst):
    """Write `src` (float32 NCHW input, normalised outside) as a graph taking uint8 NHWC BGR pixels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from livepose.core.metadata import METADATA_KEY, read_onnx_metadata
    from livepose.files import write_atomic

    meta = read_onnx_metadata(src)
    if meta.normalization_in_graph:
        raise ValueError(f"model {src}: normalisation is already in its graph")
    model = onnx.load(str(src))
    graph = model.graph
    original = graph.input[0]
    inner = "image_normalized"
    for node in graph.node:
        node.input[:] = [inner if name == original.name else name for name in node.input]
    mean, std = np.array(meta.mean, np.float32), np.array(meta.std, np.float32)
    # model channel c reads frame (BGR) channel 2 - c when the model is RGB
    order = [2, 1, 0] if meta.color_order == "RGB" else [0, 1, 2]
    graph.initializer.extend([
        numpy_helper.from_array((1.0 / (255.0 * std)).reshape(1, 3, 1, 1), "normalize_scale"),
        numpy_helper.from_array((-mean / std).reshape(1, 3, 1, 1), "normalize_offset"),
        numpy_helper.from_array(np.array(order, np.int64), "channel_order"),
    ])
    front = [
        helper.make_node("Cast", ["image"], ["image_f32"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["image_f32"], ["image_nchw"], perm=[0, 3, 1, 2]),  # (N, 3, H, W)
        helper.make_node("Gather", ["image_nchw", "channel_order"], ["image_model_order"], axis=1),
        helper.make_node("Mul", ["image_model_order", "normalize_scale"], ["image_scaled"]),
        helper.make_node("Add", ["image_scaled", "normalize_offset"], [inner]),
    ]
    for node in reversed(front):
        graph.node.insert(0, node)
    height, width = meta.input_size
    graph.input.remove(original)
    graph.input.insert(0, helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", height, width, 3]))
    folded = dataclasses.replace(
        meta, normalization_in_graph=True, color_order="BGR", mean=tuple(meta.mean[i] for i in order),
        std=tuple(meta.std[i] for i in order), extra={**meta.extra, "input_layout": "NHWC-uint8"})
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = folded.to_json()
    onnx.checker.check_model(model)
    write_atomic(dst, model.SerializeToString())


def interleaved(variants, reps):
    times = {name: [] for name in variants}
    for fn in variants.values():
        fn()
        fn()
    for _ in range(reps):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(v) for name, v in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="folded model (default: <model>-u8.onnx)")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--crops", type=int, default=5)
    args = parser.parse_args(argv)
    out = args.out or args.model.with_name(args.model.stem + "-u8.onnx")
    fold_normalization(args.model, out)

    import onnxruntime
    import openvino

    from livepose.core.crops import normalize_crops
    from livepose.core.metadata import read_onnx_metadata

    meta = read_onnx_metadata(args.model)
    height, width = meta.input_size
    crops = np.random.default_rng(0).integers(0, 256, (args.crops, height, width, 3), dtype=np.uint8)

    def normalise():
        return normalize_crops(crops, meta.mean, meta.std, meta.color_order == "RGB")

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    ort_f32 = onnxruntime.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
    ort_u8 = onnxruntime.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    core = openvino.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    ov_f32 = core.compile_model(str(args.model), "CPU", config).create_infer_request()
    ov_u8 = core.compile_model(str(out), "CPU", config).create_infer_request()
    reference = ort_f32.run(None, {"image": normalise()})[0]
    folded = ort_u8.run(None, {"image": crops})[0]
    error = np.linalg.norm(folded - reference) / np.linalg.norm(reference)
    print(f"wrote {out}; heatmaps folded vs host-normalised: relative error {error:.1e}")
    figures = interleaved({
        "normalize_crops alone": normalise,
        "onnxruntime: normalize_crops + f32 graph": lambda: ort_f32.run(None, {"image": normalise()}),
        "onnxruntime: uint8 folded graph": lambda: ort_u8.run(None, {"image": crops}),
        "openvino: normalize_crops + f32 graph": lambda: ov_f32.infer({0: normalise()}),
        "openvino: uint8 folded graph": lambda: ov_u8.infer({0: crops}),
    }, args.reps)
    print(f"{args.crops} crops, medians of {args.reps} interleaved runs, load average {os.getloadavg()[0]:.1f}:")
    for name, ms in figures.items():
        print(f"  {name:45s} {ms:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
