"""`python -m train import`: published SimpleBaselines weights -> a livepose checkpoint (.safetensors).

Layouts (LAYOUT FILE):
  mmpose         MMPose top-down ResNet checkpoints (.pth): {'state_dict': {'backbone.*',
                 'keypoint_head.deconv_layers.*' / 'keypoint_head.final_layer.*'} (MMPose 0.x) or
                 'head.*' (1.x), 'meta': ...}. Trained on RGB input. FILE may be an https URL from
                 the MMPose model zoo; its name carries the first 8 hex digits of the file's SHA-256,
                 which is checked (only that prefix is published, so it rules out a damaged download,
                 not a deliberately altered one; give --sha256 when you know the full digest).
  msra           Microsoft's human-pose-estimation.pytorch pose_resnet .pth.tar files: conv1.*,
                 layerN.*, deconv_layers.*, final_layer.* (maybe under 'module.' or {'state_dict'}).
                 Its JointsDataset fed cv2.imread BGR pixels with RGB statistics: colour order BGR.
                 Only PyTorch-style ResNets (MODEL.STYLE pytorch, stride on the 3x3 conv): a caffe-style
                 file has the same shapes and cannot be told apart (it carries no config), so the
                 README says so; MMPose files whose embedded config says style='caffe' are refused.
  paddle-legacy  The Paddle tutorial's static-graph pose-resnet50-coco-384x288 parameters: a folder
                 of per-parameter tensor files (fluid.io.save_params) or one .pdparams dict, named
                 conv2d_N.w_0, batch_norm_N.{w_0,b_0,w_1,w_2}, conv2d_transpose_N.w_0, conv2d_53.b_0.
                 PaddleCV's reader fed cv2.imread BGR pixels with RGB statistics: colour order BGR.

PyTorch files are read by train.torch_reader without torch and without running pickled code; a
.pdparams dict is read the same restricted way (numpy arrays only).
"""
import os
import re
import struct
import sys
from pathlib import Path

import numpy as np

from livepose.files import sha256_of

from .checkpoint import CheckpointError, CheckpointMeta, save_checkpoint
from .model import CONFIGS, get_config
from .torch_reader import TorchFileError, find_inert, load_pickle
from .torch_reader import load as load_torch_file

LAYOUTS = ("mmpose", "msra", "paddle-legacy")
COLOR_ORDER = {"mmpose": "RGB", "msra": "BGR", "paddle-legacy": "BGR"}

# MMPose model zoo (configs/legacy/.../topdown_heatmap/coco/resnet_coco.md): config -> (url, COCO val AP)
MMPOSE_ZOO = {
    "r50-256x192": ("https://download.openmmlab.com/mmpose/top_down/resnet/res50_coco_256x192-ec54d7f3_20200709.pth", 0.718),
    "r50-384x288": ("https://download.openmmlab.com/mmpose/top_down/resnet/res50_coco_384x288-e6f795e9_20200709.pth", 0.731),
    "r101-384x288": ("https://download.openmmlab.com/mmpose/top_down/resnet/res101_coco_384x288-8c71bdc9_20200709.pth", 0.748),
    "r152-384x288": ("https://download.openmmlab.com/mmpose/top_down/resnet/res152_coco_384x288-3860d4c9_20200709.pth", 0.750),
}
_ZOO_NAME = re.compile(r"-([0-9a-f]{8})(?:_\d{8})?\.pth$")

# torchvision ResNet child -> index in PoseNet.backbone (conv1 bn1 relu maxpool layer1..4)
_BACKBONE_CHILDREN = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
_BN_STATS = {"running_mean": "_mean", "running_var": "_variance"}
# Paddle's VarType codes in a saved tensor's description -> numpy dtype
_PADDLE_DTYPES = {0: np.bool_, 1: np.int16, 2: np.int32, 3: np.int64, 4: np.float16, 5: np.float32,
                  6: np.float64, 20: np.uint8, 21: np.int8}


class ImportWeightsError(ValueError):
    """The source file does not hold the layout or the network that was asked for."""


def add_arguments(parser):
    parser.add_argument("layout", choices=LAYOUTS, help="whose checkpoint layout FILE has")
    parser.add_argument("source", metavar="FILE",
                        help="the checkpoint file (paddle-legacy: its folder or .pdparams); mmpose also takes an https URL")
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS),
                        help="the config the weights were trained for (the input size is not stored in the weights)")
    parser.add_argument("--out", required=True, help="the .safetensors checkpoint to write")
    parser.add_argument("--sha256", help="the source file's full SHA-256, checked before it is read")
    parser.add_argument("--download-dir", help="where a URL is downloaded to (default: the folder of --out)")


def run(args):
    from livepose.runtime.download import ChecksumError, DownloadError

    try:
        meta = import_weights(args.layout, args.source, args.config, args.out, sha256=args.sha256,
                              download_dir=args.download_dir)
    except (ImportWeightsError, CheckpointError, TorchFileError, DownloadError, ChecksumError) as error:
        print(f"import: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({meta.config}, colour order {meta.color_order}) from {args.layout} {meta.extra['source_file']} "
          f"(SHA-256 {meta.extra['source_sha256'][:16]}..., checked: {meta.extra['source_checked']})")
    return 0


def import_weights(layout, source, config_name, out, sha256=None, download_dir=None):
    """Convert `source` (file, folder or URL) in `layout` to a checkpoint at `out`; -> CheckpointMeta."""
    from livepose.runtime.download import fetch, verify_file

    if layout not in LAYOUTS:
        raise ImportWeightsError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    config = get_config(config_name)
    checked = "none"
    prefix = None
    if re.match(r"^https?://", str(source)):
        if layout != "mmpose":
            raise ImportWeightsError(f"{source}: only the mmpose layout is fetched by URL; download it and give the file")
        name = source.rsplit("/", 1)[-1]
        zoo_config = next((c for c, (url, _) in MMPOSE_ZOO.items() if url == source), None)
        if zoo_config and zoo_config != config.name:
            raise ImportWeightsError(f"{source}: this MMPose model is config '{zoo_config}', but --config is '{config.name}'")
        match = _ZOO_NAME.search(name)
        prefix = match.group(1) if match and not sha256 else None
        folder = Path(download_dir) if download_dir else Path(os.path.abspath(out)).parent
        path = fetch(source, folder / name, sha256=sha256, sha256_prefix=prefix)
    else:
        path = Path(source)
        if not path.exists():
            raise ImportWeightsError(f"{path}: no such file")
        match = _ZOO_NAME.search(path.name) if layout == "mmpose" else None
        prefix = match.group(1) if match and not sha256 else None
        if path.is_file() and (sha256 or prefix):
            verify_file(path, sha256=sha256, sha256_prefix=prefix)
    if sha256:
        checked = "full SHA-256"
    elif prefix:
        checked = f"SHA-256 prefix {prefix} from the file name (only the prefix is published)"

    raw, file_meta = read_source(layout, path)
    state = convert(layout, raw, config, source=str(path))
    _check_input_size(file_meta, config, path)
    digest = sha256_of(path) if path.is_file() else _folder_digest(path, raw)
    meta = CheckpointMeta(
        config=config.name,
        color_order=COLOR_ORDER[layout],
        weights_source=f"{layout}: {path.name}",
        trained=True,
        extra={"layout": layout, "source_file": path.name, "source_sha256": digest, "source_checked": checked},
    )
    save_checkpoint(out, state, meta)
    return meta


# ---------------------------------------------------------------------------------------------- reading


def read_source(layout, path):
    """-> (name -> numpy array as named in the file, the file's own metadata dict or {})."""
    path = Path(path)
    if layout == "paddle-legacy":
        return read_paddle_params(path), {}
    if path.is_dir():
        raise ImportWeightsError(f"{path}: is a folder; the {layout} layout is one PyTorch checkpoint file")
    obj = load_torch_file(path)
    if not isinstance(obj, dict):
        raise ImportWeightsError(f"{path}: holds a {type(obj).__name__}, expected a state dict")
    file_meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    state = obj["state_dict"] if isinstance(obj.get("state_dict"), dict) else obj
    # MMPose 1.x keeps the input normalisation as data_preprocessor buffers: not network weights
    state = {k: v for k, v in state.items() if not str(k).startswith("data_preprocessor.")}
    _refuse_stand_ins(state, path)
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    if not arrays:
        raise ImportWeightsError(f"{path}: no tensors found (top-level keys: {sorted(obj)[:8]})")
    return arrays, file_meta


def _refuse_stand_ins(state, path):
    """Objects of unknown classes may sit beside the weights (a 1.x message_hub), never among them."""
    hits = find_inert(state)
    if hits:
        key, stand_in = hits[0]
        raise ImportWeightsError(
            f"{path}: state dict entry '{key}' is a pickled {stand_in.global_name} object, not a tensor; "
            "this reader builds no such object (it runs no pickled code), so these weights cannot be imported"
        )


def read_paddle_params(path):
    """A folder of per-parameter tensor files (fluid.io.save_params) or a .pdparams dict -> name -> array."""
    path = Path(path)
    if path.is_dir():
        files = {p.name: p for p in path.iterdir() if p.is_file() and _looks_like_legacy_name(p.name)}
        if not files:
            raise ImportWeightsError(
                f"{path}: no parameter files named like conv2d_0.w_0 / batch_norm_0.w_1 in this folder"
            )
        return {name: read_paddle_tensor_file(p) for name, p in sorted(files.items())}
    obj = load_pickle(path)
    if not isinstance(obj, dict):
        raise ImportWeightsError(f"{path}: holds a {type(obj).__name__}, expected a dict of parameters")
    return {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}


def read_paddle_tensor_file(path):
    """One tensor saved by Paddle (save op / save_params / core.save_dense_tensor) -> numpy array.

    Layout: uint32 version, uint64 LoD level count (+ levels), uint32 tensor version, int32 size of
    the TensorDesc protobuf, the protobuf (field 1: data type, field 2: dims), raw little-endian data.
    """
    data = Path(path).read_bytes()
    try:
        pos = 4
        (lod_levels,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        for _ in range(lod_levels):
            (nbytes,) = struct.unpack_from("<Q", data, pos)
            pos += 8 + nbytes
        pos += 4
        (desc_size,) = struct.unpack_from("<i", data, pos)
        pos += 4
        dtype_code, dims = _parse_tensor_desc(data[pos : pos + desc_size])
        pos += desc_size
        dtype = np.dtype(_PADDLE_DTYPES[dtype_code]).newbyteorder("<")
        count = int(np.prod(dims)) if dims else 1
        if len(data) - pos != count * dtype.itemsize:
            raise ValueError(f"{len(data) - pos} data bytes for shape {dims} of {dtype}")
        return np.frombuffer(data, dtype=dtype, count=count, offset=pos).reshape(dims).astype(dtype.newbyteorder("="))
    except (struct.error, KeyError, ValueError, IndexError) as error:
        raise ImportWeightsError(f"{path}: not a Paddle tensor file ({error})") from None


def _parse_tensor_desc(blob):
    """TensorDesc protobuf -> (data type code, dims); dims may be packed or not."""
    pos, dtype_code, dims = 0, None, []

    def varint():
        nonlocal pos
        value, shift = 0, 0
        while True:
            byte = blob[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(blob):
        key = varint()
        field, wire = key >> 3, key & 7
        if field == 1 and wire == 0:
            dtype_code = varint()
        elif field == 2 and wire == 0:
            dims.append(varint())
        elif field == 2 and wire == 2:
            end = varint() + pos
            while pos < end:
                dims.append(varint())
        else:
            raise ValueError(f"unexpected protobuf field {field} (wire type {wire})")
    if dtype_code is None:
        raise ValueError("no data type")
    # int64 dims are two's complement varints; -1 never appears in saved parameters
    return dtype_code, tuple(dims)


def _looks_like_legacy_name(name):
    return re.fullmatch(r"(conv2d|batch_norm|conv2d_transpose)_\d+\.[wb]_\d", name) is not None


def _folder_digest(folder, arrays):
    """A SHA-256 over the parameter files of a folder, in name order (the folder has no single checksum)."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(Path(folder, name).read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- mapping


def convert(layout, raw, config, source):
    """Names of `layout` -> PoseNet names; every PoseNet parameter must be found with its shape."""
    from .model import build_model

    model = build_model(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if layout == "paddle-legacy":
        mapping = {legacy: ours for ours, legacy in paddle_legacy_names(model).items()}
        state = {mapping[k]: v for k, v in raw.items() if k in mapping}
        unexpected = sorted(k for k in raw if k not in mapping)
    else:
        state, unexpected = {}, []
        for name, value in raw.items():
            ours = _torch_name_to_posenet(layout, name)
            if ours is None:
                unexpected.append(name)
            elif ours != "":
                state[ours] = value
    unmapped = sorted(ours for ours in state if ours not in expected)
    if unmapped:
        raise ImportWeightsError(_unmapped_message(layout, raw, source, unmapped, config))
    missing = sorted(set(expected) - set(state))
    if missing or unexpected:
        raise ImportWeightsError(_layout_message(layout, raw, source, missing, unexpected, config))
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise ImportWeightsError(
                f"{source}: '{name}' has shape {tuple(state[name].shape)}, {config.name} expects {shape}"
                f"{_depth_hint(layout, raw, config)}"
            )
    return {name: np.ascontiguousarray(state[name], dtype=np.float32) for name in expected}


def _unmapped_message(layout, raw, source, unmapped, config):
    """A file parameter whose PoseNet name does not exist: dropping it would change the heatmaps silently."""
    back = {}
    for name in raw:
        ours = _torch_name_to_posenet(layout, name) if layout != "paddle-legacy" else None
        if ours in unmapped:
            back[ours] = name
    shown = [f"'{back.get(ours, ours)}' (as '{ours}')" for ours in unmapped[:3]]
    hint = ""
    if any(ours.startswith("upLayers.") and ours.endswith(".bias") for ours in unmapped):
        hint = ("; a deconvolution with a bias means the model was trained with DECONV_WITH_BIAS: true, "
                f"which {config.name} (deconvolutions without bias, as every published model) does not have")
    return (f"{source}: {len(unmapped)} parameter(s) of the file have no place in {config.name}: "
            f"{', '.join(shown)}{hint}; refusing rather than dropping them (the heatmaps would be wrong)")


def _torch_name_to_posenet(layout, name):
    """A torchvision-style name in `layout` -> PoseNet name; "" to drop it; None if it does not belong."""
    if layout == "mmpose":
        for head in ("keypoint_head.", "head."):
            if name.startswith(head):
                return _head_name(name[len(head):])
        if name.startswith("backbone."):
            return _backbone_name(name[len("backbone."):])
        return None
    name = name.removeprefix("module.")
    if name.startswith(("deconv_layers.", "final_layer.")):
        return _head_name(name)
    return _backbone_name(name)


def _backbone_name(name):
    child, _, rest = name.partition(".")
    if child not in _BACKBONE_CHILDREN or not rest:
        return None
    return _parameter_name(f"backbone.{_BACKBONE_CHILDREN[child]}.{rest}")


def _head_name(name):
    if name.startswith("deconv_layers."):
        index, _, rest = name[len("deconv_layers."):].partition(".")
        if not index.isdigit() or int(index) > 8:
            return None
        return _parameter_name(f"upLayers.{index}.{rest}")
    if name.startswith("final_layer."):
        return _parameter_name(f"upLayers.9.{name[len('final_layer.'):]}")
    return None


def _parameter_name(name):
    stem, _, leaf = name.rpartition(".")
    if leaf == "num_batches_tracked":
        return ""
    return f"{stem}.{_BN_STATS.get(leaf, leaf)}"


def paddle_legacy_names(model):
    """PoseNet name -> the legacy static-graph name, by creation order.

    The static-graph program named each layer type by a global counter in the order it was built:
    the k-th conv is conv2d_k (the 1x1 output conv is the last, conv2d_53 in ResNet-50, with bias
    b_0), the k-th batch norm batch_norm_k (w_0 scale, b_0 shift, w_1 mean, w_2 variance), the k-th
    transposed conv conv2d_transpose_k. PaddleCV's ResNet built a block's shortcut after its three
    convs, which is also the order of paddle.vision's sublayers (conv1..bn3, then downsample), so
    walking PoseNet's sublayers in order reproduces the counters; every shape is then checked.
    (The tutorial pairs sorted() names instead, which misorders 'layer.10' before 'layer.2' in
    deeper ResNets and needs hand-written index fix-ups.)
    """
    from paddle import nn

    counters = {"conv2d": 0, "batch_norm": 0, "conv2d_transpose": 0}
    leaves = {
        "conv2d": {"weight": "w_0", "bias": "b_0"},
        "conv2d_transpose": {"weight": "w_0", "bias": "b_0"},
        "batch_norm": {"weight": "w_0", "bias": "b_0", "_mean": "w_1", "_variance": "w_2"},
    }
    names = {}
    for prefix, layer in model.named_sublayers():
        if isinstance(layer, nn.Conv2DTranspose):
            kind = "conv2d_transpose"
        elif isinstance(layer, nn.Conv2D):
            kind = "conv2d"
        elif isinstance(layer, nn.BatchNorm2D):
            kind = "batch_norm"
        else:
            continue
        index = counters[kind]
        counters[kind] += 1
        for leaf in layer.state_dict():
            names[f"{prefix}.{leaf}"] = f"{kind}_{index}.{leaves[kind][leaf]}"
    return names


# ---------------------------------------------------------------------------------------------- checks


def detect_layout(names):
    """The layout a set of parameter names looks like, or None."""
    names = set(names)
    if any(n.startswith("backbone.") for n in names) and any(n.startswith(("keypoint_head.", "head.")) for n in names):
        return "mmpose"
    stripped = {n.removeprefix("module.") for n in names}
    if "conv1.weight" in stripped and any(n.startswith("final_layer.") for n in stripped):
        return "msra"
    if any(_looks_like_legacy_name(n) for n in names):
        return "paddle-legacy"
    if "upLayers.9.weight" in names:
        return "livepose"
    return None


def _layout_message(layout, raw, source, missing, unexpected, config):
    found = sorted(raw)
    guess = detect_layout(found)
    if guess and guess != layout:
        hint = (f"; these look like the '{guess}' layout" +
                ("" if guess == "livepose" else f": try `python -m train import {guess} ...`"))
    else:
        hint = _depth_hint(layout, raw, config)
    expected = {
        "mmpose": "backbone.*, keypoint_head.deconv_layers.* / head.deconv_layers.*, *.final_layer.*",
        "msra": "conv1.*, bn1.*, layer1-4.*, deconv_layers.*, final_layer.* (optionally under module.)",
        "paddle-legacy": "conv2d_N.w_0, batch_norm_N.w_0/b_0/w_1/w_2, conv2d_transpose_N.w_0",
    }[layout]
    return (
        f"{source}: does not match the {layout} layout for {config.name} (expected {expected}); "
        f"missing {len(missing)} e.g. {missing[:3]}, unexpected {len(unexpected)} e.g. {unexpected[:3]}; "
        f"the file has {len(found)} tensors e.g. {found[:4]}{hint}"
    )


def _depth_hint(layout, raw, config):
    depth = _resnet_depth(layout, raw)
    if depth and depth != config.depth:
        fits = sorted(c for c, cfg in CONFIGS.items() if cfg.depth == depth)
        return f"; the file holds a ResNet-{depth}, {config.name} is ResNet-{config.depth} (configs that fit: {fits or 'none'})"
    return ""


def _resnet_depth(layout, raw):
    """ResNet depth from torchvision-style names: blocks per stage and block type."""
    if layout == "paddle-legacy":
        return None
    blocks = {}
    bottleneck = False
    for name in raw:
        name = name.removeprefix("module.").removeprefix("backbone.")
        match = re.match(r"layer([1-4])\.(\d+)\.(conv3)?", name)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
            bottleneck |= match.group(3) is not None
    layout_to_depth = {(2, 2, 2, 2, False): 18, (3, 4, 6, 3, False): 34, (3, 4, 6, 3, True): 50,
                       (3, 4, 23, 3, True): 101, (3, 8, 36, 3, True): 152}
    return layout_to_depth.get((*[blocks.get(s, 0) for s in (1, 2, 3, 4)], bottleneck))


def _check_input_size(file_meta, config, path):
    """Refuse a file whose embedded config (MMPose 0.x `meta['config']`, 1.x `meta['cfg']`) says it was
    trained at another input size, or with Caffe-style ResNet blocks (stride on the 1x1 conv)."""
    texts = [file_meta.get(key) for key in ("config", "cfg")] if isinstance(file_meta, dict) else []
    for text in (t for t in texts if isinstance(t, str)):
        if re.search(r"style\s*=\s*['\"]caffe['\"]", text):
            raise ImportWeightsError(
                f"{path}: its config builds Caffe-style ResNet blocks (style='caffe', stride on the 1x1 conv); "
                "livepose's ResNet strides the 3x3 conv (PyTorch style), so these weights would give wrong heatmaps"
            )
        # 0.x: data_cfg image_size=[W, H]; 1.x: codec input_size=(W, H)
        match = re.search(r"(?:image_size|input_size)\s*=\s*[\[(]\s*(\d+)\s*,\s*(\d+)\s*[\])]", text)
        if match:
            width, height = int(match.group(1)), int(match.group(2))
            if (height, width) != tuple(config.input_size):
                raise ImportWeightsError(
                    f"{path}: trained at {height}x{width} (HxW, from its embedded config), "
                    f"but {config.name} is {config.input_size[0]}x{config.input_size[1]}"
                )
