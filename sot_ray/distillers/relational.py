"""Relational KD: Park et al., "Relational Knowledge Distillation", CVPR 2019 (distance and angle)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Distiller, register


def pairwise_distance(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    sq = e.pow(2).sum(1)
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


def _angles(e: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()


def rkd_loss(f_s: torch.Tensor, f_t: torch.Tensor, w_dist: float = 25.0, w_angle: float = 50.0):
    s, t = f_s.flatten(1), f_t.flatten(1)
    with torch.no_grad():
        t_d = pairwise_distance(t)
        t_d = t_d / t_d[t_d > 0].mean()
        t_a = _angles(t)
    s_d = pairwise_distance(s)
    s_d = s_d / s_d[s_d > 0].mean()
    return w_dist * F.smooth_l1_loss(s_d, t_d) + w_angle * F.smooth_l1_loss(_angles(s), t_a)


@register("rkd", ce=1.0, kd=0.0, feat=1.0, summary="distance (25) and angle (50) on the embedding")
class RKD(Distiller):
    def feat_loss(self, s_out, t_out, y, index):
        return rkd_loss(s_out.feats[-1], t_out.feats[-1])
