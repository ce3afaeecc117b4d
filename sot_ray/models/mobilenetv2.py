"""MobileNetV2 (Sandler et al., CVPR 2018) at width 0.5, expansion 6, for 32x32 inputs, as in
the RepDistiller zoo (``mobile_half``); registered as ``MobileNetV2``."""

from __future__ import annotations

from torch import nn

from .base import ModelOutput, init_normal_fan_out_
from .registry import register


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            *_conv_bn_relu(cin, mid, 1, 1),
            *_conv_bn_relu(mid, mid, 3, stride, groups=mid),
            nn.Conv2d(mid, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    # expansion t, channels c, repeats n, first stride s
    SETTING = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 100, width: float = 0.5, expand: int = 6):
        super().__init__()
        cin = int(32 * width)
        self.conv1 = nn.Sequential(*_conv_bn_relu(3, cin, 3, 2))
        blocks = []
        for t, c, n, s in self.SETTING:
            cout = int(c * width)
            layers = []
            for i in range(n):
                layers.append(_InvertedResidual(cin, cout, s if i == 0 else 1, expand if t != 1 else 1))
                cin = cout
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        last = int(1280 * width) if width > 1.0 else 1280
        self.conv2 = nn.Sequential(*_conv_bn_relu(cin, last, 1, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)
        init_normal_fan_out_(self, linear_std=0.01)

    def forward(self, x) -> ModelOutput:
        f0 = self.conv1(x)
        out = self.blocks[1](self.blocks[0](f0))
        f1 = out
        f2 = out = self.blocks[2](out)
        f3 = out = self.blocks[4](self.blocks[3](out))
        f4 = out = self.blocks[6](self.blocks[5](out))
        emb = self.pool(self.conv2(out)).flatten(1)
        feats = [f0, f1, f2, f3, f4, emb]
        # The stage outputs end on BN already (linear bottlenecks): pre- and post- coincide.
        return ModelOutput(self.classifier(emb), feats, list(feats))


register("MobileNetV2", family="mobilenet", lr=0.01)(
    lambda num_classes=100: MobileNetV2(num_classes)
)
