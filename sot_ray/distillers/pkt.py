"""Probabilistic knowledge transfer: Passalis & Tefas, "Learning Deep Representations with
Probabilistic Knowledge Transfer", ECCV 2018."""

from __future__ import annotations

import torch

from .base import Distiller, register


def _conditional(e: torch.Tensor, eps: float) -> torch.Tensor:
    e = e / (e.pow(2).sum(1, keepdim=True).sqrt() + eps)
    e = torch.nan_to_num(e, nan=0.0)
    sim = (e @ e.t() + 1.0) / 2.0  # cosine similarity moved to [0, 1]
    return sim / sim.sum(1, keepdim=True)


def pkt_loss(f_s: torch.Tensor, f_t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    p_s, p_t = _conditional(f_s.flatten(1), eps), _conditional(f_t.flatten(1), eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


@register("pkt", ce=1.0, kd=0.0, feat=30000.0, summary="probabilistic knowledge transfer on the embedding")
class PKT(Distiller):
    def feat_loss(self, s_out, t_out, y, index):
        return pkt_loss(s_out.feats[-1], t_out.feats[-1])
