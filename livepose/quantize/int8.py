"""An f32 livepose pose model -> INT8 (QDQ ONNX) whose keypoints follow f32 within a set OKS drop.

NNCF's `quantize_with_accuracy_control` quantises the model on the calibration crops, then scores
each candidate with `_OksOnOpenVino` (the candidate compiled by OpenVINO, the runtime that will run
it; mean OKS of its keypoints against the f32 model's on the validation crops) and returns layers to
f32 until the drop is within `max_drop`. Random weights have no keypoints to score: the head's
last two layers stay f32 and the result says `accuracy_checked: false`. A result that misses the
bar (OKS, or too little of the work left in INT8) is not written unless forced.
"""
import dataclasses
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from livepose.core.agreement import compare_heatmaps
from livepose.core.metadata import METADATA_KEY, read_onnx_metadata
from livepose.files import sha256_of, write_atomic
from livepose.quantize import DEFAULT_MAX_DROP, DEFAULT_MAX_REVERTS

log = logging.getLogger(__name__)

MIN_INT8_MAC_FRACTION = 0.5    # below this the f32 layers cost more than INT8 saves
RANDOM_WEIGHTS_KEEP_F32 = 2    # the final conv and the last deconvolution (measured on the overfit r18)
_CONV_OPS = ("Conv", "ConvTranspose")


class QuantizeError(ValueError):
    """The model cannot be quantised as asked, or the result misses the bar; the message says why."""


@dataclass(frozen=True)
class QuantizeJob:
    """pose_path: the f32 livepose model; out_path: the INT8 model to write; max_drop: the largest
    mean-OKS drop vs f32 allowed (0..1); max_reverts: at most this many groups of layers go back to
    f32 (NNCF ranks every group once, then reverts one per step); force: write a result that misses the bar;
    keep_head_f32: None lets NNCF decide (trained weights; random ones keep the head's last 2 layers
    f32), N keeps exactly the head's last N layers f32 without accuracy control (for comparisons)."""

    pose_path: Path
    out_path: Path
    max_drop: float = DEFAULT_MAX_DROP
    force: bool = False
    max_reverts: int = DEFAULT_MAX_REVERTS
    keep_head_f32: int | None = None

    def __post_init__(self):
        if not 0.0 <= self.max_drop < 1.0:
            raise QuantizeError(f"--max-drop: expected a fraction in [0, 1), got {self.max_drop}")
        if self.max_reverts < 1:
            raise QuantizeError(f"--max-reverts: expected a positive integer, got {self.max_reverts}")
        if Path(self.out_path).resolve() == Path(self.pose_path).resolve():
            raise QuantizeError(f"--out {self.out_path}: would overwrite the f32 model it is made from")


@dataclass(frozen=True)
class QuantizeResult:
    """What was made: `note` is the `quantization` entry written under the metadata's `extra`;
    `passed` whether it met the bar; `written` whether out_path holds it."""

    note: dict
    passed: bool
    written: bool
    reason: str = ""


def import_nncf():
    try:
        import nncf
    except ImportError:
        raise QuantizeError("INT8 quantisation needs NNCF, which is not installed: pip install 'livepose[int8]'") from None
    return nncf


def quantize_pose_model(job, crops):
    """Quantise job.pose_path on `crops` (a calibration.CalibrationSet); returns a QuantizeResult."""
    nncf = import_nncf()
    meta = read_onnx_metadata(job.pose_path)
    model = weights_as_initializers(onnx.load(str(job.pose_path)))
    scorer = _OksOnOpenVino(crops.validation, meta)
    try:
        scorer.reference = scorer.heatmaps(model)
        controlled = meta.trained and job.keep_head_f32 is None
        quantized = _quantize(nncf, model, crops, scorer, job, controlled)
        agreement = compare_heatmaps(scorer.reference, scorer.heatmaps(quantized), meta)
    finally:
        scorer.close()
    macs = conv_macs(model)
    int8 = int8_layers(quantized)
    int8_fraction = sum(macs[name] for name in int8 if name in macs) / sum(macs.values())
    note = {
        "precision": "int8",
        "method": "NNCF quantize_with_accuracy_control (QDQ), scored by mean OKS vs f32 on OpenVINO" if controlled
                  else f"NNCF quantize (QDQ), last {_head_count(job)} head layers f32 (no accuracy control)",
        "nncf": nncf.__version__,
        "source": Path(job.pose_path).name,
        "source_sha256": sha256_of(job.pose_path),
        "calibration": crops.source,
        "calibration_crops": len(crops.calibration),
        "validation_crops": len(crops.validation),
        "accuracy_checked": bool(controlled),
        "max_drop": job.max_drop,
        "validation_mean_oks": agreement.mean_oks,
        "heatmap_rel_error": agreement.heatmap_rel_error,
        "kept_f32": sorted(name for name in macs if name not in int8),
        "int8_mac_fraction": round(int8_fraction, 4),
    }
    reason = _missed_bar(note, meta.trained, controlled)
    written = not reason or job.force
    if written:
        _write(quantized, model, meta, note, job.out_path)
    return QuantizeResult(note, passed=not reason, written=written, reason=reason)


def _head_count(job):
    return RANDOM_WEIGHTS_KEEP_F32 if job.keep_head_f32 is None else job.keep_head_f32


def _quantize(nncf, model, crops, scorer, job, controlled):
    calibration = nncf.Dataset(list(crops.calibration[:, None]), lambda crop: {"image": crop})
    common = dict(preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(crops.calibration))
    if not controlled:
        kept = head_layers(model, _head_count(job))
        return nncf.quantize(model, calibration, ignored_scope=nncf.IgnoredScope(names=kept) if kept else None, **common)
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    # items are indices into the validation crops; the scorer batches them itself
    validation = nncf.Dataset(list(range(len(crops.validation))), lambda index: {"image": crops.validation[index:index + 1]})
    return nncf.quantize_with_accuracy_control(
        model, calibration, validation, scorer.validate, max_drop=job.max_drop,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=job.max_reverts, num_ranking_workers=1), **common)


def _missed_bar(note, trained, controlled):
    """Why the result is not good enough, or "" when it is. The INT8 share is NNCF's choice only
    under accuracy control; a fixed scope keeps what it was told to."""
    if trained and note["validation_mean_oks"] < 1.0 - note["max_drop"]:
        return (f"mean OKS vs f32 {note['validation_mean_oks']:.4f} on {note['validation_crops']} validation crops is "
                f"below {1.0 - note['max_drop']:.4f} (--max-drop {note['max_drop']})")
    if controlled and note["int8_mac_fraction"] < MIN_INT8_MAC_FRACTION:
        return (f"only {note['int8_mac_fraction']:.0%} of the convolution work stayed INT8 (at least "
                f"{MIN_INT8_MAC_FRACTION:.0%} makes INT8 worth running) to stay within --max-drop {note['max_drop']}")
    return ""


def _write(quantized, source, meta, note, out_path):
    meta = dataclasses.replace(meta, extra={**meta.extra, "quantization": note})
    del quantized.metadata_props[:]
    for key, value in {p.key: p.value for p in source.metadata_props}.items():
        entry = quantized.metadata_props.add()
        entry.key, entry.value = key, meta.to_json() if key == METADATA_KEY else value
    write_atomic(out_path, quantized.SerializeToString())


class _OksOnOpenVino:
    """NNCF's validation function: a candidate ModelProto compiled by OpenVINO, scored by the mean
    OKS of its keypoints against the f32 model's (`reference` heatmaps) on the validation crops.
    NNCF scores one model on many single items in a row, so the last compiled model is kept."""

    def __init__(self, validation_crops, meta):
        self.crops, self.meta = validation_crops, meta
        self.reference = None
        self._model = self._backend = None

    def heatmaps(self, model, indices=slice(None)):
        """(M, K, h, w) heatmaps of `model` on the validation crops at `indices`."""
        return self._compiled(model).run(self.crops[indices])

    def validate(self, model, items):
        indices = np.fromiter(items, dtype=np.int64)
        agreement = compare_heatmaps(self.reference[indices], self.heatmaps(model, indices), self.meta)
        return agreement.mean_oks, None

    def _compiled(self, model):
        if model is not self._model:
            from livepose.runtime.backends.openvino import OpenVinoBackend

            self.close()
            with tempfile.TemporaryDirectory(prefix="livepose-int8-") as work:
                path = Path(work) / "candidate.onnx"
                path.write_bytes(model.SerializeToString())
                # candidates are compiled once each: caching them would only fill the user cache
                self._backend = OpenVinoBackend(path, cache=False)
            self._model = model
        return self._backend

    def close(self):
        if self._backend is not None:
            self._backend.close()
        self._model = self._backend = None


def weights_as_initializers(model):
    """The same model with Constant nodes, and Casts / Identities of them, stored as initializers: NNCF's accuracy
    control reads a layer's weights from the initializers only (paddle2onnx writes Constants).
    Unnamed nodes get names (OP_INDEX): the layers kept f32 are reported by name. Changes `model`'s node names."""
    from onnx import numpy_helper

    values, kept = {}, []
    for index, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type}_{index}"  # layers are reported by name
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Cast" and node.input[0] in values:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(node.attribute[0].i)
            values[node.output[0]] = values[node.input[0]].astype(dtype)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
        else:
            kept.append(node)
    used = {name for node in kept for name in node.input} | {output.name for output in model.graph.output}
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    del folded.graph.node[:]
    folded.graph.node.extend(kept)
    folded.graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in values.items() if name in used)
    return folded


def head_layers(model, count=RANDOM_WEIGHTS_KEEP_F32):
    """Names of the last `count` head layers (final 1x1 conv, then the deconvolutions from the last
    back): the layers whose INT8 rounding moves heatmap peaks most."""
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    deconvs = [node.name for node in model.graph.node if node.op_type == "ConvTranspose"]
    return (convs[-1:] + deconvs[::-1])[:count]


def conv_macs(model):
    """Convolution name -> multiply-accumulates per input sample, for every Conv / ConvTranspose."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {info.name: [d.dim_value for d in info.type.tensor_type.shape.dim]
              for info in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    weights = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    for node in model.graph.node:  # paddle2onnx writes weights as Constant nodes
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            weights[node.output[0]] = int(np.prod(node.attribute[0].t.dims))
    producers = _producers(model)
    macs = {}
    for node in model.graph.node:
        if node.op_type in _CONV_OPS:
            weight = weights.get(_source(node.input[1], producers).output[0] if node.input[1] in producers
                                 else node.input[1], 0)
            # a conv's weights run once per output pixel, a transposed conv's once per input pixel
            spatial = shapes.get(node.output[0] if node.op_type == "Conv" else node.input[0], [])[2:]
            macs[node.name] = weight * int(np.prod(spatial)) if spatial else 0
    return macs


def int8_layers(quantized):
    """Names of the Conv / ConvTranspose nodes of a QDQ model whose weights arrive dequantised from INT8."""
    producers = _producers(quantized)
    return {node.name for node in quantized.graph.node if node.op_type in _CONV_OPS
            and node.input[1] in producers and _source(node.input[1], producers).op_type == "DequantizeLinear"}


def _producers(model):
    return {output: node for node in model.graph.node for output in node.output}


def _source(name, producers):
    """The node that makes tensor `name`, looking through Cast / Identity (paddle2onnx casts weights)."""
    node = producers[name]
    while node.op_type in ("Cast", "Identity") and node.input[0] in producers:
        node = producers[node.input[0]]
    return node
