"""Classification metrics: accuracy, NLL, expected calibration error, KL from p*."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ece(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = 15) -> float:
    """Expected calibration error with equal-width confidence bins (Guo et al., ICML 2017)."""
    conf, pred = probs.max(dim=1)
    correct = (pred == targets).float()
    bins = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    total = torch.zeros(n_bins, dtype=torch.float64)
    count = torch.zeros(n_bins, dtype=torch.float64)
    gap = (conf - correct).double().cpu()
    b = bins.cpu()
    total.index_add_(0, b, gap)
    count.index_add_(0, b, torch.ones_like(gap))
    return float(total.abs().sum() / max(1, len(targets)))


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    logits = logits.float()
    probs = F.softmax(logits, dim=1)
    return {
        "acc": float((logits.argmax(1) == targets).float().mean() * 100.0),
        "nll": float(F.cross_entropy(logits, targets)),
        "ece": ece(probs, targets),
    }


def kl_from_pstar(p_star: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean over samples of KL(p* || softmax(logits))."""
    log_q = F.log_softmax(logits.float(), dim=1)
    p = p_star.to(log_q.device).float()
    kl = (p * (torch.log(p.clamp_min(1e-12)) - log_q)).sum(dim=1)
    return float(kl.mean())


@torch.no_grad()
def predict(model: torch.nn.Module, loader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, targets, indices) of a whole loader, in the model's eval mode."""
    was_training = model.training
    model.eval()
    outs, ys, idxs = [], [], []
    for x, y, i in loader:
        outs.append(model(x).logits.float())
        ys.append(y)
        idxs.append(i)
    model.train(was_training)
    return torch.cat(outs), torch.cat(ys), torch.cat(idxs)
