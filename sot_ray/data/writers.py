"""Small data sets written in the real on-disk formats of CIFAR-100 and Tiny-ImageNet.

For tests, benchmarks and dry runs of a recipe without the real data: the files are what the
archives hold (CIFAR's python-version pickles; Tiny-ImageNet's folder of JPEGs with its
annotation files), so they are read by exactly the loaders the real data goes through. The
images are random with a weak class signal, so training can learn something.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def write_cifar100(root: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """CIFAR-100's python-version files (train, test, meta pickles) as the archive holds them."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        # a weak class signal so that training can learn something
        data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        data[:, :32] = (fine[:, None] * 2).astype(np.uint8)
        entry = {
            "filenames": [f"img_{i}.png" for i in range(n)],
            "batch_label": f"{name} batch",
            "fine_labels": fine.tolist(),
            "coarse_labels": (fine // 5).tolist(),
            "data": data,
        }
        with open(base / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    meta = {"fine_label_names": [f"class{i}" for i in range(100)],
            "coarse_label_names": [f"super{i}" for i in range(20)]}
    with open(base / "meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return root


def write_tinyimagenet(root: Path, n_classes: int = 3, per_class: int = 4, n_val: int = 6) -> Path:
    """The tiny-imagenet-200 layout as distributed: wnids, train/<wnid>/images, val annotations."""
    rng = np.random.default_rng(0)
    base = root / "tiny-imagenet-200"
    wnids = [f"n0{1000000 + i}" for i in range(n_classes)]
    (base / "train").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    for w in wnids:
        img_dir = base / "train" / w / "images"
        img_dir.mkdir(parents=True)
        boxes = []
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(img_dir / f"{w}_{i}.JPEG")
            boxes.append(f"{w}_{i}.JPEG\t0\t0\t63\t63")
        (base / "train" / w / f"{w}_boxes.txt").write_text("\n".join(boxes) + "\n")
    (base / "val" / "images").mkdir(parents=True)
    lines = []
    for i in range(n_val):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(base / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{wnids[i % n_classes]}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (base / "test" / "images").mkdir(parents=True)
    return root
