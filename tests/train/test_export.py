"""`python -m train export`: ONNX names, dynamic batch, metadata, parity with Paddle, refusal of bad input."""
import subprocess
import sys

import numpy as np
import pytest

paddle = pytest.importorskip("paddle", reason="export needs PaddlePaddle: pip install -e '.[train]'")
onnxruntime = pytest.importorskip("onnxruntime")

from conftest import REPO  # noqa: E402
from livepose.core.decode import decode_heatmaps  # noqa: E402
from livepose.core.metadata import read_onnx_metadata  # noqa: E402
from livepose.files import sha256_of  # noqa: E402
from train import export  # noqa: E402
from train.checkpoint import (  # noqa: E402
    CheckpointMeta,
    load_checkpoint,
    load_model_state,
    model_state,
    save_checkpoint,
)
from train.model import build_model, get_config  # noqa: E402


def run_export(*args):
    return subprocess.run([sys.executable, "-m", "train", "export", *args], cwd=REPO, capture_output=True, text=True)


def ort_session(path):
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def peaked_checkpoint(tmp_path_factory):
    """r18 weights whose heatmaps are far from flat: random, with the head drawn at He scale instead of
    the tutorial's N(0, 0.001) (which gives heatmaps of ~1e-4 full of near-ties), stored as a BGR
    'trained' import so the metadata shows it. Random weights: the keypoints are a numerical proxy, not a pose."""
    paddle.seed(7)
    model = build_model(get_config("r18-256x192"))
    state = model_state(model)
    rng = np.random.default_rng(7)
    for i in (0, 3, 6):
        weight = state[f"upLayers.{i}.weight"]  # (in, out, 4, 4)
        state[f"upLayers.{i}.weight"] = rng.normal(0, np.sqrt(2 / (weight.shape[0] * 16)), weight.shape).astype(np.float32)
    state["upLayers.9.weight"] = rng.normal(0, 0.05, state["upLayers.9.weight"].shape).astype(np.float32)
    for i in (1, 4, 7):  # non-trivial BatchNorm statistics, so eval-mode folding is exercised
        state[f"upLayers.{i}._mean"] = rng.normal(0, 0.1, 256).astype(np.float32)
        state[f"upLayers.{i}._variance"] = rng.uniform(0.5, 2.0, 256).astype(np.float32)
    path = tmp_path_factory.mktemp("ckpt") / "peaked.safetensors"
    meta = CheckpointMeta(config="r18-256x192", color_order="BGR", weights_source="test: random peaked", trained=True,
                          target_encoding="unbiased")
    save_checkpoint(path, state, meta)
    return path


def test_random_export_names_shapes_and_metadata(r18_onnx):
    session = ort_session(r18_onnx)
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("image", "heatmaps")
    assert inp.shape[1:] == [3, 256, 192] and out.shape[1:] == [17, 64, 48]
    assert isinstance(inp.shape[0], str), "batch dimension must be dynamic"
    for batch in (1, 5):
        heatmaps = session.run(None, {"image": np.zeros((batch, 3, 256, 192), np.float32)})[0]
        assert heatmaps.shape == (batch, 17, 64, 48)

    meta = read_onnx_metadata(r18_onnx)
    assert (meta.architecture, meta.config) == ("pose_resnet18", "r18-256x192")
    assert (meta.input_size, meta.heatmap_size, meta.sigma) == ((256, 192), (64, 48), 2.0)
    assert meta.color_order == "RGB"
    assert meta.trained is False and meta.weights_source == "random"
    assert meta.target_encoding == "standard" and meta.schema_version == 2
    assert meta.extra["opset"] >= 17 and meta.extra["paddle_version"] == paddle.__version__

    import onnx

    model = onnx.load(str(r18_onnx))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.slow
def test_checkpoint_export_matches_paddle(peaked_checkpoint, tmp_path):
    out = tmp_path / "peaked.onnx"
    result = run_export("--config", "r18-256x192", "--checkpoint", str(peaked_checkpoint), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "ONNX Runtime vs Paddle" in result.stdout

    meta = read_onnx_metadata(out)
    assert meta.color_order == "BGR" and meta.trained is True
    assert meta.weights_source == "test: random peaked"
    assert meta.target_encoding == "unbiased" and meta.schema_version == 2  # the checkpoint's encoding travels
    assert meta.extra["checkpoint_sha256"] == sha256_of(peaked_checkpoint)

    # independent of the exporter's own check: another batch, a different batch size
    state, _ = load_checkpoint(peaked_checkpoint, "r18-256x192")
    model = build_model(get_config("r18-256x192"))
    load_model_state(model, state)
    model.eval()
    batch = np.random.default_rng(3).uniform(-2, 2, (4, 3, 256, 192)).astype(np.float32)
    with paddle.no_grad():
        expected = model(paddle.to_tensor(batch)).numpy()
    actual = ort_session(out).run(["heatmaps"], {"image": batch})[0]
    scale = np.abs(expected).max()
    assert scale > 1, "the rescaled head should give heatmaps far from zero"
    assert np.abs(actual - expected).max() <= 1e-3 * scale
    coords_expected, _ = decode_heatmaps(expected)
    coords_actual, _ = decode_heatmaps(actual)
    clear = export._well_defined(expected, 2e-3 * scale)
    assert clear.sum() >= 0.5 * clear.size
    assert np.abs(coords_actual - coords_expected)[clear].max() <= 0.1


def test_parity_check_catches_a_different_network():
    """The exporter's check must be able to fail: the ONNX of one set of weights against another."""
    config = get_config("r18-256x192")
    paddle.seed(1)
    exported = build_model(config)
    exported.eval()
    onnx_model = export._convert(exported, config.input_size, 17)
    paddle.seed(2)
    other = build_model(config)
    other.eval()
    assert export.check_parity(exported, onnx_model.SerializeToString(), config).failures() == []
    problems = export.check_parity(other, onnx_model.SerializeToString(), config).failures()
    assert problems and "of max |heatmap|" in problems[0]


def test_checkpoint_of_another_config_is_refused_and_nothing_is_overwritten(peaked_checkpoint, tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous model")
    result = run_export("--config", "r50-256x192", "--checkpoint", str(peaked_checkpoint), "--out", str(out))
    assert result.returncode == 1
    assert str(peaked_checkpoint) in result.stderr
    assert "r18-256x192" in result.stderr and "r50-256x192" in result.stderr
    assert "Traceback" not in result.stderr
    assert out.read_bytes() == b"previous model"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint", "/nonexistent/ckpt.safetensors"], "/nonexistent/ckpt.safetensors: no such file"),
        (["--opset", "16"], "--opset: expected 17 or newer, got 16"),
    ],
)
def test_bad_arguments_are_refused(args, message, tmp_path):
    out = tmp_path / "model.onnx"
    result = run_export("--config", "r18-256x192", "--out", str(out), *args)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
