"""TensorRT backend (NVIDIA GPUs), and the TensorRT calls `livepose build-engine` makes.

All TensorRT code of livepose is in this file; its CUDA calls go through livepose.tensorrt.cuda_layer
(cuda-python by default, pycuda where that is what is installed). It uses only what the TensorRT 10
and 11 Python APIs both offer (named I/O tensors, set_input_shape, set_tensor_address,
execute_async_v3, build_serialized_network); where they differ (FP16) it asks the installed
module what it has instead of parsing version numbers. Every GPU failure (driver too old for this
TensorRT's CUDA build, out of memory) becomes one line naming the driver's CUDA version, the CUDA
build of TensorRT and what to install.
"""
import importlib.metadata
import logging
import math
import threading
from pathlib import Path

import numpy as np

_INSTALL = 'pip install "livepose[gpu]" (CUDA 13 driver, 580.65 or newer) or "livepose[gpu-cu12]" (CUDA 12 driver)'
try:
    import tensorrt as trt
except (ImportError, OSError) as error:  # OSError: the wheel is present but libnvinfer does not load
    raise ImportError(
        f"TensorRT is not installed or does not load ({error}); TensorRT needs an NVIDIA GPU and the "
        f"GPU extra: {_INSTALL} (TensorRT comes from NVIDIA's package index)"
    ) from None

from livepose.tensorrt import cuda_layer

_CUDA = cuda_layer.load()

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


def tensorrt_cuda_build():
    """The CUDA major version this TensorRT was built for ("13", "12"), from its wheel's name; None if unknown."""
    for major in ("13", "12", "11"):
        for distribution in (f"tensorrt-cu{major}-libs", f"tensorrt-cu{major}"):
            try:
                importlib.metadata.version(distribution)
                return major
            except importlib.metadata.PackageNotFoundError:
                continue
    return None


def gpu_failure(what, error):
    """One line for a failed GPU step: what failed, the driver's CUDA version, TensorRT's CUDA build, the fix."""
    try:
        driver = _CUDA.driver_version()
    except cuda_layer.CudaError:
        driver = None
    build = tensorrt_cuda_build()
    found = (f"{what} ({error}); the NVIDIA driver supports CUDA {driver or 'unknown (no driver?)'}, "
             f"TensorRT {trt.__version__} is its {f'CUDA {build}' if build else 'unknown CUDA'} build")
    if build and driver and int(driver.split(".")[0]) < int(build):
        if build == "13":
            return (f"{found}: the CUDA 13 build needs driver 580.65 or newer. Update the driver, or install "
                    'the CUDA 12 build: pip uninstall -y tensorrt tensorrt-cu13 tensorrt-cu13-libs '
                    'tensorrt-cu13-bindings cuda-python && pip install "livepose[gpu-cu12]"')
        return f"{found}: update the NVIDIA driver to one for CUDA {build} or newer"
    return f"{found}; check `nvidia-smi` (GPU visible, memory free); {_INSTALL}"


def device_info(device=0):
    """(TensorRT version, GPU name, compute capability "major.minor") here; BackendUnavailable without a GPU."""
    try:
        count = _CUDA.device_count()
        if device >= count:
            raise BackendUnavailable(f"CUDA device {device} does not exist: this machine has {count} NVIDIA GPU(s)")
        name, capability = _CUDA.device_properties(device)
        return trt.__version__, name, capability
    except cuda_layer.CudaError as error:
        raise BackendUnavailable(gpu_failure("no usable NVIDIA GPU", error)) from None


def _create(factory, what):
    """trt.Builder / trt.Runtime: on a driver too old for TensorRT's CUDA they raise TypeError
    ("factory function returned nullptr") after logging CUDA error 35; make that one clear line."""
    _LOG.take_errors()
    try:
        created = factory(_LOG)
    except (TypeError, RuntimeError) as error:
        created, reason = None, "; ".join(_LOG.take_errors()) or str(error)
    else:
        reason = "; ".join(_LOG.take_errors()) or "no error logged"
    if created is None:
        raise BackendUnavailable(gpu_failure(f"TensorRT could not create its {what}", reason))
    return created


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


def build_plan(spec, device=0):
    """Build a serialized engine (bytes) as described by `spec` (livepose.tensorrt.build.BuildSpec) on GPU `device`.

    Updates the timing cache file spec.timing_cache (atomically) so later builds reuse kernel
    timings. Raises EngineBuildError with TensorRT's own error messages when the build fails,
    BackendUnavailable when the GPU or its driver cannot run TensorRT.
    """
    try:
        with _CUDA.current(device):
            return _build_plan(spec)
    except cuda_layer.CudaError as error:
        raise BackendUnavailable(gpu_failure(f"{spec.label}: CUDA failed", error)) from None


def _build_plan(spec):
    builder = _create(trt.Builder, "builder")
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
    _LOG.take_errors()  # only the build's own errors belong in its failure message
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
    rejected = "; ".join(_LOG.take_errors())  # logged here, so no later failure message repeats it
    log.warning("timing cache %s was made for another GPU or TensorRT (%s); starting a new one", path,
                rejected or "no reason logged")
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


class TensorRTBackend(Backend):
    """A TensorRT engine on one GPU: pinned host and device buffers sized for the profile's largest
    batch, copies and execution on one CUDA stream. Larger batches are split by Backend.run; a
    fixed-batch engine given fewer inputs than its batch gets them padded and only their rows back.
    One call at a time (a lock), from any thread: each call makes the engine's device current."""

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
        self._lock = threading.Lock()  # one execution context: one call at a time; close waits for it
        self._buffers = None
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
        self._device = device
        try:
            with _CUDA.current(device):
                self._load(engine_path, data)
        except BaseException as error:
            try:
                self.close()
            except cuda_layer.CudaError:
                pass  # the first error says more than a failed cleanup after it
            if isinstance(error, cuda_layer.CudaError):
                raise BackendUnavailable(gpu_failure(f"engine {engine_path}: CUDA failed", error)) from None
            raise

    def _load(self, engine_path, data):
        self._runtime = _create(trt.Runtime, "runtime")
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise EngineMetaError(
                f"engine {engine_path}: TensorRT cannot load it ({'; '.join(_LOG.take_errors()) or 'no error logged'}); "
                f"rebuild it with `{self.meta.build_command}`"
            )
        self._read_io(engine_path)
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendUnavailable(gpu_failure(f"engine {engine_path}: no execution context", "out of GPU memory?"))
        largest = self._largest_input
        self._set_input_shape(largest)
        largest_output = tuple(self._context.get_tensor_shape(self.output_name))
        self.output_shape = (None, *largest_output[1:]) if self._dynamic else largest_output
        self._buffers = _Buffers(math.prod(largest), math.prod(largest_output))
        for name, ptr in ((self.input_name, self._buffers.device_in), (self.output_name, self._buffers.device_out)):
            if not self._context.set_tensor_address(name, ptr):
                raise BackendUnavailable(gpu_failure(f"engine {engine_path}: TensorRT refused the device buffer of {name!r}",
                                                     "; ".join(_LOG.take_errors()) or "no error logged"))

    def _read_io(self, engine_path):
        """Names, dtypes and shapes of the engine's one input and one output, checked against the sidecar."""
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
        self._largest_input = tuple(engine.get_tensor_profile_shape(self.input_name, 0)[2]) if self._dynamic else shape
        self.max_batch = self._largest_input[0]
        self.input_shape = (None, *shape[1:])  # a fixed batch B takes 1..B rows (padded)

    def _set_input_shape(self, shape):
        if self._dynamic and not self._context.set_input_shape(self.input_name, shape):
            raise ValueError(
                f"tensorrt input {self.input_name!r}: shape {shape} is outside the engine's profile "
                f"(batch 1..{self.max_batch}); {'; '.join(_LOG.take_errors())}"
            )

    def _run(self, batch):
        with self._lock:
            if self._buffers is None:
                raise ValueError("tensorrt: the engine was closed")
            try:
                with _CUDA.current(self._device):
                    return self._execute(batch)
            except cuda_layer.CudaError as error:
                raise BackendUnavailable(gpu_failure("tensorrt: running the engine failed", error)) from None

    def _execute(self, batch):
        """(N, C, H, W) -> (N, ...) on the GPU; a fixed batch B > N runs B rows (zeros after N), returns N."""
        count = len(batch)
        run_shape = batch.shape if self._dynamic else self._largest_input
        self._set_input_shape(run_shape)
        output_shape = tuple(self._context.get_tensor_shape(self.output_name))
        buffers = self._buffers
        host_in = buffers.host_in[: math.prod(run_shape)].reshape(run_shape)
        np.copyto(host_in[:count], batch, casting="same_kind")
        host_in[count:] = 0
        _CUDA.copy_htod_async(buffers.device_in, host_in, buffers.stream)
        _LOG.take_errors()
        if not self._context.execute_async_v3(_CUDA.stream_handle(buffers.stream)):
            raise BackendUnavailable(gpu_failure("tensorrt: TensorRT could not run the engine",
                                                 "; ".join(_LOG.take_errors()) or "no error logged"))
        host_out = buffers.host_out[: math.prod(output_shape)].reshape(output_shape)
        _CUDA.copy_dtoh_async(host_out, buffers.device_out, buffers.stream)
        _CUDA.synchronize(buffers.stream)
        return host_out[:count].copy()  # the pinned buffer is reused by the next call

    def close(self):
        """Free the GPU buffers and the engine; waits for a running call; safe to call twice, from any thread."""
        with self._lock:
            buffers, self._buffers = self._buffers, None
            with _CUDA.current(getattr(self, "_device", 0)):
                if buffers is not None:
                    buffers.free()
                # TensorRT objects go in dependency order, while the device is current
                for name in ("_context", "_engine", "_runtime"):
                    setattr(self, name, None)


class _Buffers:
    """Pinned host and device float32 buffers for one input and one output, and a stream (device current)."""

    def __init__(self, in_count, out_count):
        self.host_in = self.host_out = self.device_in = self.device_out = self.stream = None
        try:
            self.host_in = _CUDA.pinned_empty(in_count, np.float32)
            self.host_out = _CUDA.pinned_empty(out_count, np.float32)
            self.device_in = _CUDA.device_alloc(self.host_in.nbytes)
            self.device_out = _CUDA.device_alloc(self.host_out.nbytes)
            self.stream = _CUDA.stream_create()
        except BaseException:
            self.free()
            raise

    def free(self):
        if self.stream is not None:
            _CUDA.synchronize(self.stream)
            _CUDA.stream_destroy(self.stream)
        for ptr in (self.device_in, self.device_out):
            if ptr is not None:
                _CUDA.device_free(ptr)
        for array in (self.host_in, self.host_out):
            if array is not None:
                _CUDA.pinned_free(array)
        self.host_in = self.host_out = self.device_in = self.device_out = self.stream = None
