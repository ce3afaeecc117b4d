"""Logit-only methods: the CE baseline (``none``), KD, and DKD."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Distiller, register


@register("none", ce=1.0, summary="plain cross-entropy student (the baseline row)")
class NoDistill(Distiller):
    """No distillation: ``loss = CE(s, y)``; the teacher is only used for agreement metrics."""

    def forward(self, x, y, index):
        s = self.student(x).logits
        return s, {"loss/ce": self.w.ce * F.cross_entropy(s, y)}


@register("kd", ce=0.1, kd=0.9, summary="Hinton KD, T=4")
class KD(Distiller):
    """Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", NIPS-W 2015.
    ``loss = ce_weight * CE + kd_weight * T^2 KL(softmax(t/T) || softmax(s/T))``."""


def dkd_loss(s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, alpha: float, beta: float,
             T: float) -> torch.Tensor:
    """Decoupled KD: alpha * TCKD (binary target/non-target KL) + beta * NCKD (KL over the
    non-target classes), each scaled by T^2 and summed / batch."""
    gt = F.one_hot(y, s.shape[1]).bool()
    p_s = F.softmax(s / T, dim=1)
    p_t = F.softmax(t / T, dim=1)
    b_s = torch.stack([(p_s * gt).sum(1), (p_s * ~gt).sum(1)], dim=1)
    b_t = torch.stack([(p_t * gt).sum(1), (p_t * ~gt).sum(1)], dim=1)
    n = s.shape[0]
    tckd = F.kl_div(torch.log(b_s), b_t, reduction="sum") * T * T / n
    log_q_s = F.log_softmax(s / T - 1000.0 * gt, dim=1)
    q_t = F.softmax(t / T - 1000.0 * gt, dim=1)
    nckd = F.kl_div(log_q_s, q_t, reduction="sum") * T * T / n
    return alpha * tckd + beta * nckd


@register("dkd", ce=1.0, kd=0.0, feat=1.0, summary="decoupled KD (alpha 1, beta 8, T 4, 20-epoch warm-up)")
class DKD(Distiller):
    """Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022.
    ``loss = CE + min(epoch / warmup, 1) * (alpha TCKD + beta NCKD)``."""

    alpha, beta, warmup = 1.0, 8.0, 20
    # mdistiller's settings use beta 6 for these teacher/student pairs
    BETA6 = {("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("vgg13", "vgg8"),
             ("vgg13", "MobileNetV2")}

    def __init__(self, student, teacher, weights, ctx):
        super().__init__(student, teacher, weights, ctx)
        if (ctx.teacher_name, ctx.student_name) in self.BETA6:
            self.beta = 6.0

    def feat_loss(self, s_out, t_out, y, index):
        ramp = min(self.epoch / self.warmup, 1.0)
        return ramp * dkd_loss(s_out.logits, t_out.logits, y, self.alpha, self.beta, self.w.temperature)
