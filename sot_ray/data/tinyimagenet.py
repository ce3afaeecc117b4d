"""Tiny-ImageNet-200 from the ``tiny-imagenet-200`` folder exactly as distributed.

``train/<wnid>/images/*.JPEG`` are read with torchvision's ImageFolder (classes in sorted wnid
order); the official ``val/images`` with ``val/val_annotations.txt`` serve as the test set (the
official test labels are not public); our validation split is carved from train.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import default_loader

from ..errors import SotError
from .base import DataBundle, IndexedDataset, split_indices

MEAN = (0.4802, 0.4481, 0.3975)
STD = (0.2302, 0.2265, 0.2262)
FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


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


def load(root: Path, val_fraction: float, split_seed: int, augment: bool, download: bool) -> DataBundle:
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
    normalize = transforms.Normalize(MEAN, STD)
    plain = transforms.Compose([transforms.ToTensor(), normalize])
    train_tf = transforms.Compose([
        transforms.RandomRotation(20),
        transforms.RandomCrop(64, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        normalize,
    ]) if augment else plain
    return DataBundle(
        name="tinyimagenet", num_classes=len(train_full.classes), input_size=64, mean=MEAN, std=STD,
        train=IndexedDataset(train_full, tr, plain), val=IndexedDataset(train_full, va, plain),
        test=IndexedDataset(test, None, plain), train_transform=train_tf,
    )
