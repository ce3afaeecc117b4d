"""FitNet hints: Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015."""

from __future__ import annotations

import torch.nn.functional as F

from .base import Distiller, conv_regressor, register

HINT_LAYER = 2


@register("fitnet", ce=1.0, kd=0.0, feat=100.0, summary="hint on the 3rd feature via a conv regressor")
class FitNet(Distiller):
    """``loss = CE + feat_weight * MSE(regressor(f_s[2]), f_t[2])``."""

    def __init__(self, student, teacher, weights, ctx):
        super().__init__(student, teacher, weights, ctx)
        self.regressor = conv_regressor(ctx.s_feats[HINT_LAYER], ctx.t_feats[HINT_LAYER])

    def feat_loss(self, s_out, t_out, y, index):
        return F.mse_loss(self.regressor(s_out.feats[HINT_LAYER]), t_out.feats[HINT_LAYER])
