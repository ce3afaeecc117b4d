"""Correlation congruence: Peng et al., "Correlation Congruence for Knowledge Distillation", ICCV 2019."""

from __future__ import annotations

import torch

from .base import Distiller, Embed, register


def cc_loss(e_s: torch.Tensor, e_t: torch.Tensor) -> torch.Tensor:
    """RepDistiller's form: mean over consecutive pairs of sum_d |e_s - e_t|_i * |e_s - e_t|_(i+1)."""
    delta = (e_s - e_t).abs()
    return (delta[:-1] * delta[1:]).sum(1).mean()


@register("cc", ce=1.0, kd=0.0, feat=0.02, summary="correlation congruence on 128-d embeddings")
class CC(Distiller):
    def __init__(self, student, teacher, weights, ctx, dim: int = 128):
        super().__init__(student, teacher, weights, ctx)
        self.embed_s = Embed(ctx.s_feats[-1][1], dim)
        self.embed_t = Embed(ctx.t_feats[-1][1], dim)

    def feat_loss(self, s_out, t_out, y, index):
        return cc_loss(self.embed_s(s_out.feats[-1]), self.embed_t(t_out.feats[-1]))
