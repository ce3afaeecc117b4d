"""The feature contract every model of the zoo keeps."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class ModelOutput(NamedTuple):
    """What one forward call returns.

    ``feats`` are the intermediate feature maps from the stem to the pooled embedding (the last
    entry is the vector the classifier reads); ``preact_feats`` are the same stages taken before
    their final ReLU, where the architecture has one (the reference zoo's ``preact=True``).
    """

    logits: torch.Tensor
    feats: list[torch.Tensor]
    preact_feats: list[torch.Tensor]


class Stage(nn.Sequential):
    """A sequence of blocks that returns ``(output, pre-activation output)``.

    Blocks return ``(out, pre)`` where they end on a ReLU; a block that returns one tensor
    (e.g. a ShuffleNetV2 down-sampling unit) counts as its own pre-activation.
    """

    def forward(self, x):
        pre = x
        for block in self:
            out = block(x)
            x, pre = out if isinstance(out, tuple) else (out, out)
        return x, pre


def init_he_fan_out_(model: nn.Module) -> None:
    """He-normal (fan-out) convolutions, unit BN; used by the ResNet families."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_normal_fan_out_(model: nn.Module, linear_std: float | None = None) -> None:
    """N(0, 2/(k*k*out)) convolutions, unit BN, zero biases; optionally N(0, std) linear weights.

    The initialisation the WRN, VGG and MobileNetV2 reference files use.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)
