"""PoseNet: the tutorial's SimpleBaselines network (ResNet backbone, 3 deconvolutions, 1x1 conv)."""
from dataclasses import dataclass

import paddle
from paddle import nn
from paddle.vision.models import resnet

_RESNETS = {
    18: (resnet.resnet18, 512),
    34: (resnet.resnet34, 512),
    50: (resnet.resnet50, 2048),
    101: (resnet.resnet101, 2048),
    152: (resnet.resnet152, 2048),
}


@dataclass(frozen=True)
class PoseConfig:
    """A named model + data configuration. Sizes are (H, W)."""

    name: str
    depth: int                      # ResNet depth
    input_size: tuple               # (H, W); the tutorial's IMAGE_SIZE = [288, 384] is [W, H]
    sigma: float                    # target Gaussian, heatmap px: 2 at 64x48, 3 at 96x72 (the tutorial's)
    num_keypoints: int = 17
    deconv_channels: int = 256      # SimpleBaselines' head width
    batch_size: int = 32            # per device; the tutorial's 128 fits only big GPUs
    epochs: int = 140               # the tutorial's schedule
    lr: float = 1e-3                # the tutorial's Adam rate
    lr_steps: tuple = (0.6, 0.85)   # x0.1 at these fractions of the epochs (the tutorial's piecewise decay)

    @property
    def heatmap_size(self):
        return (self.input_size[0] // 4, self.input_size[1] // 4)

    @property
    def architecture(self):
        return f"pose_resnet{self.depth}"


CONFIGS = {
    c.name: c
    for c in (
        PoseConfig("r50-384x288", 50, (384, 288), sigma=3.0),
        PoseConfig("r50-256x192", 50, (256, 192), sigma=2.0),
        PoseConfig("r18-256x192", 18, (256, 192), sigma=2.0, batch_size=64),
        PoseConfig("r101-384x288", 101, (384, 288), sigma=3.0),
        PoseConfig("r152-384x288", 152, (384, 288), sigma=3.0),
    )
}


def get_config(name):
    if name not in CONFIGS:
        raise ValueError(f"config: expected one of {sorted(CONFIGS)}, got {name!r}")
    return CONFIGS[name]


class PoseNet(nn.Layer):
    """ResNet without avgpool/fc, then 3 x [Conv2DTranspose 4x4/2, BN, ReLU], then a 1x1 conv to K heatmaps.

    Sub-layer names follow the tutorial (`backbone`, `upLayers`) so its legacy-weight mapping applies.
    """

    def __init__(self, depth=50, num_keypoints=17, deconv_channels=256):
        super().__init__()
        if depth not in _RESNETS:
            raise ValueError(f"depth: expected one of {sorted(_RESNETS)}, got {depth!r}")
        build, channels = _RESNETS[depth]
        backbone = build(pretrained=False)
        # conv1 bn1 relu maxpool layer1..4 (drop avgpool, fc)
        self.backbone = nn.Sequential(*list(backbone.children())[:-2])
        init = paddle.ParamAttr(initializer=nn.initializer.Normal(0.0, 0.001))
        layers = []
        for _ in range(3):
            layers += [
                nn.Conv2DTranspose(channels, deconv_channels, 4, stride=2, padding=1,
                                   weight_attr=init, bias_attr=False),
                # momentum 0.9 is Paddle's convention for PyTorch's 0.1
                nn.BatchNorm2D(deconv_channels, momentum=0.9),
                nn.ReLU(),
            ]
            channels = deconv_channels
        layers.append(nn.Conv2D(channels, num_keypoints, 1,
                                weight_attr=paddle.ParamAttr(initializer=nn.initializer.Normal(0.0, 0.001)),
                                bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0))))
        self.upLayers = nn.Sequential(*layers)

    def forward(self, image):
        # (N, 3, H, W) -> (N, C, H/32, W/32) -> (N, K, H/4, W/4)
        return self.upLayers(self.backbone(image))


def build_model(config):
    return PoseNet(config.depth, config.num_keypoints, config.deconv_channels)
