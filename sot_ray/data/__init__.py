"""Data sets: cifar100, tinyimagenet, digits, synthetic. Each yields ``(input, target, index)``."""

from __future__ import annotations

from pathlib import Path

from ..config import DataConfig, default_data_root
from ..errors import SotError
from . import cifar100, digits, synthetic, tinyimagenet
from .base import Augment, DataBundle, TensorLoader, TensorSplit, make_loader, split_indices

DATASETS = {
    "cifar100": cifar100,
    "tinyimagenet": tinyimagenet,
    "digits": digits,
    "synthetic": synthetic,
}
DESCRIPTIONS = {
    "cifar100": "CIFAR-100, 100 classes, 32x32 (torchvision's loader; --download to fetch)",
    "tinyimagenet": "Tiny-ImageNet-200, 200 classes, 64x64 (the distributed folder layout)",
    "digits": "scikit-learn's handwritten digits, 10 classes, shown as 3x32x32 (no download)",
    "synthetic": "Gaussian classes with known p*(y|x), 10 classes, 3x32x32 (generated)",
}


def data_root(cfg: DataConfig) -> Path:
    return Path(cfg.root or default_data_root()).expanduser()


def load_dataset(cfg: DataConfig) -> DataBundle:
    if cfg.name not in DATASETS:
        raise SotError(f"unknown dataset {cfg.name!r}; valid datasets: {', '.join(DATASETS)}")
    extra = {"in_memory": cfg.in_memory} if cfg.name == "tinyimagenet" else {}
    return DATASETS[cfg.name].load(data_root(cfg), cfg.val_fraction, cfg.split_seed, cfg.augment,
                                   cfg.download, **extra)


__all__ = [
    "DATASETS", "DESCRIPTIONS", "Augment", "DataBundle", "TensorLoader", "TensorSplit",
    "data_root", "load_dataset", "make_loader", "split_indices",
]
