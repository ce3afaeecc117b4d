"""Knowledge-distillation methods, one file each, behind one registry.

``create_distiller`` sizes a method's modules from a dummy forward of student and teacher and
checks, before any training, that the method can serve the pair.
"""

from __future__ import annotations

import torch

from ..errors import SotError
# imported for their registrations, in the order `sot-ray methods` lists them
from . import (  # noqa: F401, I001
    logits, fitnet, attention, similarity, correlation, vid, relational, pkt, boundary, factor, fsp,
    nst, crd,
)
from .base import Context, Distiller, MethodSpec, Weights, get_method, kd_loss, list_methods


def create_distiller(method: str, student: torch.nn.Module, teacher: torch.nn.Module, *,
                     input_size: int, num_train: int, num_classes: int,
                     train_targets: torch.Tensor | None, student_name: str, teacher_name: str,
                     ce_weight: float | None = None, kd_weight: float | None = None,
                     feat_weight: float | None = None, temperature: float = 4.0) -> Distiller:
    spec = get_method(method)
    d = spec.defaults
    weights = Weights(
        ce=d.ce if ce_weight is None else ce_weight,
        kd=d.kd if kd_weight is None else kd_weight,
        feat=d.feat if feat_weight is None else feat_weight,
        temperature=temperature,
    )
    device = next(student.parameters()).device
    dummy = torch.zeros(2, 3, input_size, input_size, device=device)
    s_was = student.training
    student.eval()
    teacher.eval()
    with torch.no_grad():
        s_out, t_out = student(dummy), teacher(dummy)
    ctx = Context(
        s_feats=[f.shape for f in s_out.feats], t_feats=[f.shape for f in t_out.feats],
        s_preact=[f.shape for f in s_out.preact_feats], t_preact=[f.shape for f in t_out.preact_feats],
        num_train=num_train, num_classes=num_classes, train_targets=train_targets,
        student_name=student_name, teacher_name=teacher_name, input_size=input_size,
    )
    pair = f"{teacher_name} -> {student_name}"
    try:
        distiller = spec.cls(student, teacher, weights, ctx).to(device)
        distiller.eval()
        with torch.no_grad():  # the method's term on the dummy batch: shapes must connect
            distiller.feat_loss(s_out, t_out, torch.zeros(2, dtype=torch.long, device=device),
                                torch.zeros(2, dtype=torch.long, device=device))
            if distiller.init_epochs:
                distiller.init_loss(dummy)
    except SotError as exc:
        raise SotError(f"method {method} cannot serve {pair}: {exc}") from None
    except (RuntimeError, ValueError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise SotError(f"method {method} cannot serve {pair}: {first}") from None
    student.train(s_was)
    distiller.train()
    return distiller


__all__ = ["Context", "Distiller", "MethodSpec", "Weights", "create_distiller", "get_method",
           "kd_loss", "list_methods"]
