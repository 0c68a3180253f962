"""OpenVINO backend (CPU): f32, and f16 / bf16 where the CPU lists them (AVX512-BF16, AMX, AVX512-FP16).

The precision is always set explicitly: OpenVINO's CPU plugin runs bf16 by default on CPUs that
support it, so an unset hint would silently change the numbers. The compiled model's precision is
read back into `precision`.

Batch policy: a model with a dynamic batch dimension is compiled once with N bounded to
[1, max_batch]; the CPU plugin keeps per-shape kernels, so frames with varying person counts cost no
recompilation (reshape + compile per N would take hundreds of ms). Performance hint LATENCY: the
estimator makes one synchronous request per frame, and THROUGHPUT's extra streams only help
several requests in flight.

Start-up: compiled models are cached in the user cache folder (openvino/ under
model_files.cache_dir()), so the second start of the same model skips most of the compilation;
OpenVINO keys the cache on the model, the device and the settings.
"""
import logging

import openvino

from livepose.runtime.backends import Backend

log = logging.getLogger(__name__)

# OPTIMIZATION_CAPABILITIES entries that say a precision runs natively (our names are also
# OpenVINO's element type names for INFERENCE_PRECISION_HINT)
_CAPABILITY = {"f32": "FP32", "f16": "FP16", "bf16": "BF16"}
_READBACK = {"f32": "f32", "float32": "f32", "bf16": "bf16", "bfloat16": "bf16", "f16": "f16", "float16": "f16"}


def _dims(partial_shape):
    """An OpenVINO PartialShape -> tuple of ints, None where dynamic."""
    return tuple(d.get_length() if d.is_static else None for d in partial_shape)


def _use_compiled_model_cache(core):
    from livepose.runtime.model_files import cache_dir

    folder = cache_dir() / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a read-only home: start slower, but start
        log.info("not caching compiled models in %s: %s", folder, error.strerror)
        return
    core.set_property({"CACHE_DIR": str(folder)})


class OpenVinoBackend(Backend):
    name = "openvino"
    device = "CPU"

    @classmethod
    def precisions(cls, model_path):
        """f32, and f16 / bf16 where the CPU lists them among its optimisation capabilities."""
        capabilities = openvino.Core().get_property(cls.device, "OPTIMIZATION_CAPABILITIES")
        return tuple(name for name, capability in _CAPABILITY.items() if capability in capabilities)

    def __init__(self, model_path, precision="f32", num_threads=None, max_batch=64, cache=True):
        """cache: keep the compiled model in the user cache (False for one-off candidates)."""
        self.check_precision(precision, model_path)
        device = self.device
        core = openvino.Core()
        if cache:
            _use_compiled_model_cache(core)
        try:
            model = core.read_model(str(model_path))
        except Exception as error:  # OpenVINO raises a generic RuntimeError for unreadable files
            raise ValueError(f"model {model_path}: OpenVINO cannot read it ({error})") from None
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError(
                f"model {model_path}: expected one input and one output, got "
                f"{[i.get_any_name() for i in model.inputs]} -> {[o.get_any_name() for o in model.outputs]}"
            )
        input_shape = model.inputs[0].get_partial_shape()
        if input_shape.rank.is_dynamic or len(input_shape) == 0:
            raise ValueError(f"model {model_path}: expected an input of known rank, got {input_shape}")
        dynamic_batch = input_shape[0].is_dynamic
        if dynamic_batch:
            bounded = [openvino.Dimension(1, max_batch)] + [input_shape[i] for i in range(1, len(input_shape))]
            model.reshape({model.inputs[0]: openvino.PartialShape(bounded)})

        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY",
        }
        if num_threads:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        try:
            self.compiled = core.compile_model(model, device, config)
        except Exception as error:
            raise ValueError(f"model {model_path}: OpenVINO cannot compile it for {device} ({error})") from None
        self.request = self.compiled.create_infer_request()
        self.input_name = model.inputs[0].get_any_name()
        self.output_name = model.outputs[0].get_any_name()
        self.input_shape = _dims(model.inputs[0].get_partial_shape())
        self.output_shape = _dims(model.outputs[0].get_partial_shape())
        if dynamic_batch:  # bounded [1, max_batch] reads as dynamic to callers
            self.input_shape = (None,) + self.input_shape[1:]
            self.output_shape = (None,) + self.output_shape[1:]
        self.max_batch = max_batch if dynamic_batch else self.input_shape[0]
        self.precision = self.compiled_precision()

    def compiled_precision(self):
        """The inference precision the compiled model actually runs, read back from OpenVINO."""
        value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
        return _READBACK.get(name, name)

    def _run(self, batch):
        self.request.infer({0: batch})
        # the request reuses its output buffer on the next call
        return self.request.get_output_tensor(0).data.copy()

    def close(self):
        self.request = None
        self.compiled = None

