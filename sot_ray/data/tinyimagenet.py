"""Tiny-ImageNet-200 from the ``tiny-imagenet-200`` folder exactly as distributed.

``train/<wnid>/images/*.JPEG`` are read with torchvision's ImageFolder (classes in sorted wnid
order); the official ``val/images`` with ``val/val_annotations.txt`` serve as the test set (the
official test labels are not public); our validation split is carved from train.

By default (``data.in_memory``) every image is decoded once into one uint8 tensor (100,000 train
images: 1.2 GB) and augmented batch-wise on the training device with the reference's rotation
(20 degrees), padded crop and flip; the decoded arrays are cached next to the data as
``sot-ray-uint8.npz`` (plain arrays, loaded without pickle) when that folder is writable. With
``in_memory: false`` the per-sample torchvision path reads the JPEGs every epoch.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import default_loader

from ..errors import SotError
from .base import Augment, DataBundle, IndexedDataset, TensorSplit, split_indices

MEAN = (0.4802, 0.4481, 0.3975)
STD = (0.2302, 0.2265, 0.2262)
FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
SIZE = 64
CACHE = "sot-ray-uint8.npz"
ROTATE = 20.0


def where(root: Path) -> str:
    return str(root / FOLDER) + "/{wnids.txt,train/,val/val_annotations.txt}"


class _ValImages(Dataset):
    """The official validation images, labelled through ``val_annotations.txt``."""

    def __init__(self, folder: Path, class_to_idx: dict[str, int]):
        self.samples = []
        ann = folder / "val_annotations.txt"
        for line_no, line in enumerate(ann.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2 or parts[1] not in class_to_idx:
                raise SotError(f"{ann}: line {line_no} names no known class")
            self.samples.append((folder / "images" / parts[0], class_to_idx[parts[1]]))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, target = self.samples[i]
        return default_loader(str(path)), target


def _decode(path: str) -> np.ndarray:
    with Image.open(path) as img:
        if img.size != (SIZE, SIZE):
            raise SotError(f"{path} is {img.size[0]}x{img.size[1]}, not {SIZE}x{SIZE}; the in-memory "
                           "path needs Tiny-ImageNet's size (set data.in_memory=false)")
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _decode_all(paths: list[str]) -> torch.Tensor:
    """(N, 3, 64, 64) uint8; PIL releases the GIL while decoding, so threads scale."""
    out = np.empty((len(paths), SIZE, SIZE, 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        for i, arr in enumerate(pool.map(_decode, paths, chunksize=256)):
            out[i] = arr
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _manifest(paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _in_memory(base: Path, train_full: ImageFolder, test: "_ValImages") -> tuple[TensorSplit, TensorSplit]:
    train_paths = [p for p, _ in train_full.samples]
    test_paths = [str(p) for p, _ in test.samples]
    key = _manifest(train_paths + test_paths)
    cache = base / CACHE
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                if str(z["manifest"]) == key:
                    return (TensorSplit(torch.from_numpy(z["train_x"]), torch.from_numpy(z["train_y"])),
                            TensorSplit(torch.from_numpy(z["test_x"]), torch.from_numpy(z["test_y"])))
        except (OSError, ValueError, KeyError):
            pass  # unreadable or stale: decode again
    train = TensorSplit(_decode_all(train_paths),
                        torch.tensor([t for _, t in train_full.samples], dtype=torch.long))
    test_split = TensorSplit(_decode_all(test_paths), torch.tensor([t for _, t in test.samples], dtype=torch.long))
    tmp = base / f".{CACHE}.{os.getpid()}.tmp.npz"
    try:
        np.savez(tmp, manifest=np.array(key), train_x=train.x.numpy(), train_y=train.y.numpy(),
                 test_x=test_split.x.numpy(), test_y=test_split.y.numpy())
        os.replace(tmp, cache)
    except OSError:  # a read-only data folder: decode again next time
        tmp.unlink(missing_ok=True)
    return train, test_split


def load(root: Path, val_fraction: float, split_seed: int, augment: bool, download: bool,
         in_memory: bool = True) -> DataBundle:
    base = root / FOLDER
    if download and not base.is_dir():
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(URL, str(root), md5="90528d7ca1a48142e341f4ef8d21d0de")
    missing = [p for p in ("train", "val/images", "val/val_annotations.txt") if not (base / p).exists()]
    if missing:
        raise SotError(
            f"Tiny-ImageNet not found in {base} (missing {', '.join(missing)}); pass --download "
            "or point --data-root / $SOT_DATA_ROOT at the folder holding tiny-imagenet-200"
        )
    try:
        train_full = ImageFolder(str(base / "train"))
    except (FileNotFoundError, RuntimeError) as exc:
        raise SotError(f"Tiny-ImageNet train folder unreadable: {exc}") from None
    test = _ValImages(base / "val", train_full.class_to_idx)
    tr, va = split_indices(len(train_full), val_fraction, split_seed)
    if in_memory:
        full, test_split = _in_memory(base, train_full, test)
        return DataBundle(
            name="tinyimagenet", num_classes=len(train_full.classes), input_size=SIZE, mean=MEAN,
            std=STD, train=full.subset(tr), val=full.subset(va), test=test_split,
            augment=Augment(crop_pad=4, flip=True, rotate=ROTATE) if augment else Augment(),
        )
    normalize = transforms.Normalize(MEAN, STD)
    plain = transforms.Compose([transforms.ToTensor(), normalize])
    train_tf = transforms.Compose([
        transforms.RandomRotation(ROTATE),
        transforms.RandomCrop(SIZE, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        normalize,
    ]) if augment else plain
    return DataBundle(
        name="tinyimagenet", num_classes=len(train_full.classes), input_size=SIZE, mean=MEAN, std=STD,
        train=IndexedDataset(train_full, tr, plain), val=IndexedDataset(train_full, va, plain),
        test=IndexedDataset(test, None, plain), train_transform=train_tf,
    )
