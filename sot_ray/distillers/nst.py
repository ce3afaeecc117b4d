"""Neuron selectivity transfer: Huang & Wang, "Like What You Like: Knowledge Distill via Neuron
Selectivity Transfer", arXiv 2017 (polynomial kernel, d=2, c=0)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Distiller, pool_to_match, register


def _poly(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.unsqueeze(1) * b.unsqueeze(2)).sum(-1).pow(2)


def nst_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """MMD^2 between channel-wise spatial activation distributions (polynomial kernel)."""
    f_s, f_t = pool_to_match(f_s, f_t)
    f_s = F.normalize(f_s.flatten(2), dim=2)
    f_t = F.normalize(f_t.flatten(2), dim=2)
    return _poly(f_t, f_t).mean().detach() + _poly(f_s, f_s).mean() - 2 * _poly(f_s, f_t).mean()


@register("nst", ce=1.0, kd=0.0, feat=50.0, summary="neuron selectivity transfer, polynomial kernel")
class NST(Distiller):
    def feat_loss(self, s_out, t_out, y, index):
        return sum(nst_loss(s, t) for s, t in zip(s_out.feats[1:-1], t_out.feats[1:-1]))
