"""The `livepose` description every pose model artifact carries (ONNX metadata_props, engine sidecar).

One JSON entry under the key "livepose" with a schema_version. The runtime reads it and refuses a
model that lacks it or contradicts it; nothing about a model is guessed.
"""
import json
from dataclasses import asdict, dataclass, field

from livepose.core import skeleton
from livepose.core.geometry import TARGET_ENCODINGS

SCHEMA_VERSION = 2        # 2 added target_encoding
READABLE_SCHEMA_VERSIONS = (1, 2)  # version 1 models were all trained with "standard" targets
METADATA_KEY = "livepose"
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


class ModelMetadataError(ValueError):
    """A model's livepose metadata is missing, malformed or contradicts the model."""


@dataclass(frozen=True)
class PoseModelMeta:
    """What a pose model needs from the caller. Sizes are (H, W).

    mean/std are per input channel in the tensor's channel order (`color_order`) and apply to
    pixel / 255. A model fed BGR pixels with RGB statistics (the Microsoft code) is written as
    color_order "BGR" with the RGB numbers, which is exactly what it expects.
    """

    architecture: str                  # e.g. "pose_resnet50"
    config: str                        # training config name, e.g. "r50-256x192"
    input_size: tuple                  # (H, W) of the network input
    heatmap_size: tuple                # (h, w) of the output heatmaps
    color_order: str = "RGB"           # channel order of the `image` tensor
    mean: tuple = IMAGENET_MEAN_RGB
    std: tuple = IMAGENET_STD_RGB
    normalization_in_graph: bool = False  # True: the graph takes 0-255 pixels and normalises itself
    sigma: float = 2.0                 # training target Gaussian, in heatmap px (DARK uses it)
    keypoint_names: tuple = skeleton.KEYPOINT_NAMES
    flip_pairs: tuple = skeleton.FLIP_PAIRS
    trained: bool = False              # False: random weights, keypoints mean nothing
    weights_source: str = "random"     # where the weights came from
    extra: dict = field(default_factory=dict)  # producer details (checksums, versions)
    schema_version: int = SCHEMA_VERSION
    target_encoding: str = "standard"  # how training placed joints; crops and decoding must follow it

    def __post_init__(self):
        def pair(name):
            value = getattr(self, name)
            if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
                raise ModelMetadataError(f"{name}: expected [H, W] positive integers, got {value!r}")
            object.__setattr__(self, name, tuple(value))

        if self.schema_version not in READABLE_SCHEMA_VERSIONS:
            raise ModelMetadataError(
                f"schema_version: this livepose reads {list(READABLE_SCHEMA_VERSIONS)}, the model has "
                f"{self.schema_version}; re-export the model with this version of livepose-train"
            )
        if self.target_encoding not in TARGET_ENCODINGS:
            raise ModelMetadataError(
                f"target_encoding: the model was trained with {self.target_encoding!r} targets, which this "
                f"livepose cannot decode (it knows {list(TARGET_ENCODINGS)})"
            )
        if self.schema_version < 2 and self.target_encoding != "standard":
            raise ModelMetadataError(f"target_encoding: schema_version {self.schema_version} has no such field")
        pair("input_size")
        pair("heatmap_size")
        if self.color_order not in ("RGB", "BGR"):
            raise ModelMetadataError(f"color_order: expected 'RGB' or 'BGR', got {self.color_order!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ModelMetadataError(f"{name}: expected 3 per-channel numbers, got {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        object.__setattr__(self, "keypoint_names", tuple(self.keypoint_names))
        object.__setattr__(self, "flip_pairs", tuple(tuple(p) for p in self.flip_pairs))

    @property
    def num_keypoints(self):
        return len(self.keypoint_names)

    def to_dict(self):
        data = asdict(self)
        for name in ("input_size", "heatmap_size", "mean", "std", "keypoint_names"):
            data[name] = list(data[name])
        data["flip_pairs"] = [list(p) for p in self.flip_pairs]
        return data

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data, source="model"):
        if not isinstance(data, dict):
            raise ModelMetadataError(f"{source}: livepose metadata must be a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelMetadataError(f"{source}: unknown livepose metadata fields {unknown}")
        missing = sorted(n for n in ("architecture", "config", "input_size", "heatmap_size") if n not in data)
        if missing:
            raise ModelMetadataError(f"{source}: livepose metadata lacks {missing}")
        try:
            return cls(**data)
        except ModelMetadataError as error:
            raise ModelMetadataError(f"{source}: {error}") from None

    @classmethod
    def from_json(cls, text, source="model"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelMetadataError(f"{source}: livepose metadata is not valid JSON ({error})") from None
        return cls.from_dict(data, source)


def read_onnx_metadata(path):
    """The `livepose` entry of an ONNX file's metadata_props, parsed; ModelMetadataError if absent."""
    props = read_onnx_metadata_props(path)
    if METADATA_KEY not in props:
        raise ModelMetadataError(
            f"{path}: no '{METADATA_KEY}' metadata entry; a livepose pose model is made by "
            "`livepose-train export` (or `livepose fetch-models`)"
        )
    return PoseModelMeta.from_json(props[METADATA_KEY], source=str(path))


def read_onnx_metadata_props(path):
    """All metadata_props of an ONNX file as a dict (without loading external weight files)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise
    except Exception as error:  # onnx raises DecodeError and friends for a non-ONNX file
        raise ModelMetadataError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from None
    return {p.key: p.value for p in model.metadata_props}
