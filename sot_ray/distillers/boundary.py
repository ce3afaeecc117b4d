"""Activation boundaries: Heo et al., "Knowledge Transfer via Distillation of Activation
Boundaries Formed by Hidden Neurons", AAAI 2019.

A two-stage method, as in the reference: an initialisation stage (30 epochs) trains the student's
feature layers and per-stage connectors so that the signs of the student's pre-activations match
the teacher's; the main stage is then plain CE (+ ``kd_weight`` KD), with the connectors frozen.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SotError
from .base import Distiller, conv_regressor, feature_parameters, register

MARGIN = 1.0


def ab_loss(g_s: list[torch.Tensor], g_t: list[torch.Tensor], margin: float = MARGIN) -> torch.Tensor:
    """Alternative squared hinge on activation boundaries, summed over stages.

    Per stage i of n: ``2^(i-n+1) * 3/1000 * sum[(s+m)^2 [s>-m, t<=0] + (s-m)^2 [s<=m, t>0]] / B``
    (later stages weigh more; the 3/1000 scale and the per-stage weights are the reference's).
    """
    n, bsz = len(g_s), g_s[0].shape[0]
    total = g_s[0].new_zeros(())
    for i, (s, t) in enumerate(zip(g_s, g_t)):
        off = (s + margin).pow(2) * ((s > -margin) & (t <= 0))
        on = (s - margin).pow(2) * ((s <= margin) & (t > 0))
        total = total + 2.0 ** (i - n + 1) * (off + on).sum() / bsz * 3 / 1000
    return total


@register("ab", ce=1.0, kd=0.0, feat=1.0,
          summary="activation boundaries; 30-epoch init stage, then CE (+kd) as the reference")
class ActivationBoundaries(Distiller):
    needs_preact = True
    init_epochs = 30
    init_only = ("connectors",)

    def __init__(self, student, teacher, weights, ctx):
        super().__init__(student, teacher, weights, ctx)
        s_shapes, t_shapes = ctx.s_preact[1:-1], ctx.t_preact[1:-1]
        if len(s_shapes) != len(t_shapes):
            raise SotError(f"ab needs as many stages in student and teacher "
                           f"({len(s_shapes)} vs {len(t_shapes)})")
        self.connectors = nn.ModuleList(
            nn.Identity() if s[1] == t[1] and s[2] == t[2] else conv_regressor(s, t, relu=False)
            for s, t in zip(s_shapes, t_shapes)
        )
        self._student_features = feature_parameters(student, ctx.input_size)

    def init_parameters(self):
        return list(self.connectors.parameters()) + self._student_features

    def init_modules(self):
        return [self.connectors, self.student]

    def init_loss(self, x):
        g_s = self.student(x).preact_feats[1:-1]
        with torch.no_grad():
            g_t = self.teacher(x).preact_feats[1:-1]
        return ab_loss([c(f) for c, f in zip(self.connectors, g_s)], g_t)
