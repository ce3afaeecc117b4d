"""Typed run configurations: YAML files, dotted ``--set key=value`` overrides, validation.

A config is a tree of dataclasses. ``from_dict`` rejects unknown keys (listing the valid ones)
and wrong types; ``apply_overrides`` parses each value as YAML and type-checks it the same way;
``validate`` checks ranges and names. Everything is reported as a one-line :class:`SotError`.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from .errors import SotError

T = TypeVar("T")

DEFAULT_DATA_ROOT = "~/.cache/sot-ray/data"
PRECISIONS = ("auto", "fp32", "bf16")


def default_storage() -> Path:
    """Where sweeps keep their experiments: $SOT_RAY_STORAGE, else ~/sot-ray-results."""
    return Path(os.environ.get("SOT_RAY_STORAGE") or Path.home() / "sot-ray-results")


def default_data_root() -> str:
    """``$SOT_DATA_ROOT`` if set, else ``~/.cache/sot-ray/data``."""
    return os.environ.get("SOT_DATA_ROOT") or DEFAULT_DATA_ROOT


@dataclass
class DataConfig:
    name: str = "digits"
    root: str | None = None  # None: $SOT_DATA_ROOT, else ~/.cache/sot-ray/data
    val_fraction: float = 0.1
    split_seed: int = 0
    augment: bool = True
    download: bool = False
    num_workers: int = 0  # DataLoader workers for the per-sample (file-backed) path
    # hold the decoded images as one uint8 tensor on the training device and augment batch-wise
    # there (the fast path); false: per-sample torchvision transforms in a DataLoader (for data
    # that does not fit). CIFAR-100, digits and synthetic are always held in memory.
    in_memory: bool = True


@dataclass
class OptimConfig:
    lr: float | None = None  # None: the paper's rate for the model (0.05; 0.01 MobileNetV2/ShuffleNets)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    lr_decay_epochs: list[int] | None = None  # None: 150/180/210 of 240, scaled to `epochs`
    lr_decay_rate: float = 0.1


@dataclass
class RegConfig:
    lip_coef: float = 1e-5
    consist_coef: float = 1.0
    consist_schedule: str = "linear"
    consist_start_at: int = 50
    track_gap: bool = True  # keep the bank when consist_coef = 0 too, for the consistency-gap proxy


@dataclass
class TrainConfig:
    epochs: int = 240
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_batch_size: int = 512
    select_metric: str = "val/acc"  # which validation metric picks the best checkpoint
    # compute: auto = bf16 autocast on a CUDA device that supports it, fp32 elsewhere (weights,
    # optimizer, losses and the consistency bank stay fp32 either way)
    precision: str = "auto"  # auto | fp32 | bf16
    channels_last: bool = True  # NHWC activations: 1.3x on this CPU (oneDNN), faster on tensor cores
    compile: bool = False  # torch.compile the model's forward (minutes of warm-up per run)
    # also keep the weights of these epochs (checkpoints/epochN.pt), e.g. [150]: the early-stopped
    # standard teacher baseline distils from a standard run's epoch-150 checkpoint
    keep_epochs: list[int] = field(default_factory=list)


@dataclass
class TeacherConfig:
    model: str = "resnet8"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    reg: RegConfig = field(default_factory=RegConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class DistillConfig:
    method: str = "kd"
    ce_weight: float | None = None  # None: the method's default (see `sot-ray methods`)
    kd_weight: float | None = None
    feat_weight: float | None = None
    temperature: float = 4.0
    init_epochs: int | None = None  # ab, ft, fsp: initialisation stage; None = the reference's 30


@dataclass
class StudentConfig:
    teacher: str = ""  # a teacher run folder or checkpoint file
    teacher_checkpoint: str = "last"  # last | best | epochN (the paper distills from the last epoch)
    model: str = "resnet8"
    distill: DistillConfig = field(default_factory=DistillConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


SELECT_METRICS = {"val/acc": "max", "val/nll": "min", "val/ece": "min"}


# ---------------------------------------------------------------------------------- machinery


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, f"{key}.")
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except SotError as exc:
                errors.append(str(exc))
        raise SotError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise SotError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is dict:
        if isinstance(value, dict):
            return value
    else:
        raise SotError(f"{key}: unsupported type {tp}")
    raise SotError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def valid_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += valid_keys(tp, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def from_dict(cls: type[T], data: dict | None, prefix: str = "") -> T:
    """Build ``cls`` from a nested dict; unknown keys and wrong types are errors."""
    data = data or {}
    if not isinstance(data, dict):
        raise SotError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise SotError(
            f"unknown config key {prefix + unknown[0]!r}; valid keys: {', '.join(valid_keys(cls, prefix))}"
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    return cls(**kwargs)


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise SotError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str], cls: type) -> dict:
    """Apply ``key.sub=value`` overrides to a nested dict, rejecting keys ``cls`` lacks."""
    valid = set(valid_keys(cls))
    for text in overrides:
        path, value = parse_override(text)
        dotted = ".".join(path)
        if dotted not in valid:
            raise SotError(f"unknown config key {dotted!r}; valid keys: {', '.join(valid_keys(cls))}")
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return data


def load_yaml(path: str | Path, what: str = "config file") -> dict:
    """A YAML mapping from ``path``; ``what`` names the file in the one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise SotError(f"{what} {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise SotError(f"{what} {str(p)!r} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SotError(f"{what} {str(p)!r} must hold a mapping at the top level")
    return data


def build_config(cls: type[T], file: str | None = None, overrides: list[str] | None = None,
                 flags: dict | None = None, base: dict | None = None) -> T:
    """defaults <- ``base`` <- YAML ``file`` <- command-line ``flags`` <- ``--set``; validated."""
    data = merge(to_dict(cls()), base or {})
    if file:
        file_data = load_yaml(file)
        from_dict(cls, file_data)  # unknown keys / wrong types in the file itself
        data = merge(data, file_data)
    data = merge(data, flags or {})
    data = apply_overrides(data, overrides or [], cls)
    cfg = from_dict(cls, data)
    validate(cfg)
    return cfg


def validate(cfg) -> None:
    """Ranges and names; the first problem found is raised as a one-line error."""
    from .data import DATASETS
    from .models import get_spec

    get_spec(cfg.model)
    if isinstance(cfg, TeacherConfig):
        _validate_reg(cfg.reg)
    if isinstance(cfg, StudentConfig):
        _validate_distill(cfg)
    if cfg.data.name not in DATASETS:
        raise SotError(f"unknown dataset {cfg.data.name!r}; valid datasets: {', '.join(DATASETS)}")
    if not 0.0 < cfg.data.val_fraction < 1.0:
        raise SotError(f"data.val_fraction must be in (0, 1), got {cfg.data.val_fraction}")
    if cfg.train.epochs < 1:
        raise SotError(f"train.epochs must be >= 1, got {cfg.train.epochs}")
    if cfg.optim.batch_size < 1 or cfg.train.eval_batch_size < 1:
        raise SotError("batch sizes must be >= 1")
    if cfg.optim.lr is not None and not cfg.optim.lr > 0:
        raise SotError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    if cfg.optim.weight_decay < 0 or not 0 <= cfg.optim.momentum < 1:
        raise SotError("optim.weight_decay must be >= 0 and optim.momentum in [0, 1)")
    if cfg.train.select_metric not in SELECT_METRICS:
        raise SotError(
            f"unknown select_metric {cfg.train.select_metric!r}; valid: {', '.join(SELECT_METRICS)}"
        )
    if cfg.data.num_workers < 0:
        raise SotError("data.num_workers must be >= 0")
    if any(not 1 <= e <= cfg.train.epochs for e in cfg.train.keep_epochs):
        raise SotError(f"train.keep_epochs must lie in [1, {cfg.train.epochs}], got {cfg.train.keep_epochs}")
    if cfg.train.precision not in PRECISIONS:
        raise SotError(f"unknown train.precision {cfg.train.precision!r}; valid: {', '.join(PRECISIONS)}")


def kept_epoch(name: str | None) -> int | None:
    """N for a kept-epoch checkpoint name ``epochN`` (``train.keep_epochs``), else None."""
    if name and name.startswith("epoch") and name[5:].isdigit() and int(name[5:]) >= 1:
        return int(name[5:])
    return None


def is_checkpoint_name(name: str) -> bool:
    return name in ("last", "best") or kept_epoch(name) is not None


def _nonneg(name: str, v: float) -> None:
    if not v >= 0.0 or v == float("inf"):
        raise SotError(f"{name} must be a finite number >= 0, got {v}")


def _validate_reg(reg: RegConfig) -> None:
    from .regularizers import SCHEDULES

    _nonneg("reg.lip_coef", reg.lip_coef)
    _nonneg("reg.consist_coef", reg.consist_coef)
    if reg.consist_schedule not in SCHEDULES:
        raise SotError(f"unknown consistency schedule {reg.consist_schedule!r}; valid: {', '.join(SCHEDULES)}")
    if reg.consist_start_at < 0:
        raise SotError("reg.consist_start_at must be >= 0")


def _validate_distill(cfg: StudentConfig) -> None:
    from .distillers import get_method

    get_method(cfg.distill.method)
    for name in ("ce_weight", "kd_weight", "feat_weight"):
        v = getattr(cfg.distill, name)
        if v is not None:
            _nonneg(f"distill.{name}", v)
    if not cfg.distill.temperature > 0:
        raise SotError(f"distill.temperature must be > 0, got {cfg.distill.temperature}")
    if cfg.distill.init_epochs is not None and cfg.distill.init_epochs < 0:
        raise SotError(f"distill.init_epochs must be >= 0, got {cfg.distill.init_epochs}")
    if not cfg.teacher:
        raise SotError("no teacher given (--teacher RUN_FOLDER_OR_CHECKPOINT)")
    if not is_checkpoint_name(cfg.teacher_checkpoint):
        raise SotError(f"teacher_checkpoint must be last, best or epochN (a kept epoch), "
                       f"got {cfg.teacher_checkpoint!r}")


def resolved_lr(cfg: TeacherConfig) -> float:
    from .models import get_spec

    return cfg.optim.lr if cfg.optim.lr is not None else get_spec(cfg.model).lr


def resolved_decay_epochs(cfg: TeacherConfig) -> list[int]:
    """The paper's milestones 150/180/210 of 240 epochs, scaled to the run's length."""
    if cfg.optim.lr_decay_epochs is not None:
        return list(cfg.optim.lr_decay_epochs)
    e = cfg.train.epochs
    return [max(1, round(e * m / 240)) for m in (150, 180, 210)] if e >= 4 else []
