"""The model registry: one decorator to add, ``list_models`` / ``get_spec`` / ``create_model``."""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import SotError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., nn.Module]
    family: str
    lr: float  # the paper's learning rate for this network (0.01 for MobileNetV2 / ShuffleNets)
    native_64: bool  # the reference architecture itself takes 64x64 inputs (adaptive pooling)


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, family: str, lr: float = 0.05, native_64: bool = False):
    def deco(factory):
        if name in _REGISTRY:
            warnings.warn(f"model {name!r} registered twice; the later one wins", stacklevel=2)
        _REGISTRY[name] = ModelSpec(name, factory, family, lr, native_64)
        return factory

    return deco


def list_models(pattern: str = "*") -> list[str]:
    return [n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern)]


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SotError(f"unknown model {name!r}; valid models: {', '.join(_REGISTRY)}") from None


def create_model(name: str, num_classes: int = 100) -> nn.Module:
    if num_classes < 1:
        raise SotError(f"num_classes must be >= 1, got {num_classes}")
    return get_spec(name).factory(num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
