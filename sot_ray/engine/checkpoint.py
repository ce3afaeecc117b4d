"""Checkpoints: plain dicts of tensors and primitives, written atomically, read with
``torch.load(weights_only=True)`` so that loading never executes pickled code."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import torch

from ..errors import SotError

FORMAT = "sot-ray/1"


def save_checkpoint(path: Path, payload: dict) -> None:
    """``payload['config']`` (a dict) is stored as JSON text; the write is atomic."""
    data = dict(payload)
    data["format"] = FORMAT
    data["config"] = json.dumps(payload["config"], sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise SotError(f"checkpoint {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SotError(f"checkpoint {str(path)!r} is corrupt or unsafe to load ({first[:160]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SotError(f"checkpoint {str(path)!r} is not a sot-ray checkpoint")
    try:
        data["config"] = json.loads(data["config"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise SotError(f"checkpoint {str(path)!r} has no readable config") from None
    return data


def load_model_state(model: torch.nn.Module, state: dict, path: Path, expected: str, found: str) -> None:
    """Load weights with a one-line error when the checkpoint holds another architecture."""
    if expected != found:
        raise SotError(f"checkpoint {str(path)!r} holds a {found} model, not {expected}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise SotError(
            f"checkpoint {str(path)!r} does not fit a {expected} model (other architecture or class count)"
        ) from None
