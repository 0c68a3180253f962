"""FP16 conversion of a pose ONNX model.

TensorRT 11 dropped the FP16 builder flag: a network's precision comes from its graph, so the
ONNX is converted to FP16 first (fp32 inputs and outputs kept, so callers are unchanged) and built
strongly typed. The same conversion runs on ONNX Runtime's CPU, which is how it is tested; how
closely FP16 follows FP32 is measured by livepose.core.agreement.
"""
import warnings

from livepose.files import write_atomic


def convert_to_fp16(src_path, dst_path):
    """Write `src_path` converted to FP16 weights and activations, float32 inputs and outputs, to `dst_path`.

    The model's metadata_props (the livepose entry) are kept. Written atomically.
    """
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src_path))
    with warnings.catch_warnings():
        # one warning per weight below FP16's smallest normal value; clipping those is the point
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    write_atomic(dst_path, converted.SerializeToString())
    return dst_path
