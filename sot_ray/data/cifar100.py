"""CIFAR-100 through torchvision's loader, from a local root (downloaded only on request)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR100

from ..errors import SotError
from .base import Augment, DataBundle, TensorSplit, split_indices

MEAN = (0.5071, 0.4867, 0.4408)
STD = (0.2675, 0.2565, 0.2761)
FOLDER = CIFAR100.base_folder  # "cifar-100-python"


class _LocalCIFAR100(CIFAR100):
    """torchvision's CIFAR100, checking that the files are there instead of re-hashing ~180 MB
    at every load; the archive's MD5 is still verified by torchvision when it downloads (and a
    truncated file still fails to unpickle)."""

    def _check_integrity(self) -> bool:
        base = Path(self.root) / self.base_folder
        names = [n for n, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        return all((base / n).is_file() for n in names)

    def _load_meta(self) -> None:  # torchvision's, minus the MD5 check
        path = Path(self.root) / self.base_folder / self.meta["filename"]
        if not path.is_file():
            raise RuntimeError("meta file missing")
        with open(path, "rb") as f:
            # CIFAR's own format is a pickle (as torchvision reads it): only point at trusted data
            data = pickle.load(f, encoding="latin1")
        self.classes = data[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


def where(root: Path) -> str:
    return str(root / FOLDER) + "/{train,test,meta}"


def load(root: Path, val_fraction: float, split_seed: int, augment: bool, download: bool) -> DataBundle:
    if download:
        root.mkdir(parents=True, exist_ok=True)
        CIFAR100(str(root), train=True, download=True)  # verifies the archive's MD5
    try:
        train = _LocalCIFAR100(str(root), train=True, download=False)
        test = _LocalCIFAR100(str(root), train=False, download=False)
    except RuntimeError:
        raise SotError(
            f"CIFAR-100 files not found in {root / FOLDER} (need train, test, meta); "
            "pass --download to fetch them, or point --data-root / $SOT_DATA_ROOT at them"
        ) from None
    except Exception as exc:  # a truncated or foreign pickle
        raise SotError(f"CIFAR-100 files in {root / FOLDER} could not be read: {exc}") from None
    full = TensorSplit(_nchw(train.data), torch.as_tensor(np.asarray(train.targets), dtype=torch.long))
    tr, va = split_indices(len(full), val_fraction, split_seed)
    return DataBundle(
        name="cifar100", num_classes=100, input_size=32, mean=MEAN, std=STD,
        train=full.subset(tr), val=full.subset(va),
        test=TensorSplit(_nchw(test.data), torch.as_tensor(np.asarray(test.targets), dtype=torch.long)),
        augment=Augment(crop_pad=4, flip=True) if augment else Augment(),
    )


def _nchw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous()
