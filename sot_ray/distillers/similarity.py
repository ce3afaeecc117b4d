"""Similarity-preserving KD: Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Distiller, register


def sp_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    b = f_s.shape[0]
    g_s = F.normalize(f_s.flatten(1) @ f_s.flatten(1).t())
    g_t = F.normalize(f_t.flatten(1) @ f_t.flatten(1).t())
    return (g_t - g_s).pow(2).sum() / (b * b)


@register("sp", ce=1.0, kd=0.0, feat=3000.0, summary="similarity-preserving, second-to-last feature")
class SP(Distiller):
    """``loss = CE + feat_weight * |G_t - G_s|_F^2 / b^2`` with row-normalised batch Gram
    matrices of the second-to-last feature."""

    def feat_loss(self, s_out, t_out, y, index):
        return sp_loss(s_out.feats[-2], t_out.feats[-2])
