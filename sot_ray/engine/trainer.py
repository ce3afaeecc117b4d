"""One training run in plain PyTorch (no Ray): the loop shared by teachers and students.

``Trainer.run()`` prepares the run folder, restores the last checkpoint when resuming, trains
with the paper's SGD recipe, validates every epoch, keeps last and best checkpoints, writes
TensorBoard events, a JSON-lines history and a summary, and finally evaluates the test set with
the last-epoch and the best-epoch weights. Subclasses define the objective (``compute_loss``).
"""

from __future__ import annotations

import abc
import math
import random
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import config as C
from .. import distributed as D
from ..data import DataBundle, load_dataset, make_loader
from ..errors import SotError
from . import rundir
from .checkpoint import load_checkpoint, load_model_state, save_checkpoint
from .metrics import classification_metrics, kl_from_pstar, predict

EpochHook = Callable[[dict, Path], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SotError(f"device {name!r} requested but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SotError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


class _NoWriter:
    """What ranks other than 0 write to TensorBoard: nothing."""

    def add_scalar(self, *args, **kwargs):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def lr_at(epoch: int, base: float, milestones: list[int], rate: float) -> float:
    """The reference's step decay: in 1-based epoch e, base * rate^(#milestones m with e > m)."""
    return base * rate ** sum(1 for m in milestones if epoch > m)


class Trainer(abc.ABC):
    kind = "base"
    config_cls: type = C.TeacherConfig

    def __init__(self, cfg, out: str | Path, resume: bool = False,
                 log: Callable[[str], None] = print, on_epoch: EpochHook | None = None):
        self.cfg = self.resolve(cfg)
        self.out = Path(out)
        self.resume = resume
        self.log = log
        self.on_epoch = on_epoch
        self.run_id = uuid.uuid4().hex[:12]

    # ---------------------------------------------------------------- hooks for subclasses

    @classmethod
    def resolve(cls, cfg):
        """The config with defaults that depend on other settings filled in."""
        d = C.to_dict(cfg)
        d["optim"]["lr"] = C.resolved_lr(cfg)
        d["optim"]["lr_decay_epochs"] = C.resolved_decay_epochs(cfg)
        return C.from_dict(cls.config_cls, d)

    @abc.abstractmethod
    def build(self, bundle: DataBundle) -> None:
        """Create ``self.model`` and whatever the objective needs."""

    def trainable(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def compute_modules(self) -> list[torch.nn.Module]:
        """The networks the step runs forward (channels-last and torch.compile apply to them)."""
        return [self.model]

    def start_epoch(self, epoch: int) -> dict[str, float]:
        return {}

    def train_mode(self) -> None:
        self.model.train()

    def before_training(self, train_loader, writer, resumed: bool) -> None:
        """Runs once before the first epoch (students: a method's initialisation stage)."""

    def final_metrics(self, test_loader) -> dict[str, float]:
        """Extra test metrics of the current weights (students: agreement with the teacher)."""
        return {}

    @abc.abstractmethod
    def compute_loss(self, x, y, idx) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(logits, total loss, named terms) of one batch."""

    def end_epoch(self) -> dict[str, float]:
        return {}

    def epoch_proxies(self, row: dict) -> dict[str, float]:
        """Per-epoch metrics derived from the training and validation metrics (teachers)."""
        return {}

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def summary_fields(self) -> dict:
        return {}

    # ---------------------------------------------------------------- the run

    def run(self) -> dict:
        """Train; with a ``torch.distributed`` process group (a multi-worker Ray Train trial) the
        run is data-parallel: each rank takes an equal share of every epoch's batches
        (``batch_size / world`` each, so the global batch is the recipe's), gradients are
        averaged, and rank 0 alone writes the run folder."""
        cfg = self.cfg
        cfg_dict = C.to_dict(cfg)
        self.rank, self.world = D.world()
        self.is_main = self.rank == 0
        if self.world > 1 and cfg.optim.batch_size % self.world:
            raise SotError(f"optim.batch_size {cfg.optim.batch_size} is not divisible by the "
                           f"{self.world} data-parallel workers")
        if not self.is_main:
            self.log = lambda _line: None
        verdict = None
        if self.is_main:
            try:
                verdict = rundir.prepare(self.out, cfg_dict, self.resume)
            except SotError as exc:
                verdict = exc
        verdict = D.broadcast_object(verdict)  # no rank waits for one that gave up
        if isinstance(verdict, SotError):
            raise verdict
        has_ckpt = bool(verdict)
        done = rundir.read_summary(self.out)
        if done and done.get("status") == "finished":
            self.log(f"{self.out} already finished; nothing to do")
            return done
        t_start = time.perf_counter()
        seed_everything(cfg.train.seed)
        self.device = resolve_device(cfg.train.device)
        bundle = load_dataset(cfg.data)
        if len(bundle.val) == 0:
            raise SotError("the validation split is empty; raise data.val_fraction")
        self.bundle = bundle
        self.build(bundle)
        D.broadcast_module_(self.model)  # same start on every rank, whatever its RNG did
        self.optimizer = torch.optim.SGD(self.trainable(), lr=cfg.optim.lr,
                                         momentum=cfg.optim.momentum,
                                         weight_decay=cfg.optim.weight_decay)
        start, best = 1, None
        if has_ckpt:
            start, best = self._restore(self.out / rundir.LAST)
            rundir.truncate_history(self.out, start - 1)
            self.log(f"resuming {self.out} from epoch {start - 1}")
        from torch.utils.tensorboard import SummaryWriter

        writer = (SummaryWriter(str(self.out / rundir.TB), purge_step=start) if self.is_main
                  else _NoWriter())
        dev = self.device
        train_loader = make_loader(bundle, "train", cfg.optim.batch_size // self.world, dev,
                                   seed=cfg.train.seed, num_workers=cfg.data.num_workers)
        train_loader.shard(self.rank, self.world)
        val_loader = make_loader(bundle, "val", cfg.train.eval_batch_size, dev,
                                 num_workers=cfg.data.num_workers)
        pstar_loader = None
        if bundle.p_star_train is not None:
            pstar_loader = make_loader(bundle, "train", cfg.train.eval_batch_size, dev, train_mode=False)
        self.compute = self._setup_compute()  # after a restore, so a bad checkpoint fails first
        self.before_training(train_loader, writer, resumed=has_ckpt)
        select = cfg.train.select_metric
        sign = 1.0 if C.SELECT_METRICS[select] == "max" else -1.0
        train_time = 0.0
        try:
            for epoch in range(start, cfg.train.epochs + 1):
                t0 = time.perf_counter()
                lr = lr_at(epoch, cfg.optim.lr, cfg.optim.lr_decay_epochs, cfg.optim.lr_decay_rate)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                row = {"epoch": epoch, "lr": lr}
                row.update(self.start_epoch(epoch))
                train_loader.set_epoch(epoch)
                row.update(self._train_epoch(train_loader, epoch))
                row.update(self.end_epoch())
                epoch_train = time.perf_counter() - t0
                train_time += epoch_train
                row.update({f"val/{k}": v for k, v in self._evaluate(val_loader).items()})
                if pstar_loader is not None:
                    logits, _, idx = predict(self.model, pstar_loader)
                    row["train/kl_pstar"] = kl_from_pstar(bundle.p_star_train[idx.cpu()], logits)
                row.update(self.epoch_proxies(row))
                row["time/epoch_s"] = time.perf_counter() - t0
                row["time/train_s"] = epoch_train
                improved = best is None or sign * row[select] > sign * best[select]
                if improved:
                    best = {k: v for k, v in row.items() if k.startswith("val/")} | {"epoch": epoch}
                if self.is_main:
                    if improved:
                        self._save(self.out / rundir.BEST, epoch, best, full=False)
                    self._save(self.out / rundir.LAST, epoch, best, full=True)
                    if epoch in cfg.train.keep_epochs:
                        self._save(self.out / rundir.checkpoint(f"epoch{epoch}"), epoch, best, full=False)
                    for k, v in row.items():
                        if k != "epoch":
                            writer.add_scalar(k, v, epoch)
                    writer.flush()
                    rundir.append_history(self.out, row)
                D.barrier()  # the epoch's files are complete before any rank goes on
                self.log(self._progress_line(row))
                if self.on_epoch is not None:
                    self.on_epoch(row, self.out)
        finally:
            writer.flush()
        summary = self._finish(writer, best, row if start <= cfg.train.epochs else None,
                               time.perf_counter() - t_start, train_time)
        writer.close()
        return summary

    # ---------------------------------------------------------------- pieces

    def _train_epoch(self, loader, epoch: int) -> dict[str, float]:
        self.train_mode()
        self._params = [p for g in self.optimizer.param_groups for p in g["params"]]
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=self.device)
        seen = 0
        n_steps = len(loader)
        amp, channels_last = self.compute["precision"] == "bf16", self.compute["channels_last"]
        for step, (x, y, idx) in enumerate(loader):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                logits, total, terms = self.compute_loss(x, y, idx)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            if self.world > 1:
                D.average_gradients(self._params)
            self.optimizer.step()
            b = len(y)
            seen += b
            terms = {"train/loss": total, **terms}
            for k, v in terms.items():
                v = v.detach().float() * b
                sums[k] = sums[k] + v if k in sums else v
            correct += (logits.detach().argmax(1) == y).sum()
            if step % 50 == 0 or step == n_steps - 1:
                value = float(D.all_reduce_(total.detach().clone(), average=True))  # ranks agree
                if not math.isfinite(value):
                    raise SotError(
                        f"training loss became {value} in epoch {epoch} (step {step + 1}); "
                        "lower the learning rate or the coefficients (the last checkpoint is kept)"
                    )
        if self.world > 1:  # every rank's share of the epoch
            keys = sorted(sums)
            flat = D.all_reduce_(torch.stack([sums[k] for k in keys] + [correct.float()]))
            sums, correct = dict(zip(keys, flat[:-1])), flat[-1]
            seen *= self.world
        out = {k: float(v) / seen for k, v in sums.items()}
        out["train/acc"] = float(correct) * 100.0 / seen
        return out

    def _setup_compute(self) -> dict:
        """Resolve precision / channels-last / compile for this device and apply them. bf16 runs
        the forward and backward under autocast; weights, optimizer state, the losses' reductions
        and the consistency bank stay fp32."""
        t, dev = self.cfg.train, self.device
        cuda = dev.type == "cuda"
        precision = t.precision
        if precision == "auto":
            precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        channels_last = bool(t.channels_last)
        for m in self.compute_modules():
            if channels_last:
                m.to(memory_format=torch.channels_last)
            if t.compile:
                m.compile()
        info = {"precision": precision, "channels_last": channels_last, "compile": bool(t.compile)}
        self.log(f"compute: {dev}, {precision}, channels_last={channels_last}, compile={t.compile}")
        return info

    def _evaluate(self, loader) -> dict[str, float]:
        logits, y, _ = predict(self.model, loader)
        return classification_metrics(logits, y)

    def _save(self, path: Path, epoch: int, best: dict | None, full: bool) -> None:
        payload = {
            "kind": self.kind, "run_id": self.run_id, "config": C.to_dict(self.cfg),
            "epoch": epoch, "seed": self.cfg.train.seed, "model_name": self.cfg.model,
            "num_classes": self.bundle.num_classes, "input_size": self.bundle.input_size,
            "model": self.model.state_dict(), "best": best or {},
        }
        payload.update(self.summary_fields())
        if full:
            payload["optimizer"] = self.optimizer.state_dict()
            payload["extra"] = self.extra_state()
            payload["rng"] = torch.get_rng_state()
        save_checkpoint(path, payload)

    def _restore(self, path: Path) -> tuple[int, dict | None]:
        ck = load_checkpoint(path, map_location=self.device)
        load_model_state(self.model, ck["model"], path, self.cfg.model, ck.get("model_name", "?"))
        if "optimizer" not in ck:
            raise SotError(f"checkpoint {str(path)!r} holds no optimizer state; cannot resume from it")
        self.optimizer.load_state_dict(ck["optimizer"])
        self.load_extra_state(ck.get("extra", {}))
        if "rng" in ck:
            torch.set_rng_state(ck["rng"].cpu())
        self.run_id = ck.get("run_id", self.run_id)
        return int(ck["epoch"]) + 1, (ck.get("best") or None)

    def _finish(self, writer, best: dict | None, last_row: dict | None, wall: float,
                train_time: float) -> dict:
        cfg = self.cfg
        test_loader = make_loader(self.bundle, "test", cfg.train.eval_batch_size, self.device,
                                  num_workers=cfg.data.num_workers)
        history = rundir.read_history(self.out)
        last_row = last_row or (history[-1] if history else {})
        last = {k: v for k, v in last_row.items() if k.startswith(("val/", "train/", "reg/", "proxy/"))}
        last["epoch"] = last_row.get("epoch", cfg.train.epochs)
        last.update({f"test/{k}": v for k, v in self._evaluate(test_loader).items()})
        last.update(self.final_metrics(test_loader))
        best = dict(best or {})
        best_ck = load_checkpoint(self.out / rundir.BEST, map_location=self.device)
        state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(best_ck["model"])
        best.update({f"test/{k}": v for k, v in self._evaluate(test_loader).items()})
        best.update(self.final_metrics(test_loader))
        self.model.load_state_dict(state)
        step = cfg.train.epochs
        for k in [k for k in last if k.startswith("test/")]:
            writer.add_scalar(k, last[k], step)
            writer.add_scalar(f"{k}_best", best[k], step)
        summary = {
            "status": "finished", "kind": self.kind, "run_id": self.run_id,
            "model": cfg.model, "dataset": cfg.data.name, "seed": cfg.train.seed,
            "epochs": cfg.train.epochs, "select_metric": cfg.train.select_metric,
            "last": last, "best": best, "wall_time_s": wall,
            "train_time_s": sum(r.get("time/train_s", 0.0) for r in history),
            "compute": self.compute,
            "checkpoints": {"last": str(self.out / rundir.LAST), "best": str(self.out / rundir.BEST)},
        }
        summary.update(self.summary_fields())
        if self.is_main:
            rundir.write_summary(self.out, summary)
        self.log(
            f"done: test/acc {last['test/acc']:.2f} (last epoch {last['epoch']}), "
            f"{best['test/acc']:.2f} (best epoch {best.get('epoch')} by {cfg.train.select_metric}); "
            f"{wall:.1f}s; results in {self.out}"
        )
        return summary

    def _progress_line(self, row: dict) -> str:
        cfg = self.cfg
        parts = [f"epoch {row['epoch']}/{cfg.train.epochs}", f"loss {row['train/loss']:.4f}"]
        terms = [k for k in row if k.startswith("loss/")] + ["reg/lip", "reg/consist"]
        parts += [f"{k.split('/', 1)[1]} {row[k]:.4g}" for k in terms if k in row]
        parts += [f"train/acc {row['train/acc']:.2f}", f"val/acc {row['val/acc']:.2f}",
                  f"val/nll {row['val/nll']:.4f}", f"lr {row['lr']:.4g}", f"{row['time/epoch_s']:.1f}s"]
        return "  ".join(parts)

