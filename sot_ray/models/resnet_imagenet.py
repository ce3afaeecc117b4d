"""ImageNet-style ResNet18/34/50 with a 3x3 stem for small images (He et al., CVPR 2016),
as in RepDistiller's ``resnetv2``; adaptive pooling makes them take 32x32 and 64x64 alike."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .base import ModelOutput, Stage, init_he_fan_out_
from .registry import register


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(cin, planes, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        pre = self.bn2(self.conv2(out)) + self.shortcut(x)
        return F.relu(pre), pre


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = _shortcut(cin, planes * 4, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        pre = self.bn3(self.conv3(out)) + self.shortcut(x)
        return F.relu(pre), pre


class ImageNetResNet(nn.Module):
    def __init__(self, block, counts: tuple[int, int, int, int], num_classes: int = 100):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin, stages = 64, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, (1 if i == 0 else 2) if j == 0 else 1))
                cin = planes * block.expansion
            stages.append(Stage(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(cin, num_classes)
        init_he_fan_out_(self)

    def forward(self, x) -> ModelOutput:
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, p1 = self.layer1(f0)
        f2, p2 = self.layer2(f1)
        f3, p3 = self.layer3(f2)
        f4, p4 = self.layer4(f3)
        emb = self.pool(f4).flatten(1)
        return ModelOutput(self.linear(emb), [f0, f1, f2, f3, f4, emb], [f0, p1, p2, p3, p4, emb])


for _name, _block, _counts in (
    ("ResNet18", _Basic, (2, 2, 2, 2)),
    ("ResNet34", _Basic, (3, 4, 6, 3)),
    ("ResNet50", _Bottleneck, (3, 4, 6, 3)),
):
    register(_name, family="resnet", native_64=True)(
        lambda num_classes=100, _b=_block, _c=_counts: ImageNetResNet(_b, _c, num_classes)
    )
