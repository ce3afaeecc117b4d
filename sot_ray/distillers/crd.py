"""Contrastive representation distillation: Tian, Krishnan, Isola, "Contrastive Representation
Distillation", ICLR 2020. NCE over a momentum memory of 128-d embeddings, 16384 negatives drawn
from other classes, temperature 0.07, momentum 0.5.

The memory and the negative sampling live here, as module buffers; the trainer has no CRD
branch. Memory: two float32 tables of (num_train, 128), i.e. 1,024 bytes per training sample:
46 MB for CIFAR-100's 45,000 training images, 92 MB for Tiny-ImageNet's 90,000.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..distributed import all_reduce_, gather_cat
from ..errors import SotError
from .base import Distiller, Embed, register

NCE_EPS = 1e-7


def nce_loss(scores: torch.Tensor, num_data: int) -> torch.Tensor:
    """NCE with a uniform noise distribution; ``scores`` (b, K+1): positive first, then K negatives."""
    b, m = scores.shape[0], scores.shape[1] - 1
    noise = m / num_data
    log_d1 = torch.log(scores[:, 0] / (scores[:, 0] + noise + NCE_EPS))
    log_d0 = torch.log(noise / (scores[:, 1:] + noise + NCE_EPS))
    return -(log_d1.sum() + log_d0.sum()) / b


class ContrastMemory(nn.Module):
    def __init__(self, dim: int, num_data: int, k: int, temperature: float, momentum: float,
                 gen: torch.Generator):
        super().__init__()
        std = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("memory_s", torch.rand(num_data, dim, generator=gen) * 2 * std - std)
        self.register_buffer("memory_t", torch.rand(num_data, dim, generator=gen) * 2 * std - std)
        # normalisation constants, fixed from the first batch as in the reference (-1: unset)
        self.register_buffer("z", torch.full((2,), -1.0))
        self.k, self.temperature, self.momentum, self.num_data = k, temperature, momentum, num_data

    def forward(self, e_s, e_t, index, candidates):
        b = e_s.shape[0]
        w_s = self.memory_s[candidates.flatten()].view(b, -1, e_s.shape[1])
        w_t = self.memory_t[candidates.flatten()].view(b, -1, e_s.shape[1])
        out_t = torch.exp(torch.bmm(w_s, e_t.unsqueeze(2)).squeeze(2) / self.temperature)
        out_s = torch.exp(torch.bmm(w_t, e_s.unsqueeze(2)).squeeze(2) / self.temperature)
        if self.z[0] < 0:
            self.z[0] = out_s.mean().detach() * self.num_data
            self.z[1] = out_t.mean().detach() * self.num_data
            all_reduce_(self.z, average=True)  # data-parallel: one constant on every rank
        out_s, out_t = out_s / self.z[0], out_t / self.z[1]
        with torch.no_grad():  # data-parallel: every rank's batch updates every rank's memory
            index = gather_cat(index)
            for mem, e in ((self.memory_s, e_s), (self.memory_t, e_t)):
                e = gather_cat(e.detach())
                pos = mem[index] * self.momentum + e * (1 - self.momentum)
                mem.index_copy_(0, index, pos / pos.pow(2).sum(1, keepdim=True).sqrt())
        return out_s, out_t


class NegativeSampler(nn.Module):
    """Draws, for each anchor, K indices uniformly among the training samples of other classes
    (RepDistiller's 'exact' mode), with vectorised index arithmetic."""

    def __init__(self, targets: torch.Tensor, k: int, seed: int = 0):
        super().__init__()
        order = torch.argsort(targets, stable=True)
        counts = torch.bincount(targets)
        starts = torch.cumsum(counts, 0) - counts
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("counts", counts, persistent=False)
        self.register_buffer("starts", starts, persistent=False)
        self.register_buffer("targets", targets.clone(), persistent=False)
        self.k = k
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        y = self.targets[index]
        pool = (len(self.order) - self.counts[y]).unsqueeze(1)  # samples of other classes
        u = torch.rand(len(index), self.k, generator=self.gen).to(index.device)
        r = (u * pool).long().clamp_max(pool - 1)
        start = self.starts[y].unsqueeze(1)
        r = torch.where(r >= start, r + self.counts[y].unsqueeze(1), r)  # skip the own class
        return torch.cat([index.unsqueeze(1), self.order[r]], dim=1)


@register("crd", ce=1.0, kd=0.0, feat=0.8, summary="contrastive, 16384 negatives, T 0.07, momentum 0.5")
class CRD(Distiller):
    nce_k, nce_t, nce_m, dim = 16384, 0.07, 0.5, 128

    def __init__(self, student, teacher, weights, ctx):
        super().__init__(student, teacher, weights, ctx)
        if ctx.train_targets is None:
            raise SotError("crd needs the training labels to sample negatives")
        others = ctx.num_train - int(torch.bincount(ctx.train_targets).max())
        k = min(self.nce_k, others)
        if k < 1:
            raise SotError("crd needs training samples of at least two classes")
        self.embed_s = Embed(ctx.s_feats[-1][1], self.dim)
        self.embed_t = Embed(ctx.t_feats[-1][1], self.dim)
        gen = torch.Generator().manual_seed(0)
        self.memory = ContrastMemory(self.dim, ctx.num_train, k, self.nce_t, self.nce_m, gen)
        self.sampler = NegativeSampler(ctx.train_targets, k)

    def feat_loss(self, s_out, t_out, y, index):
        if not self.training:
            return None
        candidates = self.sampler(index)
        e_s, e_t = self.embed_s(s_out.feats[-1]), self.embed_t(t_out.feats[-1])
        out_s, out_t = self.memory(e_s, e_t, index, candidates)
        n = self.memory.num_data
        return nce_loss(out_s, n) + nce_loss(out_t, n)


@register("crd+kd", ce=1.0, kd=1.0, feat=0.8, summary="CRD plus Hinton KD (kd_weight 1)")
class CRDKD(CRD):
    pass
