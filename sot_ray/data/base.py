"""What every data set provides, the deterministic validation split, and the loaders.

Two loading paths yield the same ``(input, target, index)`` batches:

- :class:`TensorLoader` keeps a whole split as one tensor (uint8 images where possible) and
  applies the augmentation batch-wise on the training device (random rotation, random crop with
  zero padding, horizontal flip), seeded per epoch; used for every data set by default;
- a torch ``DataLoader`` over a per-sample torchvision data set with torchvision transforms,
  for data that does not fit in memory (Tiny-ImageNet's JPEG folders with
  ``data.in_memory: false``).
"""

from __future__ import annotations

import abc

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset


@dataclass(frozen=True)
class Augment:
    crop_pad: int = 0  # random crop of the input size after zero padding (0 = none)
    flip: bool = False  # random horizontal flip
    rotate: float = 0.0  # random rotation by an angle uniform in [-rotate, rotate] degrees

    @property
    def any(self) -> bool:
        return bool(self.crop_pad or self.flip or self.rotate)


@dataclass
class TensorSplit:
    """Images (N, C, H, W) as uint8 (scale 255) or float (scale 1), integer targets."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: torch.Tensor) -> "TensorSplit":
        return TensorSplit(self.x[idx], self.y[idx])


@dataclass
class DataBundle:
    """A loaded data set, split into train / val / test, ready for the engine."""

    name: str
    num_classes: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: object  # TensorSplit or torch Dataset yielding (x, y, index)
    val: object
    test: object
    augment: Augment = field(default_factory=Augment)
    # file-backed data sets: torchvision transforms for the per-sample path
    train_transform: Callable | None = None
    # synthetic only: p*(y|x) of each training sample, aligned with `train`
    p_star_train: torch.Tensor | None = None

    @property
    def num_train(self) -> int:
        return len(self.train)


def split_indices(n: int, val_fraction: float, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx): a seeded permutation; the first ``round(n*val_fraction)`` go to val."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    n_val = int(round(n * val_fraction))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


class _EpochLoader(abc.ABC):
    """What both loading paths share: length in batches, the epoch, the per-epoch generator."""

    batch_size: int
    seed: int
    epoch: int = 0
    rank: int = 0
    world: int = 1

    @property
    @abc.abstractmethod
    def split_size(self) -> int:
        """Samples in the split (each path knows its own)."""

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch: an equal share (the remainder is dropped, as
        DistributedSampler(drop_last=True) does), so every rank takes the same number of steps."""
        return self.split_size // self.world

    def shard(self, rank: int, world: int) -> "_EpochLoader":
        """Data-parallel training: rank ``rank`` of ``world`` takes every world-th sample of the
        epoch's (shared) order."""
        self.rank, self.world = rank, world
        return self

    def epoch_order(self, gen: torch.Generator, shuffle: bool) -> torch.Tensor:
        n = self.split_size
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        if self.world > 1:
            order = order[self.rank::self.world][:self.num_samples]
        return order

    def __len__(self) -> int:
        return (self.num_samples + self.batch_size - 1) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_generator(self) -> torch.Generator:
        """Same (seed, epoch), same order and augmentation, whatever happened before."""
        return torch.Generator().manual_seed(self.seed * 100003 + self.epoch)


class TensorLoader(_EpochLoader):
    """Shuffled (or ordered) batches of a :class:`TensorSplit`, augmented and normalised on device.

    Deterministic: epoch ``e`` of a loader built with ``seed`` draws the same order and the same
    crops and flips on any machine, whatever happened before.
    """

    def __init__(self, split: TensorSplit, batch_size: int, mean, std, device: torch.device,
                 shuffle: bool = False, augment: Augment | None = None, seed: int = 0):
        self.x = split.x.to(device)
        self.y = split.y.to(device)
        self.scale = 255.0 if split.x.dtype == torch.uint8 else 1.0
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.batch_size, self.shuffle, self.augment, self.seed = batch_size, shuffle, augment, seed
        self.device = device
        self.epoch = 0

    @property
    def split_size(self) -> int:
        return len(self.y)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        gen = self.epoch_generator()
        order = self.epoch_order(gen, self.shuffle)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            idx_dev = idx.to(self.device)
            x = self.x.index_select(0, idx_dev)
            if self.augment is not None:
                x = augment_batch(x, self.augment, gen)
            x = (x.float() / self.scale - self.mean) / self.std
            yield x, self.y.index_select(0, idx_dev), idx_dev


def rotate_batch(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``x`` about its centre by its angle (counter-clockwise, degrees),
    nearest-neighbour, zero fill: what torchvision's ``RandomRotation`` does to one image."""
    b, _, h, w = x.shape
    rad = degrees.to(x.device, torch.float32) * (torch.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    # output pixel -> input pixel, in normalised coordinates (y down): rotation by -angle,
    # with the aspect ratio undone so non-square images rotate rigidly
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros",
                                          align_corners=False)
    return out.round().to(x.dtype) if x.dtype == torch.uint8 else out


def augment_batch(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Random rotation, then random crop (zero padding ``crop_pad``) and horizontal flip (in one
    gather), per sample, in torchvision's order."""
    b, c, h, w = x.shape
    dev = x.device
    if aug.rotate:
        x = rotate_batch(x, (torch.rand(b, generator=gen) * 2.0 - 1.0) * aug.rotate)
    rows = torch.arange(h, device=dev).expand(b, h)
    cols = torch.arange(w, device=dev).expand(b, w)
    if aug.crop_pad:
        p = aug.crop_pad
        x = torch.nn.functional.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b, 1), generator=gen).to(dev)
        ox = torch.randint(0, 2 * p + 1, (b, 1), generator=gen).to(dev)
        rows, cols = rows + oy, cols + ox
    if aug.flip:
        flip = (torch.rand(b, generator=gen) < 0.5).to(dev).unsqueeze(1)
        cols = torch.where(flip, cols.flip(1), cols)
    bi = torch.arange(b, device=dev).view(b, 1, 1, 1)
    ci = torch.arange(c, device=dev).view(1, c, 1, 1)
    return x[bi, ci, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


class IndexedDataset(Dataset):
    """A view of ``base`` at ``indices`` with a transform, yielding ``(x, y, position)``."""

    def __init__(self, base: Dataset, indices: torch.Tensor | None, transform: Callable | None):
        self.base = base
        self.indices = indices.tolist() if indices is not None else list(range(len(base)))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        img, target = self.base[self.indices[i]]
        if self.transform is not None:
            img = self.transform(img)
        return img, int(target), i


def make_loader(bundle: DataBundle, which: str, batch_size: int, device: torch.device,
                seed: int = 0, num_workers: int = 0, train_mode: bool | None = None):
    """A loader over ``bundle.<which>``; ``train_mode`` (default: which == 'train') shuffles and
    augments."""
    split = getattr(bundle, which)
    train_mode = (which == "train") if train_mode is None else train_mode
    if isinstance(split, TensorSplit):
        aug = bundle.augment if train_mode and bundle.augment.any else None
        return TensorLoader(split, batch_size, bundle.mean, bundle.std, device,
                            shuffle=train_mode, augment=aug, seed=seed)
    return _SampleLoader(bundle, split, batch_size, device, train_mode, seed, num_workers)


class _SampleLoader(_EpochLoader):
    """The per-sample path: a DataLoader with torchvision transforms, moved to ``device``."""

    def __init__(self, bundle: DataBundle, split: IndexedDataset, batch_size: int,
                 device: torch.device, train_mode: bool, seed: int, num_workers: int):
        self.split, self.device, self.seed, self.epoch = split, device, seed, 0
        self.train_mode = train_mode
        self.bundle = bundle
        self.batch_size, self.num_workers = batch_size, num_workers

    @property
    def split_size(self) -> int:
        return len(self.split)

    def __iter__(self):
        gen = self.epoch_generator()
        view = self.split
        if self.train_mode and self.bundle.train_transform is not None:
            view = IndexedDataset(self.split.base, torch.tensor(self.split.indices),
                                  self.bundle.train_transform)
        torch.manual_seed(gen.initial_seed())  # torchvision's random transforms draw from here
        shuffle = self.train_mode
        if self.world > 1:  # this rank's share of the epoch's order, in that order
            view, shuffle = Subset(view, self.epoch_order(gen, self.train_mode).tolist()), False
        loader = DataLoader(view, batch_size=self.batch_size, shuffle=shuffle,
                            generator=gen, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda")
        for x, y, i in loader:
            yield (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True),
                   i.to(self.device, non_blocking=True))
