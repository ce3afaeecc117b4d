"""scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes), presented as
3x32x32 images so every zoo model runs on them: the no-download data set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from .base import Augment, DataBundle, TensorSplit, split_indices

TEST_FRACTION = 0.2
TEST_SEED = 12345  # the held-out test set is fixed, whatever the validation split seed


def where(root) -> str:
    return "bundled with scikit-learn (no files needed)"


def load(root, val_fraction: float, split_seed: int, augment: bool, download: bool) -> DataBundle:
    raw = load_digits()
    x = torch.as_tensor(raw.images, dtype=torch.float32)  # (N, 8, 8), values 0..16
    x = F.interpolate(x.unsqueeze(1), size=32, mode="nearest").repeat(1, 3, 1, 1)
    x = (x * (255.0 / 16.0)).round().to(torch.uint8)
    y = torch.as_tensor(raw.target, dtype=torch.long)
    full = TensorSplit(x, y)
    rest, test_idx = split_indices(len(full), TEST_FRACTION, TEST_SEED)
    pool = full.subset(rest)
    tr, va = split_indices(len(pool), val_fraction, split_seed)
    train = pool.subset(tr)
    mean = float(train.x.float().mean() / 255.0)
    std = float(train.x.float().std() / 255.0)
    return DataBundle(
        name="digits", num_classes=10, input_size=32, mean=(mean,) * 3, std=(std,) * 3,
        train=train, val=pool.subset(va), test=full.subset(test_idx),
        # shifts of up to one original pixel; no flips (a flipped digit is another symbol)
        augment=Augment(crop_pad=4, flip=False) if augment else Augment(),
    )
