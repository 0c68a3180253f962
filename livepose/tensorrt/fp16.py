"""FP16 conversion of a pose ONNX model.

TensorRT 11 dropped the FP16 builder flag: a network's precision comes from its graph, so the
ONNX is converted to FP16 first (fp32 inputs and outputs kept, so callers are unchanged) and built
strongly typed. The same conversion runs on ONNX Runtime's CPU, which is how it is tested; how
closely FP16 follows FP32 is measured by livepose.core.agreement.

The route: onnxconverter-common's whole-graph conversion, not NVIDIA ModelOpt's AutoCast
(`modelopt.onnx.autocast.convert_to_mixed_precision(..., low_precision_type="fp16",
keep_io_types=True)`, the 10-to-11 migration guide's tool). AutoCast decides per node which stay
FP32 (outputs above `data_max`, from reference runs), which a network that is only conv, batch
norm, ReLU and deconvolution does not need: the full FP16 graph follows FP32 to a heatmap relative
error of about 1e-3 with identical keypoints on a trained model (tests/livepose/tensorrt_engines/
test_fp16.py), and build-engine checks every engine against ONNX Runtime FP32 before writing it.
onnxconverter-common is a small pure-Python package; ModelOpt is a large one. Initialisers are
clamped at FP16's largest finite value (65504, AutoCast's `init_max` too, not the converter's
default 1e4) and every value that is clamped or lifted is counted and reported.
"""
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from livepose.files import write_atomic

log = logging.getLogger(__name__)

FP16_MAX = 65504.0       # the largest finite float16
FP16_MIN_POSITIVE = 1e-7  # smaller magnitudes would flush to zero; the converter lifts them to this
_TRUNCATION_WARNING = "will be truncated to"  # onnxconverter-common's per-tensor warning, counted here instead


@dataclass(frozen=True)
class Fp16Conversion:
    """The converted file and what the conversion changed beyond rounding."""

    path: Path
    clamped: int   # float32 constants beyond +-65504, now +-65504
    lifted: int    # nonzero float32 constants below 1e-7 in magnitude, now +-1e-7
    constants: int  # float32 constant values converted in all

    def __post_init__(self):
        if min(self.clamped, self.lifted, self.constants) < 0:
            raise ValueError(f"Fp16Conversion: counts must be >= 0, got {self}")

    def summary(self):
        return (f"{self.constants} constants to FP16, {self.clamped} clamped to +-{FP16_MAX:g}, "
                f"{self.lifted} lifted to +-{FP16_MIN_POSITIVE:g}")


def convert_to_fp16(src_path, dst_path):
    """Write `src_path` converted to FP16 weights and activations, float32 inputs and outputs, to
    `dst_path` (atomically; the model's metadata_props, e.g. the livepose entry, are kept).

    Returns an Fp16Conversion; logs a warning when constants had to be clamped (the model changes)."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src_path))
    clamped, lifted, constants = _out_of_range_counts(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(model, max_finite_val=FP16_MAX,
                                                     min_positive_val=FP16_MIN_POSITIVE, keep_io_types=True)
    for warning in caught:  # pass on everything but the truncation notes, which are counted above
        if _TRUNCATION_WARNING not in str(warning.message):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    write_atomic(dst_path, converted.SerializeToString())
    result = Fp16Conversion(Path(dst_path), clamped, lifted, constants)
    (log.warning if clamped else log.info)("FP16 conversion of %s: %s", Path(src_path).name, result.summary())
    return result


def _out_of_range_counts(model):
    """(clamped, lifted, total) over the float32 initialisers and Constant values the converter converts."""
    from onnx import TensorProto, numpy_helper

    tensors = list(model.graph.initializer)
    tensors += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    clamped = lifted = total = 0
    for tensor in tensors:
        if tensor.data_type != TensorProto.FLOAT:
            continue
        values = np.abs(numpy_helper.to_array(tensor))
        clamped += int(np.count_nonzero(np.isfinite(values) & (values > FP16_MAX)))
        lifted += int(np.count_nonzero((values > 0) & (values < FP16_MIN_POSITIVE)))
        total += values.size
    return clamped, lifted, total
