"""TensorRT backend (NVIDIA GPUs), and the TensorRT calls `livepose build-engine` makes.

All TensorRT and pycuda code of livepose is in this file. It uses only what the TensorRT 10 and
11 Python APIs both offer (named I/O tensors, set_input_shape, set_tensor_address,
execute_async_v3, build_serialized_network); where they differ (FP16) it asks the installed
module what it has instead of parsing version numbers.
"""
import logging
import math
import threading
from pathlib import Path

import numpy as np

_INSTALL = 'pip install "livepose[gpu]"'
try:
    import tensorrt as trt
except (ImportError, OSError) as error:  # OSError: the wheel is present but libnvinfer does not load
    raise ImportError(
        f"TensorRT is not installed or does not load ({error}); TensorRT needs an NVIDIA GPU and the "
        f"GPU extra: {_INSTALL} (TensorRT comes from NVIDIA's package index)"
    ) from None
try:
    import pycuda.driver as cuda
except (ImportError, OSError) as error:
    raise ImportError(
        f"pycuda is not installed or does not load ({error}); {_INSTALL} "
        "(pycuda compiles against the CUDA toolkit's headers: install the CUDA toolkit first)"
    ) from None

from livepose.files import write_atomic
from livepose.runtime.backends import Backend, BackendUnavailable, PrecisionUnsupported
from livepose.tensorrt.sidecar import (
    EngineBuildError,
    EngineMetaError,
    check_engine_file,
    check_engine_runs_here,
    read_sidecar,
)

log = logging.getLogger(__name__)

_LEVELS = {
    trt.ILogger.Severity.INTERNAL_ERROR: logging.CRITICAL,
    trt.ILogger.Severity.ERROR: logging.ERROR,
    trt.ILogger.Severity.WARNING: logging.WARNING,
    trt.ILogger.Severity.INFO: logging.DEBUG,  # a line per build detail; our progress messages cover it
    trt.ILogger.Severity.VERBOSE: logging.DEBUG,
}


class _TensorRTLog(trt.ILogger):
    """TensorRT's log routed to Python logging; errors are also kept for the failure message."""

    def __init__(self):
        trt.ILogger.__init__(self)
        self._lock = threading.Lock()  # TensorRT logs from its own threads
        self._errors = []

    def log(self, severity, msg):
        level = _LEVELS.get(severity, logging.INFO)
        if level >= logging.ERROR:
            with self._lock:
                self._errors.append(msg)
        if log.isEnabledFor(level):
            log.log(level, "TensorRT: %s", msg)

    def take_errors(self):
        with self._lock:
            errors, self._errors = self._errors, []
        return errors


# TensorRT keeps the first logger a process gives it: one for every builder and runtime.
_LOG = _TensorRTLog()


def has_fp16_builder_flag():
    """True on TensorRT 10 (BuilderFlag.FP16); False on 11, which builds FP16 only from an FP16 graph."""
    return hasattr(trt.BuilderFlag, "FP16")


def device_info(device=0):
    """(TensorRT version, GPU name, compute capability "major.minor") here; BackendUnavailable without a GPU."""
    try:
        cuda.init()
        count = cuda.Device.count()
        if device >= count:
            raise BackendUnavailable(f"CUDA device {device} does not exist: this machine has {count} NVIDIA GPU(s)")
        gpu = cuda.Device(device)
        major, minor = gpu.compute_capability()
        return trt.__version__, gpu.name(), f"{major}.{minor}"
    except cuda.Error as error:
        raise BackendUnavailable(f"no usable NVIDIA GPU (CUDA: {error}); TensorRT needs one") from None


if hasattr(trt, "IProgressMonitor"):  # TensorRT 10.0 and later

    class _BuildProgress(trt.IProgressMonitor):
        """Logs the builder's top-level phases as they start and finish (called from builder threads)."""

        def __init__(self, label):
            trt.IProgressMonitor.__init__(self)
            self._label = label

        def phase_start(self, phase_name, parent_phase, num_steps):
            level = logging.INFO if parent_phase is None else logging.DEBUG
            log.log(level, "%s: %s (%d steps)", self._label, phase_name, num_steps)

        def step_complete(self, phase_name, step):
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            log.debug("%s: %s done", self._label, phase_name)

else:
    _BuildProgress = None


def build_plan(spec):
    """Build a serialized engine (bytes) as described by `spec` (livepose.tensorrt.build.BuildSpec).

    Updates the timing cache file spec.timing_cache (atomically) so later builds reuse kernel
    timings. Raises EngineBuildError with TensorRT's own error messages when the build fails.
    """
    _LOG.take_errors()
    builder = trt.Builder(_LOG)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if spec.strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, _LOG)
    if not parser.parse_from_file(str(spec.onnx_path)):
        errors = [parser.get_error(i).desc() for i in range(parser.num_errors)] + _LOG.take_errors()
        raise EngineBuildError(f"TensorRT cannot parse {spec.onnx_path}: {'; '.join(errors) or 'no error given'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    if spec.fp16_builder_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if spec.profile is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(spec.input_name, *spec.profile.shapes(spec.sample_shape))
        config.add_optimization_profile(profile)
    _use_timing_cache(config, Path(spec.timing_cache))
    progress = _BuildProgress(spec.label) if _BuildProgress else None
    if progress is not None:
        config.progress_monitor = progress
    else:
        log.info("%s: building (no progress reports from this TensorRT)", spec.label)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        errors = _LOG.take_errors()
        raise EngineBuildError(f"TensorRT could not build {spec.label}: {'; '.join(errors) or 'no error logged'}")
    write_atomic(spec.timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def _use_timing_cache(config, path):
    """Start from the saved timing cache when it suits this GPU and TensorRT, else from an empty one."""
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return
    log.warning("timing cache %s was made for another GPU or TensorRT; starting a new one", path)
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


class TensorRTBackend(Backend):
    """A TensorRT engine on one GPU: pinned host and device buffers sized for the profile's largest
    batch, copies and execution on one CUDA stream. Larger batches are split by Backend.run."""

    name = "tensorrt"
    model_suffix = ".engine"

    @classmethod
    def precisions(cls, model_path):
        """An engine runs the one precision it was built with (its sidecar says which)."""
        return (read_sidecar(model_path).precision,)

    def __init__(self, engine_path, meta=None, device=0, precision=None):
        """engine_path: NAME.engine; meta: its EngineMeta (default: read NAME.engine.json first);
        precision: None, or the engine's own (else PrecisionUnsupported)."""
        engine_path = Path(engine_path)
        self._cuda = None
        meta = meta if meta is not None else read_sidecar(engine_path)
        if precision is not None and precision != meta.precision:
            raise PrecisionUnsupported(precision, f"engine {engine_path}", (meta.precision,),
                                       "rebuild it with `livepose build-engine` (--fp16 for f16)")
        check_engine_runs_here(meta, engine_path, *device_info(device))
        data = engine_path.read_bytes()
        check_engine_file(meta, engine_path, data)
        self.meta = meta
        self.precision = meta.precision
        self.metadata_props = dict(meta.onnx_metadata_props)
        self._lock = threading.Lock()  # one execution context: one call at a time
        self._cuda = cuda.Device(device).retain_primary_context()
        self._cuda.push()
        try:
            self._load(engine_path, data)
        except BaseException:
            self._cuda.pop()
            self.close()
            raise
        self._cuda.pop()

    def _load(self, engine_path, data):
        self._runtime = trt.Runtime(_LOG)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise EngineMetaError(
                f"engine {engine_path}: TensorRT cannot load it ({'; '.join(_LOG.take_errors()) or 'no error logged'}); "
                f"rebuild it with `{self.meta.build_command}`"
            )
        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"engine {engine_path}: expected one input and one output, got {inputs} -> {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        for name in names:
            if engine.get_tensor_dtype(name) != trt.float32:
                raise ValueError(
                    f"engine {engine_path}: tensor {name!r} is {engine.get_tensor_dtype(name)}, expected float32 "
                    "(build FP16 engines with `livepose build-engine --fp16`, which keeps float32 inputs and outputs)"
                )
        shape = tuple(engine.get_tensor_shape(self.input_name))
        if shape != self.meta.input.shape:
            raise EngineMetaError(
                f"engine {engine_path}: input shape {shape} differs from its description's {self.meta.input.shape}; "
                f"rebuild it with `{self.meta.build_command}`"
            )
        self._dynamic = shape[0] == -1
        largest = tuple(engine.get_tensor_profile_shape(self.input_name, 0)[2]) if self._dynamic else shape
        self.max_batch = largest[0]
        self.input_shape = (None, *shape[1:]) if self._dynamic else shape

        self._context = engine.create_execution_context()
        if self._context is None:
            raise RuntimeError(f"engine {engine_path}: TensorRT could not create an execution context (out of GPU memory?)")
        self._set_input_shape(largest)
        largest_output = tuple(self._context.get_tensor_shape(self.output_name))
        self.output_shape = (None, *largest_output[1:]) if self._dynamic else largest_output
        self._host_in = cuda.pagelocked_empty(math.prod(largest), np.float32)
        self._host_out = cuda.pagelocked_empty(math.prod(largest_output), np.float32)
        self._device_in = cuda.mem_alloc(self._host_in.nbytes)
        self._device_out = cuda.mem_alloc(self._host_out.nbytes)
        self._stream = cuda.Stream()
        for name, buffer in ((self.input_name, self._device_in), (self.output_name, self._device_out)):
            if not self._context.set_tensor_address(name, int(buffer)):
                raise RuntimeError(f"engine {engine_path}: TensorRT refused the device buffer of {name!r}")

    def _set_input_shape(self, shape):
        if self._dynamic and not self._context.set_input_shape(self.input_name, shape):
            raise ValueError(
                f"tensorrt input {self.input_name!r}: shape {shape} is outside the engine's profile "
                f"(batch 1..{self.max_batch}); {'; '.join(_LOG.take_errors())}"
            )

    def _run(self, batch):
        with self._lock:
            self._cuda.push()
            try:
                self._set_input_shape(batch.shape)
                output_shape = tuple(self._context.get_tensor_shape(self.output_name))
                host_in = self._host_in[: batch.size].reshape(batch.shape)
                np.copyto(host_in, batch, casting="same_kind")
                cuda.memcpy_htod_async(self._device_in, host_in, self._stream)
                if not self._context.execute_async_v3(self._stream.handle):
                    raise RuntimeError(f"TensorRT could not run the engine: {'; '.join(_LOG.take_errors()) or 'no error logged'}")
                host_out = self._host_out[: math.prod(output_shape)].reshape(output_shape)
                cuda.memcpy_dtoh_async(host_out, self._device_out, self._stream)
                self._stream.synchronize()
                return host_out.copy()  # the pinned buffer is reused by the next call
            finally:
                self._cuda.pop()

    def close(self):
        """Free the GPU buffers, the engine and the CUDA context; safe to call twice."""
        if self._cuda is None:
            return
        self._cuda.push()
        try:
            stream = getattr(self, "_stream", None)
            if stream is not None:
                stream.synchronize()
            for name in ("_device_in", "_device_out"):
                buffer = getattr(self, name, None)
                if buffer is not None:
                    buffer.free()
            # TensorRT objects go in dependency order, while the context is current
            for name in ("_stream", "_device_in", "_device_out", "_host_in", "_host_out", "_context", "_engine", "_runtime"):
                setattr(self, name, None)
        finally:
            self._cuda.pop()
            self._cuda.detach()
            self._cuda = None
