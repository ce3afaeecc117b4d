"""Attention transfer: Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Distiller, pool_to_match, register


def attention_map(f: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    return F.normalize(f.pow(p).mean(1).flatten(1))


def at_loss(f_s: torch.Tensor, f_t: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    f_s, f_t = pool_to_match(f_s, f_t)
    return (attention_map(f_s, p) - attention_map(f_t, p)).pow(2).mean()


@register("at", ce=1.0, kd=0.0, feat=1000.0, summary="attention maps of intermediate features, p=2")
class AT(Distiller):
    """``loss = CE + feat_weight * sum_l mean (a(f_s^l) - a(f_t^l))^2`` over the intermediate
    features, with ``a(f) = normalize(mean_c f^2)``."""

    def feat_loss(self, s_out, t_out, y, index):
        return sum(at_loss(s, t) for s, t in zip(s_out.feats[1:-1], t_out.feats[1:-1]))
