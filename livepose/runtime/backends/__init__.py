"""Inference runtimes behind one small interface. Each runtime lives in its own module and is
imported only when chosen, so a CPU-only install never needs the GPU stack."""
import importlib
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """The runtime asked for is not installed or cannot run here; the message says what to install."""


class Backend:
    """A loaded model with one input and one output.

    Subclasses set `name`, `precision` ("f32", "f16", "bf16", "int8"), `input_name`, `output_name`,
    `input_shape` (ints, None where dynamic) and `max_batch` (the largest N one `run` takes), and
    implement `_run` and `close`. `output_shape` is set where the runtime reports it (None: unknown).
    """

    name = "base"
    precision = "f32"
    input_name = "image"
    output_name = "heatmaps"
    input_shape = (None, 3, None, None)
    output_shape = None
    max_batch = 1

    def run(self, batch):
        """(N, C, H, W) -> output array; N larger than `max_batch` is split into chunks here."""
        batch = np.ascontiguousarray(batch)
        expected = self.input_shape
        if batch.ndim != len(expected) or any(e is not None and e != g for e, g in zip(expected[1:], batch.shape[1:])):
            shape = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ")"
            raise ValueError(f"{self.name} input '{self.input_name}': expected shape {shape}, got {batch.shape}")
        if len(batch) <= self.max_batch:
            return self._run(batch)
        return np.concatenate([self._run(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)])

    def _run(self, batch):
        raise NotImplementedError

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# name -> (module, class); modules import their runtime at load time, so import lazily.
_BACKENDS = {
    "onnxruntime": ("livepose.runtime.backends.onnxruntime", "OnnxRuntimeBackend"),
    "openvino": ("livepose.runtime.backends.openvino", "OpenVinoBackend"),
    "tensorrt": ("livepose.tensorrt.backend", "TensorRTBackend"),
}
BACKEND_NAMES = tuple(_BACKENDS)


def backend_class(name):
    """The Backend subclass for `name`; BackendUnavailable if its runtime is not installed."""
    if name not in _BACKENDS:
        raise ValueError(f"backend: expected one of {BACKEND_NAMES}, got {name!r}")
    module_name, class_name = _BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendUnavailable(f"backend '{name}' is not available: {error}") from None
    return getattr(module, class_name)


CPU_BACKENDS = ("openvino", "onnxruntime")  # auto's order after TensorRT: OpenVINO is faster on Intel CPUs


def open_backend(model_path, backend="auto", precision=None, num_threads=None, max_batch=None):
    """Load a model with the runtime `backend` ("auto" or one of BACKEND_NAMES).

    auto: the TensorRT engine (`model_path` itself when it ends in .engine, else the .engine beside
    the ONNX) when it loads here, else OpenVINO, else ONNX Runtime on the ONNX; each runtime passed
    over is logged with the reason. precision None means the runtime's f32 (an engine's own precision
    for TensorRT); a precision the chosen runtime cannot run raises BackendUnavailable.
    """
    path = Path(model_path)
    if backend != "auto":
        return _open(backend, path, precision, num_threads, max_batch)
    engine = path if path.suffix == ".engine" else path.with_suffix(".engine")
    if engine.is_file():
        try:
            return _open("tensorrt", engine, precision, num_threads, max_batch)
        except Exception as error:  # any reason the engine cannot run here: fall back to the CPU, say why
            log.warning("not using TensorRT engine %s: %s", engine, error)
    onnx_path = path.with_suffix(".onnx") if path.suffix == ".engine" else path
    if not onnx_path.is_file():
        raise FileNotFoundError(f"model {onnx_path}: no such file")
    reasons = []
    for name in CPU_BACKENDS:
        try:
            return _open(name, onnx_path, precision, num_threads, max_batch)
        except BackendUnavailable as error:
            log.info("not using %s: %s", name, error)
            reasons.append(str(error))
    raise BackendUnavailable(
        f"model {onnx_path}: no runtime can run it ({'; '.join(reasons)}); install one: pip install 'livepose[cpu]'"
    )


def _open(name, path, precision, num_threads, max_batch):
    cls = backend_class(name)
    if name == "tensorrt":  # an engine's precision and batch limit are fixed when it is built
        loaded = cls(path)
        if precision is not None and loaded.precision != precision:
            loaded.close()
            raise BackendUnavailable(f"engine {path} runs {loaded.precision}, not the precision asked for ({precision})")
        return loaded
    options = {"precision": precision or "f32", "num_threads": num_threads}
    if max_batch is not None:
        options["max_batch"] = max_batch
    return cls(path, **options)
