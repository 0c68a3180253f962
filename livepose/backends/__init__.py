"""Inference runtimes behind one small interface. Each runtime lives in its own module and is
imported only when chosen, so a CPU-only install never needs the GPU stack."""
import importlib

import numpy as np


class BackendUnavailable(RuntimeError):
    """The runtime asked for is not installed or cannot run here; the message says what to install."""


class Backend:
    """A loaded model with one input and one output.

    Subclasses set `name`, `precision` ("f32", "f16", "bf16", "int8"), `input_name`, `output_name`,
    `input_shape` (ints, None where dynamic) and `max_batch` (the largest N one `run` takes), and
    implement `_run` and `close`.
    """

    name = "base"
    precision = "f32"
    input_name = "image"
    output_name = "heatmaps"
    input_shape = (None, 3, None, None)
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
    "onnxruntime": ("livepose.backends.onnxruntime", "OnnxRuntimeBackend"),
    "openvino": ("livepose.backends.openvino", "OpenVinoBackend"),
    "tensorrt": ("livepose.backends.tensorrt", "TensorRTBackend"),
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
