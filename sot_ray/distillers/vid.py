"""Variational information distillation: Ahn et al., "Variational Information Distillation for
Knowledge Transfer", CVPR 2019."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Distiller, pool_to_match, register


class VIDTerm(nn.Module):
    """Gaussian likelihood of the teacher map under a regressor of the student map with a learned
    per-channel variance: ``mean 0.5 * ((mu(f_s) - f_t)^2 / var + log var)``."""

    def __init__(self, s_ch: int, t_ch: int, mid: int, init_var: float = 5.0, eps: float = 1e-5):
        super().__init__()
        self.regressor = nn.Sequential(
            nn.Conv2d(s_ch, mid, 1, bias=False), nn.ReLU(),
            nn.Conv2d(mid, mid, 1, bias=False), nn.ReLU(),
            nn.Conv2d(mid, t_ch, 1, bias=False),
        )
        self.log_scale = nn.Parameter(torch.full((t_ch,), math.log(math.exp(init_var - eps) - 1.0)))
        self.eps = eps

    def forward(self, f_s, f_t):
        f_s, f_t = pool_to_match(f_s, f_t)
        mean = self.regressor(f_s)
        var = (F.softplus(self.log_scale) + self.eps).view(1, -1, 1, 1)
        return (0.5 * ((mean - f_t).pow(2) / var + torch.log(var))).mean()


@register("vid", ce=1.0, kd=0.0, feat=1.0, summary="variational information, per intermediate feature")
class VID(Distiller):
    def __init__(self, student, teacher, weights, ctx):
        super().__init__(student, teacher, weights, ctx)
        self.terms = nn.ModuleList(
            VIDTerm(s[1], t[1], t[1]) for s, t in zip(ctx.s_feats[1:-1], ctx.t_feats[1:-1])
        )

    def feat_loss(self, s_out, t_out, y, index):
        return sum(term(s, t) for term, s, t in zip(self.terms, s_out.feats[1:-1], t_out.feats[1:-1]))
