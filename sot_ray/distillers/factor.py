"""Factor transfer: Kim et al., "Paraphrasing Complex Network: Network Compression via Factor
Transfer", NeurIPS 2018.

A paraphraser (conv auto-encoder, compression k = 0.5) is first trained for 30 epochs to
reconstruct the teacher's last feature map; then it is frozen and a translator on the student's
map learns to produce the same normalised factors: ``feat_weight * mean |F(tr(f_s)) - F(enc(f_t))|``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Distiller, pool_to_match, register

RATE = 0.5
# students the reference pre-trains the paraphraser for with lr 0.01 (others: the model's lr)
_LOW_INIT_LR = {"resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
                "resnet8x4", "resnet32x4", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"}


def _conv_stack(channels: list[int], bn: bool, transpose: bool = False) -> nn.Sequential:
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    layers: list[nn.Module] = []
    for cin, cout in zip(channels[:-1], channels[1:]):
        layers += [conv(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout) if bn else nn.Identity(),
                   nn.LeakyReLU(0.1, inplace=True)]
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    def __init__(self, channels: int, rate: float = RATE):
        super().__init__()
        mid = int(channels * rate)
        self.encoder = _conv_stack([channels, channels, mid, mid], bn=False)
        self.decoder = _conv_stack([mid, mid, channels, channels], bn=False, transpose=True)

    def forward(self, f):
        factor = self.encoder(f)
        return factor, self.decoder(factor)


def translator(s_channels: int, t_channels: int, rate: float = RATE) -> nn.Sequential:
    mid = int(t_channels * rate)
    return _conv_stack([s_channels, s_channels, mid, mid], bn=True)


def factor(f: torch.Tensor) -> torch.Tensor:
    return F.normalize(f.pow(2).mean(1).flatten(1))


def ft_loss(factor_s: torch.Tensor, factor_t: torch.Tensor) -> torch.Tensor:
    factor_s, factor_t = pool_to_match(factor_s, factor_t)
    return (factor(factor_s) - factor(factor_t)).abs().mean()


@register("ft", ce=1.0, kd=0.0, feat=200.0,
          summary="factor transfer; paraphraser pre-trained 30 epochs, then translator")
class FactorTransfer(Distiller):
    init_epochs = 30
    init_only = ("paraphraser",)

    def __init__(self, student, teacher, weights, ctx):
        super().__init__(student, teacher, weights, ctx)
        self.paraphraser = Paraphraser(ctx.t_feats[-2][1])
        self.translator = translator(ctx.s_feats[-2][1], ctx.t_feats[-2][1])
        self._low_lr = ctx.student_name in _LOW_INIT_LR

    def init_lr(self, base_lr):
        return 0.01 if self._low_lr else base_lr

    def init_parameters(self):
        return list(self.paraphraser.parameters())

    def init_modules(self):
        return [self.paraphraser]

    def init_loss(self, x):
        with torch.no_grad():
            f_t = self.teacher(x).feats[-2]
        return F.mse_loss(self.paraphraser(f_t)[1], f_t)

    def feat_loss(self, s_out, t_out, y, index):
        with torch.no_grad():  # the paraphraser is frozen after its stage
            f_t = self.paraphraser.encoder(t_out.feats[-2])
        return ft_loss(self.translator(s_out.feats[-2]), f_t)
