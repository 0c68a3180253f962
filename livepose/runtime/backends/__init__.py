"""Inference runtimes behind one small interface. Each runtime lives in its own module and is
imported only when chosen, so a CPU-only install never needs the GPU stack. Models are opened
through livepose.runtime.open_model, which picks the runtime."""
import importlib

import numpy as np

# Compute precisions a runtime can be asked for. INT8 is not among them: a quantised model file
# carries its own INT8 layers (and says so in its metadata); no flag turns f32 weights into INT8.
PRECISIONS = ("f32", "f16", "bf16")


class BackendUnavailable(RuntimeError):
    """The runtime asked for is not installed or cannot run here; the message says what to install."""


class PrecisionUnsupported(ValueError):
    """A precision the chosen runtime does not run here; the message names what it runs."""

    def __init__(self, precision, backend, offered, note=""):
        self.precision, self.backend, self.offered = precision, backend, tuple(offered)
        if not note:
            note = ("INT8 comes from an INT8 model file, not from a precision setting" if precision == "int8"
                    else "choose one of those, or another runtime with --backend")
        super().__init__(f"precision {precision}: {backend} runs {', '.join(self.offered)} here; {note}")


class Backend:
    """A loaded model with one input and one output.

    Subclasses set `name`, `precision` (one of PRECISIONS), `input_name`, `output_name`,
    `input_shape` (ints, None where dynamic), `max_batch` (the largest N one `run` takes) and
    `metadata_props` (the model file's metadata, e.g. the livepose entry), implement `_run` and
    `close`, and say which precisions they run here (`precisions`). `output_shape` is set where the
    runtime reports it (None: unknown). `model_suffix` is the file they load.
    """

    name = "base"
    model_suffix = ".onnx"
    precision = "f32"
    input_name = "image"
    output_name = "heatmaps"
    input_shape = (None, 3, None, None)
    output_shape = None
    max_batch = 1
    metadata_props = {}

    @classmethod
    def precisions(cls, model_path):
        """The precisions this runtime can run `model_path` in on this machine."""
        return ("f32",)

    @classmethod
    def check_precision(cls, precision, model_path):
        """PrecisionUnsupported unless `precision` (None: the runtime's default) runs here."""
        offered = cls.precisions(model_path)
        if precision is not None and precision not in offered:
            raise PrecisionUnsupported(precision, cls.name, offered)

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
    "tensorrt": ("livepose.tensorrt.backend", "TensorRTBackend"),
    "openvino": ("livepose.runtime.backends.openvino", "OpenVinoBackend"),
    "onnxruntime": ("livepose.runtime.backends.onnxruntime", "OnnxRuntimeBackend"),
}
BACKEND_NAMES = tuple(_BACKENDS)  # also --backend auto's order (OpenVINO is faster than ORT on Intel CPUs)


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
