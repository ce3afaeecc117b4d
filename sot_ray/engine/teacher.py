"""The SoTeacher teacher objective: CE + lip_coef * Lip + consist_weight(epoch) * Consist."""

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
        self.consist = None
        if cfg.reg.consist_coef > 0:
            self.consist = ConsistencyRegularizer(bundle.num_train, bundle.num_classes).to(self.device)
        self.consist_w = 0.0

    def start_epoch(self, epoch: int) -> dict[str, float]:
        r = self.cfg.reg
        self.consist_w = consist_weight(r.consist_schedule, r.consist_coef, epoch,
                                        self.cfg.train.epochs, r.consist_start_at)
        return {"reg/consist_weight": self.consist_w} if self.consist is not None else {}

    def compute_loss(self, x, y, idx):
        logits = self.model(x).logits
        ce = F.cross_entropy(logits, y)
        terms = {"loss/ce": ce}
        total = ce
        if self.cfg.reg.lip_coef > 0:
            lip = self.lip()
            terms["reg/lip"] = lip
            total = total + self.cfg.reg.lip_coef * lip
        if self.consist is not None:
            c = self.consist(logits, idx)
            terms["reg/consist"] = c
            total = total + self.consist_w * c
        return logits, total, terms

    def end_epoch(self) -> dict[str, float]:
        out = {}
        if self.consist is not None:
            self.consist.end_epoch()
        if self.cfg.reg.lip_coef == 0:
            with torch.no_grad():  # still logged: the Lipschitz proxy of a standard teacher
                out["reg/lip"] = float(self.lip())
        return out

    def extra_state(self) -> dict:
        return {"consist": self.consist.state_dict()} if self.consist is not None else {}

    def load_extra_state(self, state: dict) -> None:
        if self.consist is not None and "consist" in state:
            self.consist.load_state_dict(state["consist"])

    def summary_fields(self) -> dict:
        r = self.cfg.reg
        return {"lip_coef": r.lip_coef, "consist_coef": r.consist_coef,
                "consist_schedule": r.consist_schedule}
