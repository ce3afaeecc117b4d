"""Sweep files (``sweeps/*.yaml``): typed, validated like run configs, no Ray needed.

A sweep file names a teacher search (a base teacher config, the searched keys and their domains,
ASHA, how many teachers to hand on) and a student grid (models x methods x seeds, a base student
config), plus the resources of one trial and where Ray runs. ``smoke:`` holds a small mapping
deep-merged over the file by ``--smoke`` (what CI runs).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from .. import config as C
from ..errors import SotError
from ..results.store import PROXIES

# short names for the keys a teacher search usually varies
ALIASES = {"lip_coef": "reg.lip_coef", "consist_coef": "reg.consist_coef",
           "consist_schedule": "reg.consist_schedule", "consist_start_at": "reg.consist_start_at",
           "seed": "train.seed", "lr": "optim.lr", "model": "model"}
DOMAINS = ("grid", "choice", "loguniform", "uniform")
EXECUTORS = ("auto", "trial", "train")
TEACHER_RANK_METRICS = {"val_nll_last": "min", "val_nll_best": "min", "val_acc_last": "max",
                        "val_acc_best": "max", "val_ece_last": "min", "val_ece_best": "min",
                        **{col: mode for col, mode, _ in PROXIES.values()}}


@dataclass
class AshaSpec:
    metric: str = "val/nll"
    mode: str | None = None  # None: the metric's direction
    grace_period: int = 1
    reduction_factor: float = 2.0
    max_t: int | None = None  # None: the trials' epochs


@dataclass
class SelectSpec:
    k: int = 2
    metric: str = "val_nll_last"  # a proper scoring rule, not teacher accuracy
    mode: str | None = None
    checkpoint: str = "last"  # the teacher checkpoint students distil from: last | best
    # also distil from these checkpoints of every control (standard) teacher, e.g. [epoch150]:
    # the early-stopped standard teacher baseline (the epochs must be in train.keep_epochs)
    control_checkpoints: list[str] = field(default_factory=list)
    # teacher settings always handed on besides the top k, e.g. the paper's coefficients:
    # [{lip_coef: 1.0e-5, consist_coef: 1.0}] (every finished teacher matching all given keys)
    include: list[dict] = field(default_factory=list)


@dataclass
class TeacherSweep:
    config: dict = field(default_factory=dict)  # a TeacherConfig (nested keys)
    search: dict = field(default_factory=dict)  # key -> value or {grid|choice|loguniform|uniform: ...}
    num_samples: int = 1
    search_seed: int = 0
    control: bool = True
    asha: AshaSpec | None = field(default_factory=AshaSpec)
    select: SelectSpec = field(default_factory=SelectSpec)


@dataclass
class StudentSweep:
    config: dict = field(default_factory=dict)  # a StudentConfig without its teacher
    models: list[str] = field(default_factory=lambda: ["resnet8"])
    methods: list[str] = field(default_factory=lambda: ["kd"])
    seeds: list[int] = field(default_factory=lambda: [0])
    asha: AshaSpec | None = None


@dataclass
class ResourceSpec:
    workers: int = 1
    # how a trial runs its engine: "trial" in the Tune trial's own actor (one worker; the lowest
    # overhead), "train" on a Ray Train worker group (any number of workers, data-parallel);
    # "auto": trial for one worker, train for several
    executor: str = "auto"
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # fractional values pack several trials on one GPU
    max_concurrent_trials: int | None = None  # None: what the cluster's CPUs/GPUs hold
    check: bool = True  # refuse requests no node can satisfy (turn off for autoscaling clusters)
    # a trial's worker group that cannot start within Ray Train's start timeout (60 s,
    # $RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S) is retried this many times, then the trial fails
    # (Ray Train's default retries for ever); raise it where nodes take minutes to join
    start_retries: int = 2
    # a failed trial (its node lost, its worker killed) restarts from its last checkpoint up to
    # this many times; a trial that fails for its own reasons (a NaN loss) is then recorded failed
    trial_retries: int = 2


@dataclass
class RaySpec:
    address: str | None = None  # None: $RAY_ADDRESS or a new local instance
    num_cpus: int | None = None  # local instance only
    num_gpus: int | None = None
    temp_dir: str | None = None  # Ray's session files (default /tmp/ray)


@dataclass
class SweepSpec:
    name: str = "sweep"
    storage: str | None = None
    teachers: TeacherSweep = field(default_factory=TeacherSweep)
    students: StudentSweep = field(default_factory=StudentSweep)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    ray: RaySpec = field(default_factory=RaySpec)
    smoke: dict = field(default_factory=dict)
    # the paper's numbers for this recipe ({what, acc, tolerance, model | student + method,
    # teacher: standard | soteacher | standard@epochN}), checked by `sot-ray report` when every
    # run has expected_at_epochs epochs
    expected: list[dict] = field(default_factory=list)
    expected_at_epochs: int | None = None


def load_spec(path: str | Path | None, smoke: bool = False, overrides: list[str] | None = None) -> SweepSpec:
    """Read, apply ``smoke:`` (if asked) and dotted ``overrides`` (``teachers.config.data.root=/d``),
    type-check and validate a sweep file."""
    data = C.load_yaml(path, what="sweep file") if path else {}
    if smoke:
        extra = data.get("smoke") or {}
        if not isinstance(extra, dict):
            raise SotError(f"sweep file {str(path)!r}: smoke must be a mapping")
        data = C.merge(data, extra)
    for text in overrides or []:
        keys, value = C.parse_override(text)
        node = data
        for k in keys[:-1]:
            if not isinstance(node.get(k, {}), dict):
                raise SotError(f"override {text!r}: {k!r} is not a mapping in the sweep file")
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    try:
        spec = C.from_dict(SweepSpec, data)
    except SotError as exc:
        raise SotError(f"sweep file {str(path)!r}: {exc}") from None
    try:
        validate_spec(spec)
    except SotError as exc:
        raise SotError(f"sweep file {str(path)!r}: {exc}") from None
    return spec


def _mode(metric: str, mode: str | None, known: dict) -> str:
    if mode is None:
        if metric not in known:
            raise SotError(f"metric {metric!r} is not one of {', '.join(known)}")
        return known[metric]
    if mode not in ("min", "max"):
        raise SotError(f"mode must be min or max, got {mode!r}")
    return mode


def _validate_asha(asha: AshaSpec, epochs: int, where: str) -> None:
    asha.mode = _mode(asha.metric, asha.mode, C.SELECT_METRICS | {"train/loss": "min"})
    if asha.max_t is None:
        asha.max_t = epochs
    if not 1 <= asha.max_t <= epochs:
        raise SotError(f"{where}.asha.max_t must be in [1, {epochs}] (the trials' epochs), got {asha.max_t}")
    if asha.grace_period < 1 or asha.grace_period > asha.max_t:
        raise SotError(f"{where}.asha.grace_period must be in [1, max_t={asha.max_t}], got {asha.grace_period}")
    if not asha.reduction_factor > 1:
        raise SotError(f"{where}.asha.reduction_factor must be > 1, got {asha.reduction_factor}")


def validate_spec(spec: SweepSpec) -> None:
    if not spec.name or "/" in spec.name or spec.name.startswith("."):
        raise SotError(f"name must be a plain folder name, got {spec.name!r}")
    t = spec.teachers
    if t.num_samples < 1:
        raise SotError(f"teachers.num_samples must be >= 1, got {t.num_samples}")
    for key, dom in t.search.items():
        _parse_domain(key, dom)
    trials = teacher_trials(spec)  # every trial's config is built and validated here
    epochs = max(C.from_dict(C.TeacherConfig, tr["config"]).train.epochs for tr in trials)
    if t.asha is not None:
        _validate_asha(t.asha, epochs, "teachers")
    sel = t.select
    if sel.k < 1:
        raise SotError(f"teachers.select.k must be >= 1, got {sel.k}")
    sel.mode = _mode(sel.metric, sel.mode, TEACHER_RANK_METRICS)
    if sel.metric not in TEACHER_RANK_METRICS:
        raise SotError(f"teachers.select.metric must be one of {', '.join(TEACHER_RANK_METRICS)}")
    if sel.checkpoint not in ("last", "best"):
        raise SotError(f"teachers.select.checkpoint must be last or best, got {sel.checkpoint!r}")
    for inc in sel.include:
        bad = [k for k in inc if k not in ("lip_coef", "consist_coef", "consist_schedule", "seed")]
        if bad:
            raise SotError(f"teachers.select.include: unknown key {bad[0]!r}; use lip_coef, consist_coef, "
                           "consist_schedule, seed")
    keep = C.from_dict(C.TeacherConfig, trials[0]["config"]).train.keep_epochs
    for name in sel.control_checkpoints:
        if C.kept_epoch(name) not in keep:
            raise SotError(f"teachers.select.control_checkpoints: {name!r} is not a kept epoch; give "
                           f"epochN with N in teachers.config.train.keep_epochs ({keep})")
    s = spec.students
    if not s.models or not s.methods or not s.seeds:
        raise SotError("students.models, students.methods and students.seeds must not be empty")
    from ..distillers import get_method
    from ..models import get_spec

    for m in s.models:
        get_spec(m)
    for m in s.methods:
        get_method(m)
    if "teacher" in s.config:
        raise SotError("students.config must not name a teacher: the sweep hands the teachers on")
    base = student_base(spec)
    if s.asha is not None:
        _validate_asha(s.asha, base.train.epochs, "students")
    r = spec.resources
    if r.workers < 1:
        raise SotError(f"resources.workers must be >= 1, got {r.workers}")
    if r.executor not in EXECUTORS:
        raise SotError(f"resources.executor must be one of {', '.join(EXECUTORS)}, got {r.executor!r}")
    if r.executor == "auto":
        r.executor = "trial" if r.workers == 1 else "train"
    if r.executor == "trial" and r.workers != 1:
        raise SotError(f"resources.executor trial runs one worker per trial, got workers {r.workers}; "
                       "use executor train for data-parallel trials")
    if not r.cpus_per_worker > 0:
        raise SotError(f"resources.cpus_per_worker must be > 0, got {r.cpus_per_worker}")
    if r.gpus_per_worker < 0 or (r.gpus_per_worker > 1 and r.gpus_per_worker != int(r.gpus_per_worker)):
        raise SotError(f"resources.gpus_per_worker must be a fraction <= 1 or a whole number, got {r.gpus_per_worker}")
    if r.trial_retries < 0:
        raise SotError(f"resources.trial_retries must be >= 0, got {r.trial_retries}")
    if r.start_retries < 0:
        raise SotError(f"resources.start_retries must be >= 0, got {r.start_retries}")
    if r.max_concurrent_trials is not None and r.max_concurrent_trials < 1:
        raise SotError(f"resources.max_concurrent_trials must be >= 1, got {r.max_concurrent_trials}")


# ------------------------------------------------------------------------------- search space


def _parse_domain(key: str, dom) -> tuple[str, str, object]:
    dotted = ALIASES.get(key, key)
    if dotted not in C.valid_keys(C.TeacherConfig):
        raise SotError(f"teachers.search: unknown key {key!r}; use {', '.join(ALIASES)} or a dotted "
                       "teacher config key")
    if not isinstance(dom, dict):
        return dotted, "grid", [dom]
    if len(dom) != 1 or next(iter(dom)) not in DOMAINS:
        raise SotError(f"teachers.search.{key}: give one of {', '.join(DOMAINS)}, got {dom!r}")
    kind, arg = next(iter(dom.items()))
    if not isinstance(arg, list) or not arg:
        raise SotError(f"teachers.search.{key}.{kind}: expected a non-empty list, got {arg!r}")
    if kind in ("loguniform", "uniform"):
        try:
            lo, hi = (float(v) for v in arg)
        except (TypeError, ValueError):
            raise SotError(f"teachers.search.{key}.{kind}: expected [low, high], got {arg!r}") from None
        if not lo < hi or (kind == "loguniform" and lo <= 0):
            raise SotError(f"teachers.search.{key}.{kind}: need 0 < low < high, got {arg!r}"
                           if kind == "loguniform" else f"teachers.search.{key}.{kind}: need low < high")
        arg = [lo, hi]
    return dotted, kind, arg


def _set(d: dict, dotted: str, value) -> None:
    node = d
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def _get(d: dict, dotted: str):
    node = d
    for p in dotted.split("."):
        node = node[p]
    return node


def teacher_trials(spec: SweepSpec) -> list[dict]:
    """Every teacher trial: the grid's product times ``num_samples`` draws of the sampled keys
    (seeded by ``search_seed``), plus one standard teacher (lip 0, consist 0) per distinct setting
    of the keys that are not regularisation coefficients. Each trial's config is validated."""
    t = spec.teachers
    base = C.merge(C.to_dict(C.TeacherConfig()), t.config)
    try:
        C.from_dict(C.TeacherConfig, t.config, "teachers.config.")
    except SotError as exc:
        raise SotError(str(exc).replace("config key 'teachers.config.", "key 'teachers.config.")) from None
    parsed = [_parse_domain(k, v) for k, v in t.search.items()]
    grid = [(d, a) for d, kind, a in parsed if kind == "grid"]
    sampled = [(d, kind, a) for d, kind, a in parsed if kind != "grid"]
    rng = random.Random(t.search_seed)
    trials, seen = [], set()

    def add(overrides: dict, control: bool):
        key = (control, tuple(sorted((k, repr(v)) for k, v in overrides.items())))
        if key in seen:
            return
        seen.add(key)
        cfg = C.merge(base, {})
        for k, v in overrides.items():
            _set(cfg, k, v)
        cfg_obj = C.from_dict(C.TeacherConfig, cfg)
        C.validate(cfg_obj)
        trials.append({"control": control, "overrides": overrides, "config": C.to_dict(cfg_obj)})

    combos = list(itertools.product(*[a for _, a in grid])) or [()]
    for _ in range(t.num_samples if sampled else 1):
        draws = {}  # one draw per sample, shared by the grid points (seeds replicate it)
        for d, kind, a in sampled:
            if kind == "choice":
                draws[d] = rng.choice(a)
            elif kind == "uniform":
                draws[d] = rng.uniform(*a)
            else:
                draws[d] = math.exp(rng.uniform(math.log(a[0]), math.log(a[1])))
        for combo in combos:
            add({d: v for (d, _), v in zip(grid, combo)} | draws, False)
    if t.control:
        for tr in list(trials):
            ov = {k: v for k, v in tr["overrides"].items() if not k.startswith("reg.")}
            ov.update({"reg.lip_coef": 0.0, "reg.consist_coef": 0.0})
            add(ov, True)
    for i, tr in enumerate(trials):
        reg = tr["config"]["reg"]
        tag = "control" if tr["control"] else f"lip{reg['lip_coef']:.3g}_con{reg['consist_coef']:.3g}_{reg['consist_schedule']}"
        tr["name"] = f"t{i:03d}_{tag}_s{tr['config']['train']['seed']}"
    return trials


def student_base(spec: SweepSpec) -> C.StudentConfig:
    data = C.merge(C.to_dict(C.StudentConfig()), spec.students.config)
    try:
        C.from_dict(C.StudentConfig, spec.students.config, "students.config.")
        return C.from_dict(C.StudentConfig, data)
    except SotError as exc:
        raise SotError(str(exc)) from None


def student_trials(spec: SweepSpec, teachers: list[dict]) -> list[dict]:
    """One trial per (teacher, student model, method, seed). ``teachers`` are table rows."""
    s = spec.students
    base = C.to_dict(student_base(spec))
    trials = []
    for t in teachers:
        for model, method, seed in itertools.product(s.models, s.methods, s.seeds):
            which = t.get("checkpoint") or spec.teachers.select.checkpoint
            cfg = C.merge(base, {"model": model, "teacher": t["teacher_path"],
                                 "teacher_checkpoint": which,
                                 "distill": {"method": method}, "train": {"seed": seed}})
            cfg["data"] = C.merge(cfg["data"], t["data"])
            tag = "control" if t["is_control"] else t["trial_name"].split("_", 1)[0]
            if t.get("checkpoint"):
                tag += f"-{t['checkpoint']}"
            trials.append({
                "name": f"s{len(trials):03d}_{method}_{model}_from_{tag}_s{seed}".replace("+", "p"),
                "config": cfg, "teacher": {k: t[k] for k in (
                    "teacher_id", "experiment", "model", "is_control", "lip_coef", "consist_coef",
                    "consist_schedule", "seed")},
            })
    return trials
