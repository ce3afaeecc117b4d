"""Flow of solution procedure: Yim et al., "A Gift from Knowledge Distillation: Fast
Optimization, Network Minimization and Transfer Learning", CVPR 2017.

Two stages, as in the reference: a 30-epoch initialisation stage fits the student's FSP matrices
(Gram matrices between consecutive feature maps) to the teacher's; the main stage is then plain
CE (+ ``kd_weight`` KD). FSP needs equal channel counts stage by stage.
"""

from __future__ import annotations

import torch

from ..errors import SotError
from .base import Distiller, feature_parameters, pool_to_match, register


def fsp_matrices(feats: list[torch.Tensor]) -> list[torch.Tensor]:
    """``G[b, i, j] = mean_hw top[b, i, h, w] * bottom[b, j, h, w]`` for consecutive maps (the
    larger map is average-pooled to the smaller one's size)."""
    out = []
    for bottom, top in zip(feats[:-1], feats[1:]):
        bottom, top = pool_to_match(bottom, top)
        out.append(torch.einsum("bihw,bjhw->bij", top, bottom) / (top.shape[2] * top.shape[3]))
    return out


def fsp_loss(s_feats: list[torch.Tensor], t_feats: list[torch.Tensor]) -> torch.Tensor:
    """Sum over consecutive pairs of the mean squared difference of the FSP matrices."""
    return sum((gs - gt).pow(2).mean() for gs, gt in zip(fsp_matrices(s_feats), fsp_matrices(t_feats)))


@register("fsp", ce=1.0, kd=0.0, feat=50.0,
          summary="flow of solution procedure; 30-epoch init stage, then CE (+kd) as the reference")
class FSP(Distiller):
    init_epochs = 30

    def __init__(self, student, teacher, weights, ctx):
        super().__init__(student, teacher, weights, ctx)
        s_c = [s[1] for s in ctx.s_feats[:-1]]
        t_c = [t[1] for t in ctx.t_feats[:-1]]
        if s_c != t_c:
            raise SotError(f"fsp needs equal channels at every stage (student {s_c}, teacher {t_c})")
        self._student_features = feature_parameters(student, ctx.input_size)

    def init_parameters(self):
        return self._student_features

    def init_modules(self):
        return [self.student]

    def init_loss(self, x):
        s = self.student(x).feats[:-1]
        with torch.no_grad():
            t = self.teacher(x).feats[:-1]
        return fsp_loss(s, t)
