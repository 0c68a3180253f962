"""`python -m train import`: published layouts -> PoseNet, checked against a plain-PyTorch reference.

The reference is SimpleBaselines written here in PyTorch with torchvision's parameter names (torchvision
itself does not import beside torch 2.13), with random weights and random BatchNorm statistics,
saved as MMPose 0.x / 1.x and Microsoft pose_resnet files in both torch.save containers (zip and the
pre-1.6 legacy one the 2018-2020 files use). Importing must reproduce its heatmaps.
"""
import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

paddle = pytest.importorskip("paddle", reason="import needs PaddlePaddle: pip install -e '.[train]'")
torch = pytest.importorskip("torch", reason="the parity reference is built in PyTorch: pip install torch")
nn = torch.nn

from conftest import REPO  # noqa: E402
from livepose.runtime.download import ChecksumError  # noqa: E402
from train import importers  # noqa: E402
from train.checkpoint import CheckpointError, load_checkpoint, load_model_state  # noqa: E402
from train.model import build_model, get_config  # noqa: E402
from train.torch_reader import TorchFileError  # noqa: E402

INPUT = (96, 64)  # fully convolutional: a small input (a multiple of 32) keeps the tests fast
RELATIVE_TOLERANCE = 1e-4


# ------------------------------------------------------------------------ the PyTorch reference


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # stride on the 3x3 (torchvision v1.5)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


RESNETS = {18: (BasicBlock, (2, 2, 2, 2)), 50: (Bottleneck, (3, 4, 6, 3))}


class ReferencePoseResNet(nn.Module):
    """Microsoft's pose_resnet / MMPose's TopDown ResNet + TopdownHeatmapSimpleHead, torchvision names."""

    def __init__(self, depth):
        super().__init__()
        block, stages = RESNETS[depth]
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), stages)):
            setattr(self, f"layer{i + 1}", self._stage(block, planes, blocks, 1 if i == 0 else 2))
        layers, channels = [], self.inplanes
        for _ in range(3):
            layers += [nn.ConvTranspose2d(channels, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU()]
            channels = 256
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(256, 17, 1)

    def _stage(self, block, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.final_layer(self.deconv_layers(x))


def randomised_reference(depth, seed):
    torch.manual_seed(seed)
    net = ReferencePoseResNet(depth)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(1000)
    return net.eval()


@functools.lru_cache(maxsize=None)
def reference(depth):
    """(state dict with torchvision names, input batch, reference heatmaps)."""
    net = randomised_reference(depth, seed=depth)
    batch = np.random.default_rng(depth).uniform(-2, 2, (2, 3, *INPUT)).astype(np.float32)
    with torch.no_grad():
        heatmaps = net(torch.from_numpy(batch)).numpy()
    return net.state_dict(), batch, heatmaps


def save_layout(state, layout, path, zipfile, meta=None):
    """Write `state` (torchvision names) the way `layout`'s publisher did."""
    head = ("deconv_layers.", "final_layer.")
    if layout in ("mmpose-0.x", "mmpose-1.x"):
        head_prefix = "keypoint_head." if layout == "mmpose-0.x" else "head."
        state = {(head_prefix if k.startswith(head) else "backbone.") + k: v for k, v in state.items()}
        obj = {"state_dict": state, "meta": meta or {"epoch": 210, "mmcv_version": "1.0.2"}}
    elif layout == "msra":
        obj = state
    elif layout == "msra-module":  # saved from nn.DataParallel, wrapped as the training checkpoints are
        obj = {"epoch": 140, "state_dict": {"module." + k: v for k, v in state.items()}}
    torch.save(obj, path, _use_new_zipfile_serialization=zipfile)
    return path


def posenet_heatmaps(checkpoint, config, batch):
    state, _ = load_checkpoint(checkpoint, expected_config=config)
    model = build_model(get_config(config))
    load_model_state(model, state)
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(batch)).numpy()


def relative_difference(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


# ------------------------------------------------------------------------ parity

CASES = [(18, layout, zipfile) for layout in ("mmpose-0.x", "mmpose-1.x", "msra", "msra-module")
         for zipfile in (True, False)]
CASES += [(50, "mmpose-0.x", True), (50, "msra-module", False), (50, "mmpose-1.x", False), (50, "msra", True)]


@pytest.mark.parametrize("depth, layout, zipfile", CASES)
def test_import_reproduces_the_reference_heatmaps(depth, layout, zipfile, tmp_path):
    state, batch, expected = reference(depth)
    config = f"r{depth}-256x192"
    source = save_layout(state, layout, tmp_path / "weights.pth", zipfile)
    out = tmp_path / "imported.safetensors"
    meta = importers.import_weights(layout.split("-")[0], source, config, out)
    assert meta.color_order == ("RGB" if layout.startswith("mmpose") else "BGR")
    assert meta.trained and meta.extra["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()

    actual = posenet_heatmaps(out, config, batch)
    assert actual.shape == expected.shape == (2, 17, INPUT[0] // 4, INPUT[1] // 4)
    assert np.abs(expected).max() > 0.1, "random reference heatmaps should not be flat"
    assert relative_difference(actual, expected) <= RELATIVE_TOLERANCE


def test_cli_import_then_export_matches_the_reference(tmp_path):
    """The whole path a user takes: MMPose file -> import -> ONNX export -> ONNX Runtime."""
    onnxruntime = pytest.importorskip("onnxruntime")
    state, batch, expected = reference(18)
    source = save_layout(state, "mmpose-0.x", tmp_path / "res18.pth", zipfile=False)
    ckpt, onnx_path = tmp_path / "r18.safetensors", tmp_path / "r18.onnx"
    cmd = [sys.executable, "-m", "train"]
    result = subprocess.run(cmd + ["import", "mmpose", str(source), "--config", "r18-256x192", "--out", str(ckpt)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    result = subprocess.run(cmd + ["export", "--config", "r18-256x192", "--checkpoint", str(ckpt), "--out", str(onnx_path)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    from livepose.core.metadata import read_onnx_metadata

    meta = read_onnx_metadata(onnx_path)
    assert meta.color_order == "RGB" and meta.trained and meta.weights_source == "mmpose: res18.pth"
    # the exported graph has a fixed 256x192 input: compare at that size
    big = np.random.default_rng(5).uniform(-2, 2, (2, 3, 256, 192)).astype(np.float32)
    net = randomised_reference(18, seed=18)
    with torch.no_grad():
        reference_heatmaps = net(torch.from_numpy(big)).numpy()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    actual = session.run(["heatmaps"], {"image": big})[0]
    assert relative_difference(actual, reference_heatmaps) <= RELATIVE_TOLERANCE


# ------------------------------------------------------------------------ the legacy Paddle layout


def save_legacy_folder(model, folder):
    """Each parameter as its own tensor file under its legacy static-graph name, written by Paddle itself
    (core.save_dense_tensor, the format fluid.io.save_params wrote one file per variable in)."""
    from paddle.framework.io import _save_dense_tensor

    folder.mkdir()
    state = model.state_dict()
    for ours, legacy in importers.paddle_legacy_names(model).items():
        _save_dense_tensor(state[ours].value().get_tensor(), str(folder / legacy))
    (folder / "learning_rate_0").write_bytes(b"optimizer state, ignored")
    return folder


def random_posenet(config, seed):
    paddle.seed(seed)
    model = build_model(get_config(config))
    rng = np.random.default_rng(seed)
    state = {}
    for name, value in model.state_dict().items():
        value = value.numpy()
        if name.endswith("_variance"):
            value = rng.uniform(0.5, 2.0, value.shape)
        elif name.endswith("_mean"):
            value = rng.normal(0, 0.1, value.shape)
        elif name.startswith("upLayers"):  # He scale, not the tutorial's N(0, 0.001): heatmaps far from flat
            fan = value.shape[0] * 16 if value.ndim == 4 and value.shape[2] == 4 else max(value[0].size, 1)
            value = rng.normal(0, np.sqrt(2 / fan), value.shape)
        state[name] = value.astype(np.float32)
    load_model_state(model, state)
    return model.eval()


def test_legacy_names_match_the_tutorials_resnet50_file():
    names = importers.paddle_legacy_names(build_model(get_config("r50-384x288")))
    legacy = set(names.values())
    assert names["upLayers.9.bias"] == "conv2d_53.b_0" and names["upLayers.9.weight"] == "conv2d_53.w_0"
    assert names["upLayers.7._variance"] == "batch_norm_55.w_2"
    assert names["upLayers.6.weight"] == "conv2d_transpose_2.w_0"
    assert names["backbone.1._mean"] == "batch_norm_0.w_1"
    # PaddleCV built a block's shortcut after its three convs: layer1's downsample is the 5th conv
    assert names["backbone.4.0.downsample.0.weight"] == "conv2d_4.w_0"
    assert len(legacy) == len(names) == 54 + 56 * 4 + 3 + 1


@pytest.mark.slow
def test_legacy_paddle_folder_round_trip(tmp_path):
    model = random_posenet("r50-384x288", seed=3)
    folder = save_legacy_folder(model, tmp_path / "pose-resnet50-coco-384x288")
    out = tmp_path / "legacy.safetensors"
    meta = importers.import_weights("paddle-legacy", folder, "r50-384x288", out)
    assert meta.color_order == "BGR"
    batch = np.random.default_rng(0).uniform(-2, 2, (2, 3, *INPUT)).astype(np.float32)
    with paddle.no_grad():
        expected = model(paddle.to_tensor(batch)).numpy()
    actual = posenet_heatmaps(out, "r50-384x288", batch)
    assert np.abs(expected).max() > 0.1
    assert relative_difference(actual, expected) <= RELATIVE_TOLERANCE


def test_legacy_paddle_pdparams_round_trip(tmp_path):
    model = random_posenet("r18-256x192", seed=4)
    state = model.state_dict()
    params = {legacy: state[ours].numpy() for ours, legacy in importers.paddle_legacy_names(model).items()}
    source = tmp_path / "legacy.pdparams"
    paddle.save(params, str(source))
    out = tmp_path / "legacy.safetensors"
    importers.import_weights("paddle-legacy", source, "r18-256x192", out)
    imported, _ = load_checkpoint(out, "r18-256x192")
    for name, value in state.items():
        np.testing.assert_array_equal(imported[name], value.numpy(), err_msg=name)


def test_legacy_tensor_reader_matches_paddles_writer(tmp_path):
    from paddle.framework.io import _save_dense_tensor

    for dtype in ("float32", "float16", "int64"):
        array = (np.arange(60).reshape(3, 4, 5) - 7).astype(dtype)
        tensor = paddle.to_tensor(array)  # keep it alive: get_tensor() does not own the memory
        _save_dense_tensor(tensor.value().get_tensor(), str(tmp_path / dtype))
        loaded = importers.read_paddle_tensor_file(tmp_path / dtype)
        assert loaded.dtype == array.dtype
        np.testing.assert_array_equal(loaded, array)


# ------------------------------------------------------------------------ bad input


def test_wrong_layout_is_named_with_the_right_one(tmp_path):
    state, _, _ = reference(18)
    source = save_layout(state, "msra", tmp_path / "pose_resnet_18.pth.tar", zipfile=True)
    with pytest.raises(importers.ImportWeightsError) as error:
        importers.import_weights("mmpose", source, "r18-256x192", tmp_path / "out.safetensors")
    message = str(error.value)
    assert str(source) in message and "mmpose layout" in message and "keypoint_head" in message
    assert "conv1.weight" in message and "try `python -m train import msra" in message
    assert not (tmp_path / "out.safetensors").exists()


def test_weights_of_another_depth_name_the_configs_that_fit(tmp_path):
    state, _, _ = reference(18)
    source = save_layout(state, "mmpose-1.x", tmp_path / "res18.pth", zipfile=True)
    with pytest.raises(importers.ImportWeightsError, match=r"holds a ResNet-18, r50-256x192 is ResNet-50.*r18-256x192"):
        importers.import_weights("mmpose", source, "r50-256x192", tmp_path / "out.safetensors")


def test_embedded_mmpose_config_of_another_input_size_is_refused(tmp_path):
    state, _, _ = reference(18)
    meta = {"config": "data_cfg = dict(\n    image_size=[288, 384],\n    heatmap_size=[72, 96])"}
    source = save_layout(state, "mmpose-0.x", tmp_path / "res18.pth", zipfile=True, meta=meta)
    with pytest.raises(importers.ImportWeightsError, match="trained at 384x288.*r18-256x192 is 256x192"):
        importers.import_weights("mmpose", source, "r18-256x192", tmp_path / "out.safetensors")


def test_checkpoint_is_refused_for_another_config(tmp_path):
    state, _, _ = reference(18)
    source = save_layout(state, "msra", tmp_path / "w.pth", zipfile=False)
    out = tmp_path / "out.safetensors"
    importers.import_weights("msra", source, "r18-256x192", out)
    with pytest.raises(CheckpointError, match=f"{out}: made for config 'r18-256x192', but --config is 'r50-256x192'"):
        load_checkpoint(out, expected_config="r50-256x192")


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"not a checkpoint at all", "not a readable PyTorch checkpoint"),
    (b"PK\x03\x04 truncated zip", "not a readable PyTorch checkpoint"),
])
def test_missing_or_corrupt_file(content, message, tmp_path):
    source = tmp_path / "model.pth"
    if content is not None:
        source.write_bytes(content)
    with pytest.raises((importers.ImportWeightsError, TorchFileError), match=message) as error:
        importers.import_weights("msra", source, "r18-256x192", tmp_path / "out.safetensors")
    assert str(source) in str(error.value)


def test_truncated_legacy_container(tmp_path):
    state, _, _ = reference(18)
    source = save_layout(state, "msra", tmp_path / "w.pth", zipfile=False)
    source.write_bytes(source.read_bytes()[:-1000])
    with pytest.raises(TorchFileError, match="truncated"):
        importers.import_weights("msra", source, "r18-256x192", tmp_path / "out.safetensors")


class RunsCode:
    """A pickle that would create a folder if its reduce function were ever called."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_pickled_code_is_refused_and_never_run(tmp_path):
    state, _, _ = reference(18)
    marker = tmp_path / "code-ran"
    obj = {"state_dict": dict(state), "meta": {"hook": RunsCode(str(marker))}}
    source = tmp_path / "evil.pth"
    torch.save(obj, source)
    with pytest.raises(TorchFileError, match=r"evil.pth: refers to posix.mkdir|evil.pth: refers to os.mkdir"):
        importers.import_weights("msra", source, "r18-256x192", tmp_path / "out.safetensors")
    assert not marker.exists()


def test_mmpose_file_name_prefix_is_checked(tmp_path):
    state, _, _ = reference(18)
    bad = save_layout(state, "mmpose-0.x", tmp_path / "res18_coco_256x192-deadbeef_20200709.pth", zipfile=True)
    digest = hashlib.sha256(bad.read_bytes()).hexdigest()
    if not digest.startswith("deadbeef"):
        with pytest.raises(ChecksumError, match=f"deadbeef.*{digest}"):
            importers.import_weights("mmpose", bad, "r18-256x192", tmp_path / "out.safetensors")
    good = bad.rename(tmp_path / f"res18_coco_256x192-{digest[:8]}_20200709.pth")
    meta = importers.import_weights("mmpose", good, "r18-256x192", tmp_path / "out.safetensors")
    assert meta.extra["source_checked"].startswith(f"SHA-256 prefix {digest[:8]}")


def test_mmpose_by_url_from_a_local_server(tmp_path):
    """The URL path end to end against http.server on 127.0.0.1 (the real zoo needs the internet)."""
    state, batch, expected = reference(18)
    served = tmp_path / "served"
    served.mkdir()
    staged = save_layout(state, "mmpose-0.x", served / "staging.pth", zipfile=False)
    name = f"res18_coco_256x192-{hashlib.sha256(staged.read_bytes()).hexdigest()[:8]}_20200709.pth"
    staged.rename(served / name)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{name}"
        out = tmp_path / "models" / "r18.safetensors"
        meta = importers.import_weights("mmpose", url, "r18-256x192", out)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert (tmp_path / "models" / name).is_file()  # downloaded beside --out
    assert "prefix" in meta.extra["source_checked"]
    assert relative_difference(posenet_heatmaps(out, "r18-256x192", batch), expected) <= RELATIVE_TOLERANCE


def test_zoo_url_for_another_config_is_refused(tmp_path):
    url = importers.MMPOSE_ZOO["r50-384x288"][0]
    with pytest.raises(importers.ImportWeightsError, match="config 'r50-384x288', but --config is 'r50-256x192'"):
        importers.import_weights("mmpose", url, "r50-256x192", tmp_path / "out.safetensors")


# ------------------------------------------------------------------------ files as published

MMPOSE_0X_CONFIG = """log_level = 'INFO'
optimizer = dict(type='Adam', lr=5e-4)
lr_config = dict(policy='step', warmup='linear', warmup_iters=500, step=[170, 200])
model = dict(type='TopDown', pretrained='torchvision://resnet18',
    backbone=dict(type='ResNet', depth=18),
    keypoint_head=dict(type='TopDownSimpleHead', in_channels=512, out_channels=17))
data_cfg = dict(
    image_size=[192, 256],
    heatmap_size=[48, 64],
    num_output_channels=17)
"""

MMPOSE_1X_CONFIG = """default_scope = 'mmpose'
codec = dict(type='MSRAHeatmap', input_size=(192, 256), heatmap_size=(48, 64), sigma=2)
model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(type='ResNet', depth=18, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    head=dict(type='HeatmapHead', in_channels=512, out_channels=17, loss=dict(type='KeypointMSELoss', use_target_weight=True), decoder=codec))
param_scheduler = [dict(type='LinearLR', begin=0, end=500, start_factor=0.001, by_epoch=False),
    dict(type='MultiStepLR', begin=0, end=210, milestones=[170, 200], gamma=0.1, by_epoch=True)]
"""


def adam_state(state):
    """An Adam optimizer's state_dict after one step over tensors shaped like `state`'s float entries."""
    params = [nn.Parameter(v.clone().float()) for v in state.values() if v.dtype == torch.float32][:6]
    optimizer = torch.optim.Adam(params, lr=5e-4)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    return optimizer.state_dict()


def save_mmpose_0x_as_published(state, path):
    """As MMPose 0.x's (mmcv) save_checkpoint wrote it: meta with versions, config text, env, seed None; Adam."""
    meta = {"mmpose_version": "0.8.0", "config": MMPOSE_0X_CONFIG, "env_info": "sys.platform: linux\nPython: 3.7.7",
            "seed": None, "epoch": 210, "iter": 117810, "mmcv_version": "1.0.2", "time": "Thu Jul  9 06:23:57 2020"}
    obj = {"meta": meta, "state_dict": {("keypoint_head." if k.startswith(("deconv_layers.", "final_layer."))
                                         else "backbone.") + k: v for k, v in state.items()},
           "optimizer": adam_state(state)}
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return path


class _HistoryBuffer:
    """Shaped like mmengine.logging.history_buffer.HistoryBuffer (plain attributes, default pickling)."""

    def __init__(self, values):
        self.max_length = 1000000
        self._log_history = np.asarray(values, np.float64)
        self._count_history = np.ones(len(values))


def _mmengine_modules(monkeypatch):
    """Make _HistoryBuffer picklable under mmengine's name, as a real 1.x file refers to it."""
    import types

    module = types.ModuleType("mmengine.logging.history_buffer")
    module.HistoryBuffer = _HistoryBuffer
    _HistoryBuffer.__module__, _HistoryBuffer.__qualname__ = module.__name__, "HistoryBuffer"
    for name in ("mmengine", "mmengine.logging"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)


def save_mmpose_1x_as_published(state, path, monkeypatch, cfg=MMPOSE_1X_CONFIG, extra_state=None):
    """As MMEngine's Runner.save_checkpoint wrote it before March 2023: message_hub with HistoryBuffers,
    param_schedulers with Counter milestones, numpy dataset_meta, data_preprocessor buffers."""
    import collections

    _mmengine_modules(monkeypatch)
    weights = {("head." if k.startswith(("deconv_layers.", "final_layer.")) else "backbone.") + k: v for k, v in state.items()}
    weights["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    weights["data_preprocessor.std"] = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    weights.update(extra_state or {})
    dataset_meta = {"dataset_name": "coco", "num_keypoints": 17, "flip_indices": [0, 2, 1, 4, 3],
                    "sigmas": np.full(17, 0.05, np.float32), "keypoint_colors": np.zeros((17, 3), np.uint8)}
    obj = {
        "meta": {"cfg": cfg, "seed": 0, "experiment_name": "td-hm_res18_8xb64-210e_coco-256x192",
                 "time": "20230102_104845", "mmengine_version": "0.4.0", "dataset_meta": dataset_meta,
                 "epoch": 210, "iter": 38220},
        "state_dict": weights,
        "message_hub": {"log_scalars": {"train/lr": _HistoryBuffer([5e-6]), "train/loss": _HistoryBuffer([1e-3, 9e-4])},
                        "runtime_info": {"epoch": 210, "iter": 38220, "dataset_meta": dataset_meta},
                        "resumed_keys": {"epoch": True}},
        "optimizer": adam_state(state),
        "param_schedulers": [
            {"start_factor": 0.001, "end_factor": 1.0, "begin": 0, "end": 500, "last_step": 500, "by_epoch": False},
            {"milestones": collections.Counter({170: 1, 200: 1}), "gamma": 0.1, "begin": 0, "end": 210,
             "last_step": 210, "by_epoch": True, "base_values": [0.0005]},
        ],
    }
    torch.save(obj, path)
    return path


def save_torch04_legacy(state, path):
    """As torch 0.4.0 saved a Microsoft pose_resnet from a GPU: the legacy container, storages located
    'cuda:0', and no num_batches_tracked buffers (added in torch 0.4.1)."""
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    cpu, cuda = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"  # BINUNICODE strings of the location
    assert data.count(cpu) >= 1
    path.write_bytes(data.replace(cpu, cuda))
    return path


@pytest.mark.parametrize("kind", ["mmpose-0.x", "mmpose-1.x", "torch-0.4"])
def test_files_as_published_import_with_heatmap_parity(kind, tmp_path, monkeypatch):
    state, batch, expected = reference(18)
    source = tmp_path / "published.pth"
    if kind == "mmpose-0.x":
        save_mmpose_0x_as_published(state, source)
    elif kind == "mmpose-1.x":
        save_mmpose_1x_as_published(state, source, monkeypatch)
    else:
        save_torch04_legacy(state, source)
        assert b"cuda:0" in source.read_bytes() and b"num_batches_tracked" not in source.read_bytes()
    out = tmp_path / "imported.safetensors"
    importers.import_weights("msra" if kind == "torch-0.4" else "mmpose", source, "r18-256x192", out)
    assert relative_difference(posenet_heatmaps(out, "r18-256x192", batch), expected) <= RELATIVE_TOLERANCE


def test_1x_objects_beside_the_weights_load_as_inert_stand_ins(tmp_path, monkeypatch):
    from train.torch_reader import Inert, find_inert, load

    state, _, _ = reference(18)
    obj = load(save_mmpose_1x_as_published(state, tmp_path / "w.pth", monkeypatch))
    hits = dict(find_inert(obj))
    buffer = hits["message_hub.log_scalars.train/loss"]
    assert isinstance(buffer, Inert) and buffer.global_name == "mmengine.logging.history_buffer.HistoryBuffer"
    np.testing.assert_allclose(buffer.state["_log_history"], [1e-3, 9e-4])  # recorded, never built
    assert obj["param_schedulers"][1]["milestones"] == {170: 1, 200: 1}
    assert obj["meta"]["dataset_meta"]["sigmas"].dtype == np.float32
    assert not find_inert(obj["state_dict"])


def test_unknown_object_inside_the_state_dict_is_refused(tmp_path, monkeypatch):
    state, _, _ = reference(18)
    source = save_mmpose_1x_as_published(state, tmp_path / "w.pth", monkeypatch,
                                         extra_state={"head.final_layer.scale": _HistoryBuffer([1.0])})
    with pytest.raises(importers.ImportWeightsError,
                       match=r"'head.final_layer.scale' is a pickled mmengine.logging.history_buffer.HistoryBuffer"):
        importers.import_weights("mmpose", source, "r18-256x192", tmp_path / "out.safetensors")


def test_1x_input_size_is_read_from_its_cfg(tmp_path, monkeypatch):
    state, _, _ = reference(18)
    cfg = MMPOSE_1X_CONFIG.replace("input_size=(192, 256)", "input_size=(288, 384)")
    source = save_mmpose_1x_as_published(state, tmp_path / "w.pth", monkeypatch, cfg=cfg)
    with pytest.raises(importers.ImportWeightsError, match="trained at 384x288.*r18-256x192 is 256x192"):
        importers.import_weights("mmpose", source, "r18-256x192", tmp_path / "out.safetensors")


def test_caffe_style_config_is_refused(tmp_path):
    state, _, _ = reference(18)
    meta = {"config": MMPOSE_0X_CONFIG.replace("depth=18)", "depth=18, style='caffe')")}
    source = save_layout(state, "mmpose-0.x", tmp_path / "caffe.pth", zipfile=True, meta=meta)
    with pytest.raises(importers.ImportWeightsError, match=r"Caffe-style ResNet blocks.*stride on the 1x1 conv"):
        importers.import_weights("mmpose", source, "r18-256x192", tmp_path / "out.safetensors")


def test_deconvolution_bias_is_reported_not_dropped(tmp_path):
    """An MSRA model trained with DECONV_WITH_BIAS: true: its deconv biases have no place in PoseNet."""
    state, _, _ = reference(18)
    state = dict(state)
    state["deconv_layers.0.bias"] = torch.zeros(256)
    source = save_layout(state, "msra", tmp_path / "pose_resnet_18.pth.tar", zipfile=True)
    with pytest.raises(importers.ImportWeightsError, match=r"'deconv_layers.0.bias' \(as 'upLayers.0.bias'\).*DECONV_WITH_BIAS"):
        importers.import_weights("msra", source, "r18-256x192", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


class CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_builtins_global_outside_the_weights_is_refused_outright(tmp_path):
    state, _, _ = reference(18)
    source = tmp_path / "crafted.pth"
    torch.save({"state_dict": dict(state), "meta": {"note": CallsEval()}}, source)
    with pytest.raises(TorchFileError, match=r"crafted.pth: refers to (__builtin__|builtins).eval.*crafted to run code"):
        importers.import_weights("msra", source, "r18-256x192", tmp_path / "out.safetensors")
