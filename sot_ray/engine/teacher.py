"""The SoTeacher teacher objective: CE + lip_coef * Lip + consist_weight(epoch) * Consist.

Every teacher, standard ones included, also logs the proxies a student sweep can rank teachers
by (``proxy/*``, next to ``val/nll``, ``val/ece``, ``reg/lip`` and, on ``synthetic``,
``train/kl_pstar``):

- ``proxy/consist_gap``: the epoch's mean squared distance between the augmented-view predictions
  and the bank of past predictions (the unweighted consistency term, from epoch 2 on). A
  standard teacher keeps the bank too, for this proxy only (``reg.track_gap``, default on; 4 bytes
  per class per training image); it never enters its loss.
- ``proxy/acc_gap``: training accuracy (running, augmented) minus validation accuracy.
- ``proxy/nll_gap``: validation NLL minus the running training cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import TeacherConfig
from ..data import DataBundle
from ..models import create_model
from ..regularizers import ConsistencyRegularizer, LipschitzPenalty, consist_weight
from .trainer import Trainer


class TeacherTrainer(Trainer):
    """Trains one teacher. With ``lip_coef = consist_coef = 0`` it is a standard (ERM) teacher."""

    kind = "teacher"
    config_cls = TeacherConfig

    def build(self, bundle: DataBundle) -> None:
        cfg = self.cfg
        self.model = create_model(cfg.model, bundle.num_classes).to(self.device)
        self.lip = LipschitzPenalty(self.model)
        # the bank: a regularizer when consist_coef > 0, else only the consistency-gap proxy
        self.consist = None
        if cfg.reg.consist_coef > 0 or cfg.reg.track_gap:
            self.consist = ConsistencyRegularizer(bundle.num_train, bundle.num_classes).to(self.device)
        self.consist_w = 0.0

    def start_epoch(self, epoch: int) -> dict[str, float]:
        r = self.cfg.reg
        self.consist_w = consist_weight(r.consist_schedule, r.consist_coef, epoch,
                                        self.cfg.train.epochs, r.consist_start_at)
        return {"reg/consist_weight": self.consist_w} if self.cfg.reg.consist_coef > 0 else {}

    def compute_loss(self, x, y, idx):
        logits = self.model(x).logits
        ce = F.cross_entropy(logits, y)
        terms = {"loss/ce": ce}
        total = ce
        if self.cfg.reg.lip_coef > 0:
            lip = self.lip()
            terms["reg/lip"] = lip
            total = total + self.cfg.reg.lip_coef * lip
        if self.cfg.reg.consist_coef > 0:
            c = self.consist(logits, idx)
            terms["reg/consist"] = c
            total = total + self.consist_w * c
        elif self.consist is not None:  # standard teacher: the gap proxy, no gradient
            c = self.consist(logits.detach(), idx)
        if self.consist is not None and self.consist.active:
            terms["proxy/consist_gap"] = c.detach()
        return logits, total, terms

    def end_epoch(self) -> dict[str, float]:
        out = {}
        if self.consist is not None:
            self.consist.end_epoch()
        if self.cfg.reg.lip_coef == 0:
            with torch.no_grad():  # still logged: the Lipschitz proxy of a standard teacher
                out["reg/lip"] = float(self.lip())
        return out

    def epoch_proxies(self, row: dict) -> dict[str, float]:
        return {"proxy/acc_gap": row["train/acc"] - row["val/acc"],
                "proxy/nll_gap": row["val/nll"] - row["loss/ce"]}

    def extra_state(self) -> dict:
        return {"consist": self.consist.state_dict()} if self.consist is not None else {}

    def load_extra_state(self, state: dict) -> None:
        if self.consist is not None and "consist" in state:
            self.consist.load_state_dict(state["consist"])

    def summary_fields(self) -> dict:
        r = self.cfg.reg
        return {"lip_coef": r.lip_coef, "consist_coef": r.consist_coef,
                "consist_schedule": r.consist_schedule}
