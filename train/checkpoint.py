"""Model checkpoints without pickle: one .safetensors file, its JSON description in the header.

Optimizer/resume state is a separate file written by `fit` with paddle.save (pickle): it is a file
the user made themselves on their own machine, never one to accept from elsewhere.
"""
import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from livepose.files import write_atomic

CHECKPOINT_KEY = "livepose_checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or made for another config."""


@dataclass
class CheckpointMeta:
    config: str                       # PoseConfig name the weights belong to
    color_order: str = "RGB"          # channel order the weights were trained with
    weights_source: str = "livepose-train fit"
    trained: bool = True
    epoch: int = 0
    step: int = 0
    extra: dict = field(default_factory=dict)
    version: int = CHECKPOINT_VERSION
    target_encoding: str = "standard"  # how the heatmap targets were placed; absent in older checkpoints

    def __post_init__(self):
        from livepose.core.geometry import TARGET_ENCODINGS

        if self.target_encoding not in TARGET_ENCODINGS:
            raise ValueError(f"target_encoding: expected one of {TARGET_ENCODINGS}, got {self.target_encoding!r}")


def save_checkpoint(path, state, meta):
    """Write `state` (name -> array) and `meta` atomically: a crash never leaves a half-written file."""
    from safetensors.numpy import save

    arrays = {name: np.ascontiguousarray(np.asarray(value)) for name, value in state.items()}
    blob = save(arrays, metadata={CHECKPOINT_KEY: json.dumps(asdict(meta), sort_keys=True)})
    write_atomic(path, blob)


def load_checkpoint(path, expected_config=None):
    """-> (state dict of numpy arrays, CheckpointMeta). Refuses a checkpoint of another config."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    with open(path, "rb") as f:
        blob = f.read()
    try:
        state = load(blob)
        header_len = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8 : 8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint {path}: not a safetensors file ({error})") from None
    raw = header.get("__metadata__", {}).get(CHECKPOINT_KEY)
    if raw is None:
        raise CheckpointError(f"checkpoint {path}: no '{CHECKPOINT_KEY}' metadata; not written by livepose-train")
    try:
        meta = CheckpointMeta(**json.loads(raw))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path}: malformed metadata ({error})") from None
    if expected_config is not None and meta.config != expected_config:
        raise CheckpointError(
            f"checkpoint {path}: made for config '{meta.config}', but --config is '{expected_config}'"
        )
    return state, meta


def model_state(model):
    """Paddle layer -> name -> numpy array (parameters and BatchNorm statistics)."""
    return {name: tensor.numpy() for name, tensor in model.state_dict().items()}


def load_model_state(model, state, source="checkpoint"):
    """Set a Paddle layer's weights from numpy arrays; every name and shape must match."""
    import paddle

    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: parameter names do not match the model "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})"
        )
    for name, tensor in own.items():
        if tuple(tensor.shape) != tuple(state[name].shape):
            raise CheckpointError(
                f"{source}: '{name}' has shape {tuple(state[name].shape)}, the model expects {tuple(tensor.shape)}"
            )
    model.set_state_dict({name: paddle.to_tensor(np.asarray(state[name], dtype=own[name].numpy().dtype)) for name in own})


