"""PoseNet: parameter counts and output shapes of every config."""
import numpy as np
import pytest

paddle = pytest.importorskip("paddle", reason="the training side needs PaddlePaddle: pip install -e '.[train]'")

from train.model import CONFIGS, PoseNet, build_model, get_config  # noqa: E402

# All parameters incl. BatchNorm statistics, as paddle.summary counts them (Paddle keeps the running
# statistics as non-trainable parameters, so the built network's parameters include them). r50 is the
# tutorial's printed summary; the others were measured with this code and pin the architecture down.
PARAMETERS = {
    "r18-256x192": 15_387_857,
    "r50-256x192": 34_054_353,
    "r50-384x288": 34_054_353,   # the tutorial's summary: 34,054,353 total params
    "r101-384x288": 53_098_705,
    "r152-384x288": 68_788_433,
}


def parameter_count(network):
    """Elements of every parameter of the built network, BatchNorm running statistics included."""
    return sum(int(np.prod(parameter.shape)) for parameter in network.parameters())


def test_every_config_has_a_parameter_count():
    assert set(PARAMETERS) == set(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parameter_count_and_output_shape(name):
    # one test per config: building the big ResNets dominates the time
    config = get_config(name)
    model = build_model(config)
    assert parameter_count(model) == PARAMETERS[name]
    model.eval()
    height, width = config.input_size
    with paddle.no_grad():
        heatmaps = model(paddle.randn([2, 3, height, width]))
    assert tuple(heatmaps.shape) == (2, 17, height // 4, width // 4)
    assert config.heatmap_size == (height // 4, width // 4)
    assert np.isfinite(heatmaps.numpy()).all()


def test_resnet34_parameter_count():
    # no named config, but PoseNet accepts every paddle.vision ResNet depth
    assert parameter_count(PoseNet(depth=34)) == 25_503_441


def test_head_is_three_deconvolutions_and_a_1x1_conv():
    model = PoseNet(depth=18)
    kinds = [type(layer).__name__ for layer in model.upLayers]
    assert kinds == ["Conv2DTranspose", "BatchNorm2D", "ReLU"] * 3 + ["Conv2D"]
    deconv = model.upLayers[0]
    assert deconv.weight.shape == [512, 256, 4, 4] and deconv.bias is None  # (in, out, kh, kw), no bias
    assert model.upLayers[9].weight.shape == [17, 256, 1, 1]


def test_head_init_is_the_tutorials_normal_0_001():
    paddle.seed(1)
    weights = PoseNet(depth=18).upLayers[0].weight.numpy()
    assert abs(weights.std() - 0.001) < 1e-4 and abs(weights.mean()) < 1e-4


def test_unknown_config_and_depth_are_refused():
    with pytest.raises(ValueError, match="config: expected one of"):
        get_config("r50-999x1")
    with pytest.raises(ValueError, match="depth: expected one of"):
        PoseNet(depth=42)
