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
