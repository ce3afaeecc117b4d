"""The consistency regularizer of SoTeacher (Dong, Liu, Shang, ICLR 2024).

``Consist(z, idx) = mean_batch sum_c (softmax(z)_c - q[idx]_c)^2`` against a per-sample bank
``q`` of predictions averaged over the augmented views of past epochs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather_cat


class ConsistencyRegularizer(nn.Module):
    """Per-sample running average of past predictions, used as a constant soft target.

    State (both buffers, so checkpoints and ``.to(device)`` carry them): ``bank`` of shape
    (num_samples, num_classes) and ``epochs_done``, the number of completed epochs.

    In the first epoch there is no loss and the bank takes the predictions as they are; in epoch
    ``e >= 2`` the new prediction enters with weight ``1/(e+1)``. This is the reference's update,
    which counts epoch 1 twice (after epoch 2 the bank is 2/3 p1 + 1/3 p2); kept for fidelity.
    """

    def __init__(self, num_samples: int, num_classes: int):
        super().__init__()
        self.register_buffer("bank", torch.zeros(num_samples, num_classes))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))

    @property
    def active(self) -> bool:
        return int(self.epochs_done) > 0

    def loss(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The unweighted consistency loss of a batch (zero in the first epoch)."""
        if not self.active:
            return logits.new_zeros(())
        probs = F.softmax(logits.float(), dim=1)
        return (probs - self.bank[index]).pow(2).sum(dim=1).mean()

    @torch.no_grad()
    def update(self, probs: torch.Tensor, index: torch.Tensor) -> None:
        """Move ``bank[index]`` toward ``probs`` (already detached and softmaxed)."""
        done = int(self.epochs_done)
        tau = 1.0 if done == 0 else 1.0 / (done + 2.0)  # epoch e = done + 1 -> 1/(e+1)
        rows = self.bank.index_select(0, index)
        self.bank.index_copy_(0, index, rows.mul_(1.0 - tau).add_(probs.to(rows.dtype), alpha=tau))

    def forward(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        loss = self.loss(logits, index)
        # data-parallel: every rank folds in every rank's batch, so the banks stay identical
        self.update(gather_cat(F.softmax(logits.detach().float(), dim=1)), gather_cat(index))
        return loss

    def end_epoch(self) -> None:
        self.epochs_done += 1

    def gap(self, probs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Mean squared distance between ``probs`` and the bank (a teacher proxy)."""
        return (probs - self.bank[index]).pow(2).sum(dim=1).mean()
