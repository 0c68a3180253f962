"""`python -m train export`: a checkpoint (or random weights) -> ONNX with the `livepose` metadata entry.

paddle.jit.save writes the inference program (PIR .json + .pdiparams) to a temporary folder,
paddle2onnx's C++ converter turns it into ONNX (called directly: its Python `export` swallows
conversion errors and, with its default optimize_tool, pip-installs packages at run time). The
result is checked before it is written: onnx.checker, then ONNX Runtime against Paddle on one
random batch of 3. Nothing is written when a check fails.
"""
import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from livepose.files import sha256_of, write_atomic

from .checkpoint import CheckpointError, load_checkpoint, load_model_state
from .model import CONFIGS, build_model, get_config

INPUT_NAME = "image"
OUTPUT_NAME = "heatmaps"
MIN_OPSET = 17
PARITY_BATCH = 3
RELATIVE_TOLERANCE = 1e-3   # max |ORT - Paddle| <= this x max |heatmap|
KEYPOINT_TOLERANCE = 0.1    # heatmap px, where the decoded keypoint is not a near-tie


class ExportError(RuntimeError):
    """The conversion failed or its result does not match Paddle."""


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime vs Paddle on one batch. Keypoints are compared only where they are well defined."""

    max_abs_diff: float
    max_abs_heatmap: float
    keypoints_compared: int        # of N x K: top-2 margin and refinement direction beyond the value tolerance
    keypoints_total: int
    max_keypoint_diff: float       # heatmap px over the compared keypoints (0 when none were compared)

    @property
    def relative_diff(self):
        return self.max_abs_diff / self.max_abs_heatmap if self.max_abs_heatmap > 0 else float("inf")

    def failures(self):
        problems = []
        if not self.relative_diff <= RELATIVE_TOLERANCE:
            problems.append(
                f"max |ORT - Paddle| = {self.max_abs_diff:.3g} is {self.relative_diff:.3g} of max |heatmap| "
                f"{self.max_abs_heatmap:.3g} (allowed {RELATIVE_TOLERANCE:g})"
            )
        if self.max_keypoint_diff > KEYPOINT_TOLERANCE:
            problems.append(
                f"decoded keypoints differ by up to {self.max_keypoint_diff:.3g} heatmap px "
                f"(allowed {KEYPOINT_TOLERANCE:g}, over {self.keypoints_compared} well-defined keypoints)"
            )
        return problems

    def summary(self):
        return (
            f"max|diff| {self.max_abs_diff:.3g} = {self.relative_diff:.2e} of max|heatmap| {self.max_abs_heatmap:.3g}; "
            f"keypoints within {self.max_keypoint_diff:.3g} px ({self.keypoints_compared}/{self.keypoints_total} compared)"
        )


def add_arguments(parser):
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS), help="model configuration")
    parser.add_argument("--checkpoint", help="a .safetensors checkpoint from `fit` or `import`; without it the "
                        "weights are random (for tests and speed benchmarks; the metadata says so)")
    parser.add_argument("--out", required=True, help="the .onnx file to write (e.g. engines/r50-256x192.onnx)")
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset, {MIN_OPSET} or newer")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and the parity batch")


def run(args):
    try:
        parity = export(args.config, args.out, checkpoint=args.checkpoint, opset=args.opset, seed=args.seed)
    except (CheckpointError, ExportError, ValueError) as error:
        print(f"export: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.config}, opset {args.opset}); ONNX Runtime vs Paddle: {parity.summary()}")
    return 0


def export(config_name, out, checkpoint=None, opset=MIN_OPSET, seed=0):
    """Export `config_name` with the weights of `checkpoint` (random when None) to `out`; -> Parity."""
    import paddle

    from livepose.core.metadata import METADATA_KEY, PoseModelMeta

    if opset < MIN_OPSET:
        raise ValueError(f"--opset: expected {MIN_OPSET} or newer, got {opset}")
    config = get_config(config_name)
    paddle.seed(seed)
    model = build_model(config)
    extra = {}
    if checkpoint:
        state, meta = load_checkpoint(checkpoint, expected_config=config.name)
        load_model_state(model, state, source=f"checkpoint {checkpoint}")
        color_order, trained, weights_source = meta.color_order, meta.trained, meta.weights_source
        target_encoding = meta.target_encoding
        extra["checkpoint_sha256"] = sha256_of(checkpoint)
        extra.update({f"checkpoint_{k}": v for k, v in meta.extra.items() if isinstance(v, (str, int, float, bool))})
    else:
        color_order, trained, weights_source, target_encoding = "RGB", False, "random", "standard"
    model.eval()

    onnx_model = _convert(model, config.input_size, opset)
    extra.update(paddle_version=paddle.__version__, paddle2onnx_version=_paddle2onnx_version(), opset=opset)
    meta = PoseModelMeta(
        architecture=config.architecture, config=config.name, input_size=config.input_size,
        heatmap_size=config.heatmap_size, color_order=color_order, sigma=config.sigma,
        trained=trained, weights_source=weights_source, extra=extra, target_encoding=target_encoding,
    )
    del onnx_model.metadata_props[:]
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    blob = onnx_model.SerializeToString()

    parity = check_parity(model, blob, config, seed)
    problems = parity.failures()
    if problems:
        raise ExportError(f"{out} not written: the ONNX model does not match Paddle: " + "; ".join(problems))
    write_atomic(out, blob)
    return parity


def _convert(model, input_size, opset):
    """Paddle layer -> onnx.ModelProto with input `image` [N,3,H,W] and output `heatmaps` [N,K,h,w]."""
    import onnx
    import paddle
    from paddle2onnx.paddle2onnx_cpp2py_export import export as p2o_export

    height, width = input_size
    with tempfile.TemporaryDirectory(prefix="livepose-export-") as tmp:
        prefix = os.path.join(tmp, "model")
        log = os.path.join(tmp, "convert.log")
        spec = [paddle.static.InputSpec([None, 3, height, width], "float32", INPUT_NAME)]
        try:
            with _quiet(log):
                paddle.jit.save(model, prefix, input_spec=spec)
                program = prefix + ".json" if os.path.exists(prefix + ".json") else prefix + ".pdmodel"
                blob = p2o_export(program, prefix + ".pdiparams", opset, False, False, True, True, True,
                                  {}, "onnxruntime", "", "", False)
        except Exception as error:  # paddle and the C++ converter raise their own types
            raise ExportError(f"paddle2onnx conversion failed: {error}\n{_tail(log)}") from None
    onnx_model = onnx.load_from_string(blob)
    graph = onnx_model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ExportError(f"expected one input and one output, paddle2onnx made "
                          f"{[i.name for i in graph.input]} -> {[o.name for o in graph.output]}")
    _rename_value(graph, graph.input[0].name, INPUT_NAME)
    _rename_value(graph, graph.output[0].name, OUTPUT_NAME)
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "N"  # dynamic batch, one name for in and out
    _drop_dead_values(graph)
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"onnx.checker rejects the converted model: {error}") from None
    return onnx_model


def check_parity(model, onnx_blob, config, seed=0):
    """ONNX Runtime vs the Paddle layer (eval mode) on a random (3, 3, H, W) batch -> Parity."""
    import onnxruntime
    import paddle

    from livepose.core.decode import decode_heatmaps

    rng = np.random.default_rng(seed)
    batch = rng.standard_normal((PARITY_BATCH, 3, *config.input_size), dtype=np.float32)
    with paddle.no_grad():
        expected = model(paddle.to_tensor(batch)).numpy()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(onnx_blob, options, providers=["CPUExecutionProvider"])
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
    if actual.shape != expected.shape:
        raise ExportError(f"ONNX Runtime output shape {actual.shape}, Paddle's {expected.shape}")

    max_abs_heatmap = float(np.abs(expected).max())
    value_tolerance = RELATIVE_TOLERANCE * max_abs_heatmap
    coords_expected, _ = decode_heatmaps(expected)
    coords_actual, _ = decode_heatmaps(actual)
    compared = _well_defined(expected, 2 * value_tolerance)
    deviation = np.abs(coords_expected - coords_actual).max(axis=2)  # (N, K)
    return Parity(
        max_abs_diff=float(np.abs(actual - expected).max()),
        max_abs_heatmap=max_abs_heatmap,
        keypoints_compared=int(compared.sum()),
        keypoints_total=int(compared.size),
        max_keypoint_diff=float(deviation[compared].max()) if compared.any() else 0.0,
    )


def _well_defined(heatmaps, margin):
    """(N, K, h, w) -> (N, K) bool: the peak beats the runner-up by more than `margin`, and each
    neighbour difference that sets the quarter-pixel refinement is 0 (border) or larger than `margin`,
    so values within tolerance cannot move the decoded keypoint."""
    from livepose.core.decode import argmax_heatmaps

    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    top2 = -np.partition(-flat, 1, axis=2)[..., :2]  # (N, K, 2) largest, second largest
    peak_clear = top2[..., 0] - top2[..., 1] > margin
    coords, _ = argmax_heatmaps(heatmaps)
    x, y = coords[..., 0].astype(int), coords[..., 1].astype(int)
    ni, ki = np.arange(n)[:, None], np.arange(k)[None, :]
    inner_x, inner_y = (x > 0) & (x < w - 1), (y > 0) & (y < h - 1)
    dx = heatmaps[ni, ki, y, np.clip(x + 1, 0, w - 1)] - heatmaps[ni, ki, y, np.clip(x - 1, 0, w - 1)]
    dy = heatmaps[ni, ki, np.clip(y + 1, 0, h - 1), x] - heatmaps[ni, ki, np.clip(y - 1, 0, h - 1), x]
    direction_clear = (~inner_x | (np.abs(dx) > margin)) & (~inner_y | (np.abs(dy) > margin))
    return peak_clear & direction_clear


def _drop_dead_values(graph):
    """Remove nodes and initializers nothing reads: paddle2onnx leaves constant shape tensors behind,
    and ONNX Runtime warns about each on every load."""
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(name in used for name in node.output)]
        for node in dead:
            graph.node.remove(node)
        if not dead:
            break
    for init in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(init)


def _rename_value(graph, old, new):
    """Rename tensor `old` to `new` everywhere in the graph."""
    if old == new:
        return
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def _paddle2onnx_version():
    import paddle2onnx

    return getattr(paddle2onnx, "__version__", "unknown")


@contextlib.contextmanager
def _quiet(log_path):
    """Send C-level stdout/stderr (Paddle's and paddle2onnx's logs) to `log_path` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _tail(log_path, lines=20):
    try:
        with open(log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
