"""The Lipschitz penalty of SoTeacher.

Dong, Liu, Shang, "Toward Student-Oriented Teacher Network Training for Knowledge
Distillation", ICLR 2024. ``Lip(model) = sum_conv |W|_1 + sum_bn max_c |g_c|/sqrt(var_c+eps)
+ sum_linear max_j sum_i |W_ij|``, over leaf modules, biases excluded.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd


class LipschitzPenalty(nn.Module):
    """An upper-bound proxy of the network's Lipschitz constant, as the reference computes it.

    The leaf modules are found once at construction; each call evaluates the whole sum with a
    handful of batched tensor ops (one foreach L1 norm over all kernels, one segmented max over
    all batch-norm channels) instead of a Python loop per module. The model is held by reference,
    not registered as a submodule, so it is neither saved twice nor moved twice.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        leaves = [m for m in model.modules() if not any(True for _ in m.children())]
        self._convs = [m for m in leaves if isinstance(m, _ConvNd)]
        self._bns = [m for m in leaves if isinstance(m, _BatchNorm) and m.weight is not None]
        self._linears = [m for m in leaves if isinstance(m, nn.Linear)]
        sizes = [bn.num_features for bn in self._bns]
        self.register_buffer(
            "_bn_segment",
            torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))
            if sizes else torch.zeros(0, dtype=torch.long),
            persistent=False,
        )

    def forward(self) -> torch.Tensor:
        terms = []
        if self._convs:
            norms = torch._foreach_norm([m.weight for m in self._convs], 1)
            terms.append(torch.stack(norms).sum())
        if self._bns:
            gamma = torch.cat([bn.weight for bn in self._bns])
            var = torch.cat([
                bn.running_var if bn.running_var is not None else torch.ones_like(bn.weight)
                for bn in self._bns
            ])
            eps = torch.cat([torch.full_like(bn.weight, bn.eps) for bn in self._bns]).detach()
            ratio = gamma.abs() / torch.sqrt(var + eps)
            seg = self._bn_segment.to(ratio.device)
            maxima = ratio.new_zeros(len(self._bns)).scatter_reduce(
                0, seg, ratio, reduce="amax", include_self=False
            )
            terms.append(maxima.sum())
        for lin in self._linears:
            terms.append(lin.weight.abs().sum(dim=0).max())
        if not terms:
            return torch.zeros(())
        return torch.stack(terms).sum()
