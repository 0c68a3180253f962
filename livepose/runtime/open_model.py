"""The one way to open a model file: pick the runtime, load the model, say what it is.

A model is an ONNX file, or a TensorRT engine NAME.engine (beside NAME.onnx, described by
NAME.engine.json). `--backend auto` takes the engine when one is there and runs here, else
OpenVINO, else ONNX Runtime on the ONNX; each runtime passed over is logged with the reason. The
file is checked once, here, and named in every error.

INT8: where auto picks OpenVINO on a CPU with INT8 dot-product instructions (VNNI, AMX),
NAME-int8.onnx beside NAME.onnx (`livepose quantize`) runs instead when its metadata says it was
made from this very NAME.onnx (SHA-256); one log line says so, `int8=False` (--no-int8) keeps f32.
ONNX Runtime never takes it automatically: its INT8 kernels are slower than its f32 ones here. A pose model's description
(PoseModelMeta) is read before the (slow) load, so a model without one fails at once.
"""
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from livepose.core.metadata import (
    METADATA_KEY,
    ModelMetadataError,
    PoseModelMeta,
    read_onnx_metadata_props,
)
from livepose.files import sha256_of
from livepose.runtime.backends import BackendUnavailable, backend_class
from livepose.runtime.detector_layout import (
    DetectorLayout,
    DetectorLayoutError,
    describe_detector,
)

log = logging.getLogger(__name__)

KINDS = ("pose", "detector")
ENGINE_SUFFIX = ".engine"
CPU_BACKENDS = ("openvino", "onnxruntime")
INT8_SUFFIX = "-int8"  # NAME.onnx -> NAME-int8.onnx
_INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # /proc/cpuinfo names


@dataclass(frozen=True)
class OpenedModel:
    """A loaded model and what it is.

    backend: the ready runtime; path: the file it runs (.onnx or .engine); meta: the pose model's
    description (pose models); layout: how to read the detector's output (detectors).
    """

    backend: object
    path: Path
    kind: str
    meta: PoseModelMeta | None = None
    layout: DetectorLayout | None = None

    @property
    def precision(self):
        """What the network computes in: int8 for a quantised model file, else the runtime's precision."""
        if self.meta is not None and "quantization" in self.meta.extra:
            return "int8"
        return self.backend.precision


def detector_backend(pose_backend):
    """The detector's runtime for a run whose pose model uses `pose_backend`: an explicit CPU
    runtime applies to both models; a TensorRT pose engine says nothing of the detector (auto)."""
    return pose_backend if pose_backend in CPU_BACKENDS else "auto"


def int8_sibling(path):
    """NAME.onnx -> NAME-int8.onnx beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}{INT8_SUFFIX}{path.suffix}")


@functools.cache
def cpu_runs_int8_fast():
    """Whether this CPU has INT8 dot-product instructions (VNNI or AMX): where INT8 pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: unknown, so f32
        return False
    return any(flag in flags for flag in _INT8_CPU_FLAGS)


def open_model(path, kind="pose", backend="auto", precision=None, num_threads=None, max_batch=None, layout=None,
               int8=True):
    """Open a pose model or person detector file; returns an OpenedModel.

    backend: "auto" or a name from backends.BACKEND_NAMES; precision: None (the runtime's f32, an
    engine's own) or one the runtime runs here (else PrecisionUnsupported); max_batch: the largest
    batch one call takes (runtimes with a dynamic batch); layout: a detector's output layout where
    the file does not say (see detector_layout); int8: False keeps an f32 pose model's INT8 sibling out.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    path = Path(path)
    what = "pose model" if kind == "pose" else "detector"
    _check_file(path, what)
    onnx_path = path.with_suffix(".onnx") if path.suffix == ENGINE_SUFFIX else path
    engine_path = path if path.suffix == ENGINE_SUFFIX else path.with_suffix(ENGINE_SUFFIX)
    options = dict(precision=precision, num_threads=num_threads, max_batch=max_batch)
    if backend == "tensorrt" or (backend == "auto" and engine_path.is_file()):
        opened = _try_engine(engine_path, kind, what, options, layout, fall_back=backend == "auto")
        if opened is not None:
            return opened
    if backend not in ("auto", "tensorrt"):
        backend_class(backend)  # an unknown name is refused before any file is read
    _check_file(onnx_path, what)
    if kind == "pose" and backend == "auto" and int8 and precision in (None, "f32"):
        onnx_path, backend = _int8_choice(onnx_path)
    props = read_onnx_metadata_props(onnx_path)
    meta = _pose_meta(props, onnx_path) if kind == "pose" else None
    runtime = _open_onnx(onnx_path, backend, options)
    return _described(runtime, onnx_path, kind, meta, props, layout)


def _check_file(path, what):
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path}: file is empty (0 bytes)")


def _int8_choice(onnx_path):
    """(the ONNX to open, the backend) for auto: the INT8 sibling on OpenVINO where it applies."""
    sibling = int8_sibling(onnx_path)
    if not sibling.is_file() or not cpu_runs_int8_fast():
        return onnx_path, "auto"
    try:
        backend_class("openvino")
    except BackendUnavailable:
        return onnx_path, "auto"
    try:
        note = _pose_meta(read_onnx_metadata_props(sibling), sibling).extra.get("quantization", {})
    except (ModelMetadataError, ValueError) as error:
        log.warning("not using INT8 model %s: %s", sibling, error)
        return onnx_path, "auto"
    if note.get("source_sha256") != sha256_of(onnx_path):
        log.warning("not using INT8 model %s: it was made from another f32 model than %s (SHA-256 differs); "
                    "run `livepose quantize --pose %s` again", sibling, onnx_path.name, onnx_path)
        return onnx_path, "auto"
    oks = note.get("validation_mean_oks")
    checked = f"mean OKS {oks:.4f} vs f32" if oks is not None else "accuracy not checked: random weights"
    log.warning("using INT8 model %s on OpenVINO (made from %s, %s); --no-int8 keeps f32", sibling.name,
                onnx_path.name, checked)
    return sibling, "openvino"


def _try_engine(engine_path, kind, what, options, layout, fall_back):
    """The engine opened and described, or None when `fall_back` and it cannot run here (logged)."""
    try:
        _check_file(engine_path, what)
        # an engine's batch limit is fixed when it is built; its precision is checked against the request
        runtime = backend_class("tensorrt")(engine_path, precision=options["precision"])
    except Exception as error:  # any reason the engine cannot run here: fall back to the CPU, say why
        if not fall_back:
            raise
        log.warning("not using TensorRT engine %s: %s", engine_path, error)
        return None
    try:
        props = runtime.metadata_props
        meta = _pose_meta(props, engine_path) if kind == "pose" else None
        return _described(runtime, engine_path, kind, meta, props, layout)
    except BaseException:
        runtime.close()
        raise


def _open_onnx(onnx_path, backend, options):
    names = CPU_BACKENDS if backend in ("auto", "tensorrt") else (backend,)
    reasons = []
    for name in names:
        try:
            cls = backend_class(name)
        except BackendUnavailable as error:
            if backend != "auto":
                raise
            log.info("not using %s: %s", name, error)
            reasons.append(str(error))
            continue
        kwargs = {"precision": options["precision"] or "f32", "num_threads": options["num_threads"]}
        if options["max_batch"] is not None:
            kwargs["max_batch"] = options["max_batch"]
        return cls(onnx_path, **kwargs)
    raise BackendUnavailable(
        f"model {onnx_path}: no runtime can run it ({'; '.join(reasons)}); install one: pip install 'livepose[cpu]'"
    )


def _pose_meta(props, path):
    if METADATA_KEY not in props:
        raise ModelMetadataError(
            f"{path}: no '{METADATA_KEY}' metadata entry; a livepose pose model is made by "
            "`livepose-train export` (or `livepose fetch-models`)"
        )
    return PoseModelMeta.from_json(props[METADATA_KEY], source=str(path))


def _described(runtime, path, kind, meta, props, layout):
    if kind == "pose":
        return OpenedModel(runtime, path, kind, meta=meta)
    onnx_path = path.with_suffix(".onnx")
    try:
        if path.suffix == ENGINE_SUFFIX and layout is None and not onnx_path.is_file():
            raise DetectorLayoutError(
                f"detector {path}: its layout is identified from {onnx_path}, which is missing; "
                "put the ONNX beside the engine or pass --detector-layout"
            )
        described = describe_detector(onnx_path, props, runtime.input_shape, layout)
    except BaseException:
        runtime.close()
        raise
    return OpenedModel(runtime, path, kind, layout=described)
