"""VGG with batch norm and no fully connected stack (Simonyan & Zisserman, ICLR 2015), as the
RepDistiller zoo uses it: vgg8, vgg11, vgg13, vgg16, vgg19. 64x64 inputs take one more pooling."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .base import ModelOutput, init_normal_fan_out_
from .registry import register

_CFG = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


def _block(widths: list[int], cin: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        cin = w
    return nn.Sequential(*layers[:-1])  # the block ends on BN: its output is pre-activation


class VGG(nn.Module):
    def __init__(self, cfg: list[list[int]], num_classes: int = 100):
        super().__init__()
        cins = [3] + [c[-1] for c in cfg[:-1]]
        self.block0, self.block1, self.block2, self.block3, self.block4 = (
            _block(c, cin) for c, cin in zip(cfg, cins)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cfg[-1][-1], num_classes)
        init_normal_fan_out_(self, linear_std=0.01)

    def forward(self, x) -> ModelOutput:
        big = x.shape[2] >= 64
        f0 = F.relu(self.block0(x))
        p1 = self.block1(F.max_pool2d(f0, 2))
        f1 = F.relu(p1)
        p2 = self.block2(F.max_pool2d(f1, 2))
        f2 = F.relu(p2)
        p3 = self.block3(F.max_pool2d(f2, 2))
        f3 = F.relu(p3)
        p4 = self.block4(F.max_pool2d(f3, 2) if big else f3)
        f4 = F.relu(p4)
        emb = self.pool(f4).flatten(1)
        return ModelOutput(
            self.classifier(emb), [f0, f1, f2, f3, f4, emb], [f0, p1, p2, p3, p4, emb]
        )


for _name, _cfg in _CFG.items():
    register(_name, family="vgg", native_64=True)(
        lambda num_classes=100, _c=_cfg: VGG(_c, num_classes)
    )
