"""CIFAR ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016):
resnet8 ... resnet110 and the 4x-wide resnet8x4 / resnet32x4 of the RepDistiller zoo."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .base import ModelOutput, Stage, init_he_fan_out_
from .registry import register


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        pre = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(pre), pre


class CifarResNet(nn.Module):
    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int = 100):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError("CIFAR ResNet depth must be 6n+2")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        stages = []
        for i, w in enumerate(widths[1:]):
            stride = 1 if i == 0 else 2
            blocks = [_Block(cin if j == 0 else w, w, stride if j == 0 else 1) for j in range(n)]
            stages.append(Stage(*blocks))
            cin = w
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        init_he_fan_out_(self)

    def forward(self, x) -> ModelOutput:
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, p1 = self.layer1(f0)
        f2, p2 = self.layer2(f1)
        f3, p3 = self.layer3(f2)
        emb = self.pool(f3).flatten(1)
        return ModelOutput(self.fc(emb), [f0, f1, f2, f3, emb], [f0, p1, p2, p3, emb])


def _add(name: str, depth: int, widths):
    register(name, family="resnet")(lambda num_classes=100: CifarResNet(depth, widths, num_classes))


for _d in (8, 14, 20, 32, 44, 56, 110):
    _add(f"resnet{_d}", _d, (16, 16, 32, 64))
_add("resnet8x4", 8, (32, 64, 128, 256))
_add("resnet32x4", 32, (32, 64, 128, 256))
