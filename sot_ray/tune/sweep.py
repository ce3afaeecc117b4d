"""Teacher sweeps, chained student sweeps, and the pipeline that runs both.

Experiment folder layout (``<storage>/<name>/``)::

    sweep.yaml                 the resolved sweep file
    teachers/ students/        Ray Tune's experiment state (what --resume restores)
    train/                     Ray Train's run state
    runs/teachers/<trial>/     sot-ray run folders: config, checkpoints, history, tb/
    runs/students/<trial>/
    teachers.parquet students.parquet   one row per finished / stopped / failed trial
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from pathlib import Path

import yaml

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune banners; sot-ray prints a line per trial
from ray.tune import Callback  # noqa: E402
from ray.tune.schedulers import ASHAScheduler, TrialScheduler  # noqa: E402

from ..config import default_storage
from ..errors import SotError
from ..results import STUDENTS, TEACHERS, ResultTable, read_rows, student_row, teacher_row
from . import cluster
from .spec import SweepSpec, student_trials, teacher_trials
from .trainables import trial, trial_dirname

ROW_BUILDERS = {"teacher": (teacher_row, TEACHERS), "student": (student_row, STUDENTS)}


def resolve_storage(arg: str | None, spec: SweepSpec) -> Path:
    storage = Path(arg or spec.storage or default_storage()).expanduser().absolute()
    try:
        storage.mkdir(parents=True, exist_ok=True)
        probe = storage / f".sot-ray-write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise SotError(f"storage path {str(storage)!r} cannot be written ({exc.strerror or exc})") from None
    return storage


class TableCallback(Callback):
    """Tune callback, in the driver: when a trial ends (finished, stopped by ASHA, failed), write
    its row to the Parquet table and its hyper-parameters to its TensorBoard folder."""

    def __init__(self, kind: str, experiment: str, table: str, runs_dir: str, echo: bool = True,
                 reap: bool = True):
        self.kind, self.experiment, self.table, self.runs_dir, self.echo = kind, experiment, table, runs_dir, echo
        self.reap = reap  # Ray Train executor only: its stopped trials can leak worker groups
        self._lock = threading.Lock()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_reaper")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def reaper(self) -> cluster.OrphanReaper:
        if getattr(self, "_reaper", None) is None:
            self._reaper = cluster.OrphanReaper()
        return self._reaper

    def on_step(self, iteration, trials, **info):
        if getattr(self, "reap", True):
            self.reaper()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trial, {})

    def on_trial_error(self, iteration, trials, trial, **info):
        msg = getattr(trial, "error_msg", None) or "the trial failed"
        self._record(trial, {"error": _last_error_line(trial) or msg})

    def _record(self, trial, outcome: dict):
        t = trial.config["trial"]
        run_dir = Path(self.runs_dir) / t["name"]
        build, schema = ROW_BUILDERS[self.kind]
        outcome["trial_wall_s"] = (trial.last_result or {}).get("time_total_s")
        row = build(self.experiment, trial.trial_id, t["name"], run_dir, t, t["config"], outcome)
        with self._lock:
            ResultTable(Path(self.table), schema).upsert(row)
        _write_hparams(self.kind, run_dir, row)
        if self.echo:
            print(_trial_line(self.kind, row), flush=True)


def _last_error_line(trial) -> str | None:
    """The error's last line (e.g. the engine's one-line SotError), from Tune's error file."""
    path = getattr(trial, "error_file", None) or ""
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except OSError:
        return None
    errs = [ln for ln in lines if "Error:" in ln or "Exception:" in ln]
    return errs[-1] if errs else (lines[-1] if lines else None)


def _trial_line(kind: str, row: dict) -> str:
    what = f"{row['trial_name']}: {row['status']}, epoch {row['epochs_run']}/{row['epochs_planned']}"
    if row["status"] == "finished":
        what += f", val/nll {row['val_nll_last']:.4f}, test/acc {row['test_acc_last']:.2f}"
    elif row["status"] == "error":
        what += f": {row['error']}"
    elif row.get("val_nll_last") is not None:
        what += f", val/nll {row['val_nll_last']:.4f}"
    return f"[{kind}s] {what}"


def _write_hparams(kind: str, run_dir: Path, row: dict) -> None:
    """TensorBoard HParams: the trial's coefficients next to its final metrics."""
    if not (run_dir / "tb").is_dir():
        return
    from torch.utils.tensorboard import SummaryWriter

    keys = (("is_control", "lip_coef", "consist_coef", "consist_schedule", "seed", "model")
            if kind == "teacher" else
            ("method", "model", "seed", "teacher_is_control", "teacher_lip_coef",
             "teacher_consist_coef", "teacher_consist_schedule", "teacher_seed"))
    hp = {k: row[k] for k in keys if row.get(k) is not None}
    metrics = {f"hparam/{k}": row[k] for k in (
        "val_acc_last", "val_nll_last", "test_acc_last", "test_acc_best", "test_nll_last",
        "test_agreement_last", "epochs_run") if row.get(k) is not None}
    with SummaryWriter(str(run_dir / "tb")) as w:
        w.add_hparams(hp, metrics, run_name="hparams")


class ControlKeepingASHA(ASHAScheduler):
    """Ray's ASHA on the reported ``epoch``, except that the standard (control) teachers are never
    stopped early: their results still set the rungs' cut-offs, and every student sweep has a
    baseline to be compared with."""

    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        if (decision == TrialScheduler.STOP and trial.config["trial"].get("control")
                and result.get("epoch", 0) < self._max_t):
            return TrialScheduler.CONTINUE
        return decision


def _asha(a):
    return ControlKeepingASHA(time_attr="epoch", metric=a.metric, mode=a.mode, max_t=a.max_t,
                              grace_period=a.grace_period, reduction_factor=a.reduction_factor)


def run_experiment(kind: str, spec: SweepSpec, exp_dir: Path, trials: list[dict], resume: bool,
                   echo: bool = True, save_spec: bool = False) -> dict:
    """Run (or, with ``resume``, restore and continue) one Tune experiment of ``trials``."""
    import ray.tune as tune

    tune_dir = exp_dir / f"{kind}s"
    runs_dir = exp_dir / "runs" / f"{kind}s"
    table = exp_dir / f"{kind}s.parquet"
    t0 = time.perf_counter()
    cluster.connect(spec.ray)
    concurrent = cluster.check_resources(spec.resources)
    if save_spec and not resume:
        _save_spec(spec, exp_dir)
    trainable = tune.with_resources(trial, cluster.trial_resources(spec.resources))
    if resume:
        if not tune.Tuner.can_restore(str(tune_dir)):
            raise SotError(f"no {kind} sweep to resume in {str(exp_dir)!r}")
        tuner = tune.Tuner.restore(str(tune_dir), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        if tune_dir.exists():
            raise SotError(f"{str(exp_dir)!r} already holds a {kind} sweep; pass --resume to continue "
                           "it or choose another --name")
        asha = spec.teachers.asha if kind == "teacher" else spec.students.asha
        tuner = tune.Tuner(
            trainable,
            param_space={"kind": kind, "trial": tune.grid_search(trials),
                         "resources": dataclasses.asdict(spec.resources),
                         "runs_dir": str(runs_dir), "train_storage": str(exp_dir / "train")},
            tune_config=tune.TuneConfig(scheduler=_asha(asha) if asha else None,
                                        max_concurrent_trials=concurrent,
                                        # in-trial executor: a finished trial's actor (its
                                        # process, imports, CUDA context) takes the next trial
                                        reuse_actors=spec.resources.executor == "trial",
                                        trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(
                name=f"{kind}s", storage_path=str(exp_dir), verbose=0,
                callbacks=[TableCallback(kind, exp_dir.name, str(table), str(runs_dir), echo,
                                         reap=spec.resources.executor == "train")],
                failure_config=tune.FailureConfig(max_failures=spec.resources.trial_retries),
            ),
        )
    if echo:
        print(f"[{kind}s] {len(trials) if not resume else 'resuming'} trials, up to {concurrent} at once "
              f"({spec.resources.executor} executor); results in {exp_dir}", flush=True)
    try:
        grid = tuner.fit()
    except Exception as exc:  # Tune's experiment-level failures, made one line
        if isinstance(exc, SotError):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise SotError(f"the {kind} sweep in {str(exp_dir)!r} failed: {first} (rerun with --resume)") from None
    errors = [r for r in grid if r.error is not None]
    return {"trials": len(grid), "errors": len(errors), "wall_s": time.perf_counter() - t0,
            "table": str(table)}


def _save_spec(spec: SweepSpec, exp_dir: Path) -> None:
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "sweep.yaml").write_text(yaml.safe_dump(dataclasses.asdict(spec), sort_keys=False))


def sweep_teachers(spec: SweepSpec, storage: Path, name: str | None = None, resume: bool = False,
                   echo: bool = True) -> tuple[Path, dict]:
    exp_dir = storage / (name or spec.name)
    trials = teacher_trials(spec)
    return exp_dir, run_experiment("teacher", spec, exp_dir, trials, resume, echo, save_spec=True)


def select_teachers(teacher_exp: Path, spec: SweepSpec) -> list[dict]:
    """The top-k finished SoTeacher teachers by the sweep's ranking metric, plus every finished
    control (standard) teacher."""
    table = teacher_exp / "teachers.parquet"
    if not table.is_file():
        raise SotError(f"experiment {str(teacher_exp)!r} has no teachers.parquet (no teacher sweep ran there)")
    rows = [r for r in read_rows(table) if r["status"] == "finished"]
    if not rows:
        raise SotError(f"experiment {str(teacher_exp)!r} has no finished teacher")
    sel = spec.teachers.select
    sign = 1.0 if sel.mode == "min" else -1.0
    ranked = sorted((r for r in rows if not r["is_control"] and r.get(sel.metric) is not None),
                    key=lambda r: sign * r[sel.metric])
    chosen = ranked[:sel.k]
    chosen += [r for r in ranked[sel.k:] if any(_matches(r, inc) for inc in sel.include)]
    chosen += [r for r in rows if r["is_control"]]
    out = []
    for r in chosen:
        cfg = yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())
        data = {k: cfg["data"][k] for k in ("name", "root", "val_fraction", "split_seed")}
        out.append(dict(r, teacher_path=r["run_dir"], data=data))
        if r["is_control"]:  # the early-stopped standard teacher baselines
            out += [dict(r, teacher_path=r["run_dir"], data=data, checkpoint=c) for c in sel.control_checkpoints]
    return out


def _matches(row: dict, include: dict) -> bool:
    return all(math.isclose(row[k], v) if isinstance(v, float) else row[k] == v for k, v in include.items())


def sweep_students(spec: SweepSpec, storage: Path, teacher_exp: Path, name: str | None = None,
                   resume: bool = False, echo: bool = True) -> tuple[Path, dict]:
    exp_dir = storage / name if name else teacher_exp
    teachers = select_teachers(teacher_exp, spec)
    if echo and not resume:
        print("[students] teachers: " + ", ".join(t["trial_name"] for t in teachers), flush=True)
    trials = student_trials(spec, teachers)
    return exp_dir, run_experiment("student", spec, exp_dir, trials, resume, echo, save_spec=bool(name))


def sweep_pipeline(spec: SweepSpec, storage: Path, name: str | None = None, resume: bool = False,
                   echo: bool = True) -> tuple[Path, dict, dict]:
    """Teachers, then students from the best of them, in one experiment folder. With ``resume``
    each stage that already started is restored; a stage that never started runs afresh."""
    exp = storage / (name or spec.name)
    exp, t_result = sweep_teachers(spec, storage, name, resume and (exp / "teachers").exists(), echo)
    _, s_result = sweep_students(spec, storage, exp, None, resume and (exp / "students").exists(), echo)
    return exp, t_result, s_result
