"""FitNet hints: Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..errors import SotError
from .base import Distiller, register

HINT_LAYER = 2


def conv_regressor(s_shape, t_shape) -> nn.Module:
    """Maps the student's hint-layer map onto the teacher's shape (RepDistiller's ConvReg)."""
    _, s_c, s_h, s_w = s_shape
    _, t_c, t_h, t_w = t_shape
    if s_h == 2 * t_h:
        conv = nn.Conv2d(s_c, t_c, 3, stride=2, padding=1)
    elif s_h * 2 == t_h:
        conv = nn.ConvTranspose2d(s_c, t_c, 4, stride=2, padding=1)
    elif s_h >= t_h:
        conv = nn.Conv2d(s_c, t_c, (1 + s_h - t_h, 1 + s_w - t_w))
    else:
        raise SotError(f"fitnet cannot connect a {s_h}x{s_w} student hint to a {t_h}x{t_w} teacher map")
    return nn.Sequential(conv, nn.BatchNorm2d(t_c), nn.ReLU(inplace=True))


@register("fitnet", ce=1.0, kd=0.0, feat=100.0, summary="hint on the 3rd feature via a conv regressor")
class FitNet(Distiller):
    """``loss = CE + feat_weight * MSE(regressor(f_s[2]), f_t[2])``."""

    def __init__(self, student, teacher, weights, ctx):
        super().__init__(student, teacher, weights, ctx)
        self.regressor = conv_regressor(ctx.s_feats[HINT_LAYER], ctx.t_feats[HINT_LAYER])

    def feat_loss(self, s_out, t_out, y, index):
        return F.mse_loss(self.regressor(s_out.feats[HINT_LAYER]), t_out.feats[HINT_LAYER])
