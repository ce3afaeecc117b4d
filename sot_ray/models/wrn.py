"""Wide residual networks (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016):
wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2, pre-activation blocks as in the RepDistiller zoo."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .base import ModelOutput, init_normal_fan_out_
from .registry import register


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if cin == cout else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        pre = self.bn1(x)  # the block's input before its ReLU: a "pre-activation feature"
        act = F.relu(pre)
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        # As in the reference, a projection shortcut reads the activated input.
        return out + (x if self.shortcut is None else self.shortcut(act)), pre


class _Group(nn.Sequential):
    def forward(self, x):
        first_pre = None
        for i, block in enumerate(self):
            x, pre = block(x)
            if i == 0:
                first_pre = pre
        return x, first_pre


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int = 100):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError("WRN depth must be 6n+4")
        n = (depth - 4) // 6
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        groups = []
        for i in range(3):
            stride = 1 if i == 0 else 2
            groups.append(_Group(*[
                _Block(ch[i] if j == 0 else ch[i + 1], ch[i + 1], stride if j == 0 else 1)
                for j in range(n)
            ]))
        self.block1, self.block2, self.block3 = groups
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch[3], num_classes)
        init_normal_fan_out_(self)

    def forward(self, x) -> ModelOutput:
        f0 = self.conv1(x)
        f1, _ = self.block1(f0)
        f2, p1 = self.block2(f1)  # p1 = block2's first BN applied to f1
        f3, p2 = self.block3(f2)
        p3 = self.bn1(f3)
        emb = self.pool(F.relu(p3)).flatten(1)
        return ModelOutput(self.fc(emb), [f0, f1, f2, f3, emb], [f0, p1, p2, p3, emb])


for _depth in (16, 40):
    for _widen in (1, 2):
        register(f"wrn_{_depth}_{_widen}", family="wrn")(
            lambda num_classes=100, _d=_depth, _w=_widen: WideResNet(_d, _w, num_classes)
        )
