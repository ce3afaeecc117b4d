"""One student run: distil a frozen teacher (any sot-ray teacher run) into a zoo model."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from .. import config as C
from .. import distributed as D
from ..data import DataBundle
from ..distillers import create_distiller
from ..errors import SotError
from ..models import create_model
from . import rundir
from .checkpoint import load_checkpoint, load_model_state
from .metrics import predict
from .trainer import Trainer


def teacher_checkpoint_path(teacher: str | Path, which: str = "last") -> Path:
    """A teacher run folder (its ``checkpoints/<which>.pt``) or a checkpoint file."""
    p = Path(teacher)
    if p.is_dir():
        ck = p / rundir.checkpoint(which)
        if not ck.is_file():
            raise SotError(f"teacher folder {str(p)!r} holds no checkpoint ({ck.relative_to(p)})")
        return ck
    if p.is_file():
        return p
    raise SotError(f"teacher {str(p)!r} does not exist")


def build_student_config(teacher: str, file: str | None, overrides: list[str], flags: dict):
    """Defaults, then the teacher's data set and split, then file, flags and overrides."""
    base = {"teacher": teacher}
    if teacher:
        ck = load_checkpoint(teacher_checkpoint_path(teacher), map_location="cpu")
        data = ck["config"].get("data", {})
        base["data"] = {k: data[k] for k in ("name", "root", "val_fraction", "split_seed") if k in data}
    return C.build_config(C.StudentConfig, file, overrides, flags, base=base)


class StudentTrainer(Trainer):
    kind = "student"
    config_cls = C.StudentConfig

    def build(self, bundle: DataBundle) -> None:
        cfg = self.cfg
        path = teacher_checkpoint_path(cfg.teacher, cfg.teacher_checkpoint)
        ck = load_checkpoint(path, map_location=self.device)
        if ck.get("kind") != "teacher":
            raise SotError(f"{str(path)!r} is a {ck.get('kind', 'unknown')} checkpoint, not a teacher")
        t_data = ck["config"].get("data", {}).get("name", "?")
        if (t_data != bundle.name or ck.get("num_classes") != bundle.num_classes
                or ck.get("input_size") != bundle.input_size):
            raise SotError(
                f"teacher {str(path)!r} was trained on {t_data} ({ck.get('num_classes')} classes, "
                f"{ck.get('input_size')}px), not on {bundle.name} ({bundle.num_classes} classes, "
                f"{bundle.input_size}px)"
            )
        teacher = create_model(ck["model_name"], ck["num_classes"]).to(self.device)
        load_model_state(teacher, ck["model"], path, ck["model_name"], ck["model_name"])
        teacher.eval()
        self.model = create_model(cfg.model, bundle.num_classes).to(self.device)
        d = cfg.distill
        targets = bundle.train.y if hasattr(bundle.train, "y") else torch.tensor(
            [bundle.train.base.targets[i] for i in bundle.train.indices])
        self.distiller = create_distiller(
            d.method, self.model, teacher, input_size=bundle.input_size,
            num_train=bundle.num_train, num_classes=bundle.num_classes,
            train_targets=targets.to(self.device), student_name=cfg.model,
            teacher_name=ck["model_name"], ce_weight=d.ce_weight, kd_weight=d.kd_weight,
            feat_weight=d.feat_weight, temperature=d.temperature,
        )
        t_reg = ck["config"].get("reg", {})
        self.teacher_info = {
            "teacher_id": ck.get("run_id"), "teacher_path": str(path),
            "teacher_model": ck["model_name"], "teacher_epoch": int(ck["epoch"]),
            "teacher_lip_coef": t_reg.get("lip_coef"), "teacher_consist_coef": t_reg.get("consist_coef"),
            "teacher_consist_schedule": t_reg.get("consist_schedule"),
        }
        self._teacher_test = None
        D.broadcast_module_(self.distiller)  # connectors and memories start equal on every rank

    def trainable(self):
        return self.distiller.learnable_parameters()

    def before_training(self, train_loader, writer, resumed: bool) -> None:
        """The method's initialisation stage (ab, ft, fsp), as the reference's ``init()``: SGD
        with the recipe's momentum and weight decay at a constant rate on the method's init
        modules only. A resumed run restores its result from the checkpoint instead."""
        d, cfg = self.distiller, self.cfg
        epochs = d.init_epochs if cfg.distill.init_epochs is None else cfg.distill.init_epochs
        if not d.init_epochs or not epochs or resumed:
            return
        lr = d.init_lr(cfg.optim.lr)
        params = d.init_parameters()
        opt = torch.optim.SGD(params, lr=lr, momentum=cfg.optim.momentum,
                              weight_decay=cfg.optim.weight_decay)
        t0, losses = time.perf_counter(), []
        for k in range(1, epochs + 1):
            t_epoch = time.perf_counter()
            d.init_train_mode()
            train_loader.set_epoch(-k)  # its own augmentation draws, distinct from the main epochs
            total, seen = torch.zeros((), device=self.device), 0
            for x, y, _ in train_loader:
                loss = d.init_loss(x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                D.average_gradients(params)
                opt.step()
                total += loss.detach() * len(y)
                seen += len(y)
            value = float(D.all_reduce_(total)) / (seen * self.world)
            if not math.isfinite(value):
                raise SotError(f"{d.method} initialisation loss became {value} in init epoch {k}; "
                               "lower the learning rate")
            losses.append(value)
            writer.add_scalar("init/loss", value, k)
            self.log(f"init epoch {k}/{epochs}  {d.method} loss {value:.4f}  lr {lr:.4g}  "
                     f"{time.perf_counter() - t_epoch:.1f}s")
        opt.zero_grad(set_to_none=True)
        self.init_info = {"init_epochs": epochs, "init_lr": lr, "init_loss_first": losses[0],
                          "init_loss_last": losses[-1], "init_time_s": time.perf_counter() - t0}

    def train_mode(self) -> None:
        self.distiller.train()

    def start_epoch(self, epoch: int) -> dict[str, float]:
        self.distiller.epoch = epoch
        return {}

    def compute_modules(self) -> list[torch.nn.Module]:
        return [self.model, self.distiller.teacher]

    def compute_loss(self, x, y, idx):
        logits, terms = self.distiller(x, y, idx)
        return logits, sum(terms.values()), terms

    def extra_state(self) -> dict:
        return {"method": self.distiller.method_state(), "init": getattr(self, "init_info", {})}

    def load_extra_state(self, state: dict) -> None:
        if "method" in state:
            self.distiller.load_method_state(state["method"])
        if state.get("init"):
            self.init_info = state["init"]

    def final_metrics(self, test_loader) -> dict[str, float]:
        if self._teacher_test is None:
            t_logits, y, _ = predict(self.distiller.teacher, test_loader)
            self._teacher_test = (t_logits.argmax(1), float((t_logits.argmax(1) == y).float().mean() * 100))
        s_logits, _, _ = predict(self.model, test_loader)
        agree = float((s_logits.argmax(1) == self._teacher_test[0]).float().mean() * 100)
        return {"test/agreement": agree, "test/teacher_acc": self._teacher_test[1]}

    def summary_fields(self) -> dict:
        w = self.distiller.w
        return {**getattr(self, "teacher_info", {}), "method": self.cfg.distill.method,
                "ce_weight": w.ce, "kd_weight": w.kd, "feat_weight": w.feat,
                **getattr(self, "init_info", {})} if hasattr(self, "distiller") else {}
