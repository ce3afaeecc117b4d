"""The run folder: what it holds and when a command may (re)use it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ..errors import SotError

CONFIG = "config.yaml"
SUMMARY = "metrics.json"
HISTORY = "history.jsonl"
LOG = "train.log"  # progress lines of runs started by a sweep (may precede the config)
LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"
TB = "tb"


def checkpoint(which: str) -> str:
    """``last``, ``best`` or ``epochN`` (kept by ``train.keep_epochs``): its path in a run folder."""
    return f"checkpoints/{which}.pt"


# settings that may differ between the start and the resume of one run (where, not what)
_MACHINE_KEYS = {("data", "root"), ("data", "num_workers"), ("train", "device"),
                 ("train", "eval_batch_size")}


def _comparable(cfg: dict) -> dict:
    out = json.loads(json.dumps(cfg))
    for sec, key in _MACHINE_KEYS:
        out.get(sec, {}).pop(key, None)
    return out


def prepare(out: Path, cfg: dict, resume: bool) -> bool:
    """Make ``out`` ready for the run ``cfg``; True when there is a checkpoint to resume from.

    Refuses (never prompts) a folder that holds a different run, or this run without ``resume``.
    A run folder in which no epoch finished (e.g. the run stopped on bad input) holds nothing
    computed and is taken over.
    """
    if out.exists() and not out.is_dir():
        raise SotError(f"output path {str(out)!r} exists and is not a folder")
    cfg_file = out / CONFIG
    if out.is_dir() and any(f.name != LOG for f in out.iterdir()):
        if not cfg_file.is_file():
            raise SotError(f"output folder {str(out)!r} is not empty and holds no sot-ray run; choose another --out")
        if not (out / LAST).is_file() and not (out / HISTORY).is_file():
            cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
            return False
        try:
            old = yaml.safe_load(cfg_file.read_text())
        except yaml.YAMLError:
            raise SotError(f"{cfg_file} is unreadable; choose another --out") from None
        if _comparable(old or {}) != _comparable(cfg):
            diff = _first_difference(_comparable(old or {}), _comparable(cfg))
            raise SotError(f"output folder {str(out)!r} holds a different run ({diff}); choose another --out")
        if not resume:
            raise SotError(f"output folder {str(out)!r} already holds this run; pass --resume to continue it")
        return (out / LAST).is_file()
    out.mkdir(parents=True, exist_ok=True)
    cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return False


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            d = _first_difference(va, vb, f"{prefix}{k}.")
            if d:
                return d
        elif va != vb:
            return f"{prefix}{k}: {va!r} there, {vb!r} now"
    return ""


def append_history(out: Path, row: dict) -> None:
    with open(out / HISTORY, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_history(out: Path) -> list[dict]:
    path = out / HISTORY
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def truncate_history(out: Path, upto_epoch: int) -> None:
    """Drop history rows past ``upto_epoch`` (an interrupted epoch that is being redone)."""
    path = out / HISTORY
    if not path.is_file():
        return
    rows = [ln for ln in path.read_text().splitlines() if ln.strip()]
    keep = [ln for ln in rows if json.loads(ln).get("epoch", 0) <= upto_epoch]
    path.write_text("".join(ln + "\n" for ln in keep))


def write_summary(out: Path, summary: dict) -> None:
    tmp = out / (SUMMARY + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True))
    tmp.replace(out / SUMMARY)


def read_summary(out: Path) -> dict | None:
    p = out / SUMMARY
    return json.loads(p.read_text()) if p.is_file() else None
