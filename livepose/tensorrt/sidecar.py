"""The sidecar `NAME.engine.json` that describes a TensorRT engine, and the checks made before loading one.

A TensorRT plan runs only on the TensorRT version and GPU model it was built with, and says
nothing about the pose model inside it. The sidecar records both; the backend reads it first and
refuses a mismatch with the command that rebuilds the engine. Pure Python: no TensorRT needed.
"""
import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path

from livepose.core.metadata import ModelMetadataError, PoseModelMeta
from livepose.files import write_atomic

SIDECAR_SCHEMA_VERSION = 1
KINDS = ("pose", "detector")
PRECISIONS = ("f32", "f16")
# How FP16 was obtained: TensorRT 10's builder flag, or (TensorRT 11, no such flag) an ONNX
# converted to mixed FP16 and built as a strongly typed network.
FP16_MODES = ("builder-flag", "strongly-typed-onnx")
OPT_BATCH = 8  # the batch TensorRT tunes kernels for: a few people in frame is the common case


class EngineMetaError(ValueError):
    """An engine's sidecar is missing, malformed, or describes another engine, TensorRT or GPU."""


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile of a dynamic batch dimension: TensorRT accepts min <= N <= max."""

    min: int
    opt: int
    max: int

    def __post_init__(self):
        values = (self.min, self.opt, self.max)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values) or not 1 <= self.min <= self.opt <= self.max:
            raise EngineMetaError(f"batch profile: expected integers 1 <= min <= opt <= max, got {values}")

    @classmethod
    def for_max_batch(cls, max_batch):
        """min 1, opt OPT_BATCH (or max_batch when smaller), max max_batch."""
        if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
            raise EngineMetaError(f"max batch: expected a positive integer, got {max_batch!r}")
        return cls(1, min(OPT_BATCH, max_batch), max_batch)

    def shapes(self, sample_shape):
        """(min, opt, max) full input shapes for a per-sample shape such as (3, H, W)."""
        return tuple((n, *sample_shape) for n in (self.min, self.opt, self.max))


@dataclass(frozen=True)
class TensorSpec:
    """One engine input or output: its name and shape, -1 where the batch is dynamic."""

    name: str
    shape: tuple

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise EngineMetaError(f"tensor name: expected a non-empty string, got {self.name!r}")
        shape = tuple(self.shape)
        if not shape or not all(isinstance(d, int) and (d > 0 or d == -1) for d in shape):
            raise EngineMetaError(f"tensor {self.name!r}: expected a shape of positive ints or -1, got {self.shape!r}")
        object.__setattr__(self, "shape", shape)


@dataclass(frozen=True)
class EngineMeta:
    """Everything the sidecar says about one engine (see the module docstring)."""

    kind: str                      # "pose" or "detector"
    engine_sha256: str             # ties the sidecar to the plan beside it (an interrupted build shows)
    source_onnx: str               # the ONNX the engine was built from, as given to build-engine
    source_onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str        # "major.minor", e.g. "8.9"
    precision: str                 # "f32" or "f16"
    fp16_mode: str | None          # one of FP16_MODES when precision is f16
    profile: BatchProfile | None   # None: the model has a fixed batch (the detector)
    input: TensorSpec
    output: TensorSpec
    onnx_metadata_props: dict      # the source ONNX's metadata_props, verbatim
    accuracy_checked: bool         # True: keypoints agreed with ONNX Runtime FP32 on real crops
    build_command: str             # the build-engine command line that rebuilds this engine
    accuracy: dict = field(default_factory=dict)  # the figures of the post-build comparison
    schema_version: int = SIDECAR_SCHEMA_VERSION

    def __post_init__(self):
        if self.schema_version != SIDECAR_SCHEMA_VERSION:
            raise EngineMetaError(
                f"schema_version: this livepose reads engine sidecars of version {SIDECAR_SCHEMA_VERSION}, "
                f"got {self.schema_version}"
            )
        if self.kind not in KINDS:
            raise EngineMetaError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        if self.precision not in PRECISIONS:
            raise EngineMetaError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if (self.precision == "f16") != (self.fp16_mode is not None) or self.fp16_mode not in (None, *FP16_MODES):
            raise EngineMetaError(
                f"fp16_mode: expected one of {FP16_MODES} for an f16 engine and null for f32, "
                f"got {self.fp16_mode!r} with precision {self.precision!r}"
            )
        if (self.input.shape[0] == -1) != (self.profile is not None):
            raise EngineMetaError(
                f"profile: a dynamic batch needs a profile and a fixed one none; input shape "
                f"{self.input.shape}, profile {self.profile}"
            )
        if self.kind == "pose":
            self.model  # validates the livepose entry

    @property
    def model(self):
        """The pose model's PoseModelMeta (pose engines only)."""
        if self.kind != "pose":
            raise EngineMetaError(f"a {self.kind} engine carries no pose model metadata")
        text = self.onnx_metadata_props.get("livepose")
        if text is None:
            raise EngineMetaError("a pose engine's sidecar must carry the model's 'livepose' metadata entry")
        try:
            return PoseModelMeta.from_json(text, source=f"sidecar of {self.source_onnx}")
        except ModelMetadataError as error:
            raise EngineMetaError(str(error)) from None

    def to_dict(self):
        data = asdict(self)
        data["input"]["shape"] = list(self.input.shape)
        data["output"]["shape"] = list(self.output.shape)
        return data

    @classmethod
    def from_dict(cls, data, source="sidecar"):
        if not isinstance(data, dict):
            raise EngineMetaError(f"{source}: expected a JSON object, got {type(data).__name__}")
        fields = cls.__dataclass_fields__
        required = {n for n, f in fields.items() if f.default is MISSING and f.default_factory is MISSING}
        unknown, missing = sorted(set(data) - set(fields)), sorted(required - set(data))
        if unknown or missing:
            raise EngineMetaError(f"{source}: unknown fields {unknown}, missing fields {missing}")
        values = dict(data)
        try:
            values["profile"] = BatchProfile(**data["profile"]) if data["profile"] is not None else None
            values["input"] = TensorSpec(**data["input"])
            values["output"] = TensorSpec(**data["output"])
            return cls(**values)
        except EngineMetaError as error:
            raise EngineMetaError(f"{source}: {error}") from None
        except TypeError as error:  # a nested object with wrong or missing keys
            raise EngineMetaError(f"{source}: malformed entry ({error})") from None


def sidecar_path(engine_path):
    """NAME.engine -> NAME.engine.json."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_sidecar(engine_path):
    """The EngineMeta beside an engine; EngineMetaError naming the file and the fix when it is unusable."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise EngineMetaError(
            f"engine {engine_path}: its description {path} is missing; build engines with "
            "`livepose build-engine`, which writes both files"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EngineMetaError(f"{path}: not a readable JSON file ({error}); rebuild the engine with `livepose build-engine`") from None
    return EngineMeta.from_dict(data, source=str(path))


def write_sidecar(meta, engine_path):
    """Write NAME.engine.json atomically."""
    text = json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n"
    write_atomic(sidecar_path(engine_path), text.encode("utf-8"))


def check_engine_runs_here(meta, engine_path, tensorrt_version, gpu_name, compute_capability):
    """Raise EngineMetaError unless the engine was built with this TensorRT version on this GPU model."""
    built = (meta.tensorrt_version, meta.gpu_name, meta.compute_capability)
    here = (tensorrt_version, gpu_name, compute_capability)
    if built == here:
        return
    raise EngineMetaError(
        f"engine {engine_path} was built with TensorRT {meta.tensorrt_version} for {meta.gpu_name} "
        f"(compute capability {meta.compute_capability}); this machine has TensorRT {tensorrt_version} and "
        f"{gpu_name} (compute capability {compute_capability}). A TensorRT engine runs only with the "
        f"TensorRT version and on the GPU model it was built for: rebuild it here with `{meta.build_command}`"
    )


def check_engine_file(meta, engine_path, data):
    """Raise EngineMetaError unless the plan bytes `data` are the ones the sidecar describes."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.engine_sha256:
        raise EngineMetaError(
            f"engine {engine_path} is not the engine its description {sidecar_path(engine_path)} was written for "
            f"(an interrupted build or a copied file); rebuild it with `{meta.build_command}`"
        )


class EngineBuildError(RuntimeError):
    """TensorRT could not build an engine, or the built engine disagrees with ONNX Runtime FP32."""
