"""ShuffleNet V1 (Zhang et al., CVPR 2018; groups 3) and ShuffleNet V2 (Ma et al., ECCV 2018;
width 1.0), the CIFAR variants of the RepDistiller zoo (1x1 stem, no max pooling)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import ModelOutput, Stage
from .registry import register


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
    return nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)


class _V1Unit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int):
        super().__init__()
        mid = cout // 4
        self.g1 = 1 if cin == 24 else groups  # the stem's 24 channels are not grouped
        self.stride = stride
        self.conv1, self.bn1 = _conv_bn(cin, mid, 1, groups=self.g1)
        self.conv2, self.bn2 = _conv_bn(mid, mid, 3, stride, groups=mid)
        self.conv3, self.bn3 = _conv_bn(mid, cout, 1, groups=groups)

    def forward(self, x):
        out = channel_shuffle(F.relu(self.bn1(self.conv1(x))), self.g1)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            pre = torch.cat([out, F.avg_pool2d(x, 3, 2, 1)], 1)
        else:
            pre = out + x
        return F.relu(pre), pre


class ShuffleNetV1(nn.Module):
    def __init__(self, num_classes: int = 100, widths=(240, 480, 960), counts=(4, 8, 4), groups=3):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(3, 24, 1)
        cin, stages = 24, []
        for w, n in zip(widths, counts):
            units = []
            for i in range(n):
                # a strided unit concatenates its pooled input, so its branch makes w - cin
                units.append(_V1Unit(cin, w - cin if i == 0 else w, 2 if i == 0 else 1, groups))
                cin = w
            stages.append(Stage(*units))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(cin, num_classes)
        # PyTorch's default initialisation, as in the reference files

    def forward(self, x) -> ModelOutput:
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, p1 = self.layer1(f0)
        f2, p2 = self.layer2(f1)
        f3, p3 = self.layer3(f2)
        emb = self.pool(f3).flatten(1)
        return ModelOutput(self.linear(emb), [f0, f1, f2, f3, emb], [f0, p1, p2, p3, emb])


class _V2Unit(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        c = channels // 2
        self.conv1, self.bn1 = _conv_bn(c, c, 1)
        self.conv2, self.bn2 = _conv_bn(c, c, 3, groups=c)
        self.conv3, self.bn3 = _conv_bn(c, c, 1)

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x2)))))
        branch_pre = self.bn3(self.conv3(out))
        out = channel_shuffle(torch.cat([x1, F.relu(branch_pre)], 1), 2)
        return out, torch.cat([x1, branch_pre], 1)


class _V2Down(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.conv1, self.bn1 = _conv_bn(cin, cin, 3, 2, groups=cin)
        self.conv2, self.bn2 = _conv_bn(cin, mid, 1)
        self.conv3, self.bn3 = _conv_bn(cin, mid, 1)
        self.conv4, self.bn4 = _conv_bn(mid, mid, 3, 2, groups=mid)
        self.conv5, self.bn5 = _conv_bn(mid, mid, 1)

    def forward(self, x):
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = self.bn4(self.conv4(F.relu(self.bn3(self.conv3(x)))))
        right = F.relu(self.bn5(self.conv5(right)))
        return channel_shuffle(torch.cat([left, right], 1), 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes: int = 100, widths=(116, 232, 464, 1024), counts=(3, 7, 3)):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(3, 24, 1)
        cin, stages = 24, []
        for w, n in zip(widths[:3], counts):
            stages.append(Stage(_V2Down(cin, w), *[_V2Unit(w) for _ in range(n)]))
            cin = w
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2, self.bn2 = _conv_bn(cin, widths[3], 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(widths[3], num_classes)
        # PyTorch's default initialisation, as in the reference files

    def forward(self, x) -> ModelOutput:
        f0 = F.relu(self.bn1(self.conv1(x)))
        f1, p1 = self.layer1(f0)
        f2, p2 = self.layer2(f1)
        f3, p3 = self.layer3(f2)
        emb = self.pool(F.relu(self.bn2(self.conv2(f3)))).flatten(1)
        return ModelOutput(self.linear(emb), [f0, f1, f2, f3, emb], [f0, p1, p2, p3, emb])


register("ShuffleV1", family="shufflenet", lr=0.01)(lambda num_classes=100: ShuffleNetV1(num_classes))
register("ShuffleV2", family="shufflenet", lr=0.01)(lambda num_classes=100: ShuffleNetV2(num_classes))
