"""``teachers.parquet`` and ``students.parquet``: one row per trial, explicit schemas.

Rows are built from a run folder's ``metrics.json`` (finished runs) or its ``history.jsonl`` (runs
that ASHA stopped early). A table is rewritten atomically (temporary file + rename) each time a
trial ends, so a crash never loses a finished row and readers never see half a file.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..engine import rundir
from ..errors import SotError

_METRICS = ("acc", "nll", "ece")
# teacher proxies (last epoch): column -> the history / summary key it comes from
PROXY_COLUMNS = {"train_kl_pstar_last": "train/kl_pstar", "lip_last": "reg/lip",
                 "consist_gap_last": "proxy/consist_gap", "acc_gap_last": "proxy/acc_gap",
                 "nll_gap_last": "proxy/nll_gap"}
# what a student sweep can rank teachers by, and the report correlates with student accuracy:
# short name -> (teacher-table column, the better direction, what it is)
PROXIES = {
    "val_nll": ("val_nll_last", "min", "validation NLL"),
    "val_ece": ("val_ece_last", "min", "validation expected calibration error"),
    "val_acc": ("val_acc_last", "max", "teacher validation accuracy"),
    "lip": ("lip_last", "min", "Lipschitz proxy of the network"),
    "consist_gap": ("consist_gap_last", "min", "distance of predictions to the bank"),
    "acc_gap": ("acc_gap_last", "min", "train minus validation accuracy"),
    "nll_gap": ("nll_gap_last", "min", "validation NLL minus training CE"),
    "kl_pstar": ("train_kl_pstar_last", "min", "KL(p* || teacher) on training inputs (synthetic)"),
}


def _metric_fields(prefix: str, splits=("val", "test")) -> list[pa.Field]:
    return [pa.field(f"{split}_{m}_{which}", pa.float64())
            for split in splits for m in _METRICS for which in ("last", "best")] + [
        pa.field(f"{prefix}best_epoch", pa.int32())]


_COMMON = [
    pa.field("experiment", pa.string()), pa.field("trial_id", pa.string()),
    pa.field("trial_name", pa.string()), pa.field("status", pa.string()),
    pa.field("model", pa.string()), pa.field("dataset", pa.string()), pa.field("seed", pa.int64()),
    pa.field("epochs_planned", pa.int32()), pa.field("epochs_run", pa.int32()),
    pa.field("stopped_early", pa.bool_()),
]
_TAIL = [
    pa.field("wall_time_s", pa.float64()), pa.field("train_time_s", pa.float64()),
    pa.field("trial_wall_s", pa.float64()), pa.field("error", pa.string()),
    pa.field("run_dir", pa.string()), pa.field("checkpoint_last", pa.string()),
    pa.field("checkpoint_best", pa.string()),
]

TEACHERS = pa.schema(
    _COMMON[:2] + [pa.field("teacher_id", pa.string())] + _COMMON[2:] + [
        pa.field("is_control", pa.bool_()), pa.field("lip_coef", pa.float64()),
        pa.field("consist_coef", pa.float64()), pa.field("consist_schedule", pa.string()),
    ] + _metric_fields("") + [pa.field(c, pa.float64()) for c in PROXY_COLUMNS] + _TAIL
)

STUDENTS = pa.schema(
    _COMMON[:2] + [pa.field("student_id", pa.string()), pa.field("teacher_id", pa.string()),
                   pa.field("teacher_experiment", pa.string()),
                   pa.field("teacher_model", pa.string()),
                   pa.field("teacher_is_control", pa.bool_()),
                   pa.field("teacher_lip_coef", pa.float64()),
                   pa.field("teacher_consist_coef", pa.float64()),
                   pa.field("teacher_consist_schedule", pa.string()),
                   pa.field("teacher_seed", pa.int64()),
                   pa.field("teacher_checkpoint", pa.string()),
                   pa.field("teacher_test_acc", pa.float64())]
    + _COMMON[2:] + [pa.field("method", pa.string())] + _metric_fields("")
    + [pa.field("test_agreement_last", pa.float64()), pa.field("test_agreement_best", pa.float64())]
    + _TAIL
)


def _num(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def _run_metrics(run_dir: Path, planned: int, select: str) -> dict:
    """Metrics of one run folder: from its summary when it finished, else from its history."""
    summary = rundir.read_summary(run_dir) or {}
    history = rundir.read_history(run_dir)
    out: dict = {"epochs_run": history[-1]["epoch"] if history else 0}
    if summary.get("status") == "finished":
        last, best = summary["last"], summary["best"]
        for split in ("val", "test"):
            for m in _METRICS:
                out[f"{split}_{m}_last"] = _num(last.get(f"{split}/{m}"))
                out[f"{split}_{m}_best"] = _num(best.get(f"{split}/{m}"))
        out["best_epoch"] = best.get("epoch")
        out["wall_time_s"] = summary.get("wall_time_s")
        out["train_time_s"] = summary.get("train_time_s")
        out.update({c: _num(last.get(k)) for c, k in PROXY_COLUMNS.items()})
        out["test_agreement_last"] = _num(last.get("test/agreement"))
        out["test_agreement_best"] = _num(best.get("test/agreement"))
        out["teacher_test_acc"] = _num(last.get("test/teacher_acc"))
        out["checkpoint_last"] = summary["checkpoints"]["last"]
        out["checkpoint_best"] = summary["checkpoints"]["best"]
        out["status"] = "finished"
    else:
        if history:
            row = history[-1]
            for m in _METRICS:
                out[f"val_{m}_last"] = _num(row.get(f"val/{m}"))
            sign = -1.0 if select == "val/acc" else 1.0  # val/acc is maximised, nll/ece minimised
            sel = min(history, key=lambda r: sign * r[select])
            for m in _METRICS:
                out[f"val_{m}_best"] = _num(sel.get(f"val/{m}"))
            out["best_epoch"] = sel["epoch"]
            out["train_time_s"] = sum(r.get("time/train_s", 0.0) for r in history)
            out.update({c: _num(row.get(k)) for c, k in PROXY_COLUMNS.items()})
        last_ck = run_dir / rundir.LAST
        out["checkpoint_last"] = str(last_ck) if last_ck.is_file() else None
        out["status"] = "unfinished"
    return out


def teacher_row(experiment: str, trial_id: str, trial_name: str, run_dir: Path, trial: dict,
                cfg: dict, outcome: dict | None = None) -> dict:
    planned = cfg["train"]["epochs"]
    row = {
        "experiment": experiment, "trial_id": trial_id, "trial_name": trial_name,
        "model": cfg["model"], "dataset": cfg["data"]["name"], "seed": cfg["train"]["seed"],
        "epochs_planned": planned, "is_control": bool(trial.get("control")),
        "lip_coef": cfg["reg"]["lip_coef"], "consist_coef": cfg["reg"]["consist_coef"],
        "consist_schedule": cfg["reg"]["consist_schedule"], "run_dir": str(run_dir),
    }
    row.update(_run_metrics(run_dir, planned, cfg["train"]["select_metric"]))
    summary = rundir.read_summary(run_dir) or {}
    row["teacher_id"] = summary.get("run_id") or _checkpoint_run_id(run_dir)
    return _close(row, outcome)


def student_row(experiment: str, trial_id: str, trial_name: str, run_dir: Path, trial: dict,
                cfg: dict, outcome: dict | None = None) -> dict:
    planned = cfg["train"]["epochs"]
    t = trial["teacher"]
    row = {
        "experiment": experiment, "trial_id": trial_id, "trial_name": trial_name,
        "teacher_id": t["teacher_id"], "teacher_experiment": t["experiment"],
        "teacher_model": t["model"], "teacher_is_control": bool(t["is_control"]),
        "teacher_lip_coef": t["lip_coef"], "teacher_consist_coef": t["consist_coef"],
        "teacher_consist_schedule": t["consist_schedule"], "teacher_seed": t["seed"],
        "teacher_checkpoint": t.get("checkpoint") or cfg.get("teacher_checkpoint", "last"),
        "model": cfg["model"], "dataset": cfg["data"]["name"], "seed": cfg["train"]["seed"],
        "epochs_planned": planned, "method": cfg["distill"]["method"], "run_dir": str(run_dir),
    }
    row.update(_run_metrics(run_dir, planned, cfg["train"]["select_metric"]))
    summary = rundir.read_summary(run_dir) or {}
    row["student_id"] = summary.get("run_id") or _checkpoint_run_id(run_dir)
    return _close(row, outcome)


def _close(row: dict, outcome: dict | None) -> dict:
    """Fold in how the trial ended (from the sweep driver): ``{"error": msg}`` for a failed trial;
    a trial that ended without finishing its run was stopped early by the scheduler."""
    outcome = outcome or {}
    row["trial_wall_s"] = outcome.get("trial_wall_s")
    if outcome.get("error"):
        row["status"], row["error"] = "error", str(outcome["error"])[:2000]
    elif row["status"] != "finished" and outcome:
        row["status"] = "stopped"
    row["stopped_early"] = row["status"] == "stopped"
    return row


def _checkpoint_run_id(run_dir: Path) -> str | None:
    ck = run_dir / rundir.LAST
    if not ck.is_file():
        return None
    from ..engine.checkpoint import load_checkpoint

    return load_checkpoint(ck, map_location="cpu").get("run_id")


class ResultTable:
    """One Parquet table, keyed by ``trial_id``: ``upsert`` replaces a trial's row (a resumed
    trial) and rewrites the file atomically."""

    def __init__(self, path: Path, schema: pa.Schema):
        self.path, self.schema = Path(path), schema
        self._lock = threading.Lock()

    def rows(self) -> list[dict]:
        return read_rows(self.path) if self.path.is_file() else []

    def upsert(self, row: dict) -> None:
        with self._lock:
            rows = [r for r in self.rows() if r["trial_id"] != row["trial_id"]]
            rows.append({f.name: row.get(f.name) for f in self.schema})
            table = pa.Table.from_pylist(rows, schema=self.schema)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            os.close(fd)
            try:
                pq.write_table(table, tmp)
                os.replace(tmp, self.path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)


def read_rows(path: Path) -> list[dict]:
    try:
        return pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowInvalid) as exc:
        raise SotError(f"cannot read {str(path)!r}: {str(exc).splitlines()[0]}") from None
