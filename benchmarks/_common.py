"""What the benchmarks share: the machine's description, tables of ratios, JSON output, data in
CIFAR-100's on-disk format, and the reference-style training loop sot-ray is compared with.

The reference-style loop is written here from the description of the SoTeacher / RepDistiller
training scripts (not copied): torchvision's CIFAR100 data set with per-sample PIL transforms in
a DataLoader, the Lipschitz penalty as a Python loop over every module at every step, and the
consistency bank indexed per batch. Same model, same objective, same SGD.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"


def machine(device: torch.device) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def pick_device(gpu: bool) -> torch.device:
    if gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device here")
    return torch.device("cuda" if gpu else "cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [header] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells[1:]]
    return "\n".join(lines)


def write_json(name: str, payload: dict, out: str | None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {path}")
    return path


def cifar_files(n_train: int, n_test: int = 500) -> Path:
    """A temporary root holding CIFAR-100 files (python-version pickles) of ``n_train`` images."""
    from sot_ray.data.writers import write_cifar100

    root = Path(tempfile.mkdtemp(prefix="sot-ray-bench-cifar-"))
    return write_cifar100(root, n_train=n_train, n_test=n_test)


# ------------------------------------------------------------------ the reference-style loop


def reference_lipschitz(model: nn.Module) -> torch.Tensor:
    """The Lipschitz proxy as a Python loop over every leaf module, recomputed each step."""
    total = 0.0
    for m in model.modules():
        if any(True for _ in m.children()):
            continue
        if isinstance(m, nn.Conv2d):
            total = total + m.weight.abs().sum()
        elif isinstance(m, nn.BatchNorm2d):
            total = total + (m.weight.abs() / torch.sqrt(m.running_var + m.eps)).max()
        elif isinstance(m, nn.Linear):
            total = total + m.weight.abs().sum(dim=0).max()
    return total


def reference_loader(root: Path, batch_size: int, workers: int, device: torch.device):
    """torchvision's CIFAR100 with per-sample PIL transforms, in a DataLoader (indices added)."""
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms
    from sot_ray.data.cifar100 import MEAN, STD
    from sot_ray.data.cifar100 import _LocalCIFAR100 as CIFAR100  # torchvision's, minus the MD5 check

    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    class Indexed(Dataset):  # the reference's CIFAR100Instance: (img, target, index)
        def __init__(self):
            self.base = CIFAR100(str(root), train=True, download=False, transform=tf)

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            img, target = self.base[i]
            return img, target, i

    return DataLoader(Indexed(), batch_size=batch_size, shuffle=True, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0)


def reference_train(model: nn.Module, loader, device: torch.device, num_train: int, num_classes: int,
                    lip_coef: float, consist_w: float, max_images: int | None = None) -> dict:
    """One pass of the reference-style teacher loop; returns images, seconds, images/s."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    bank = torch.full((num_train, num_classes), 1.0 / num_classes, device=device)
    model.train()
    seen, t0 = 0, None
    for step, (x, y, idx) in enumerate(loader):
        if step == 1:  # the first batch pays for worker start-up and allocation: not timed
            sync(device)
            t0, seen = time.perf_counter(), 0
        x, y, idx = x.to(device, non_blocking=True), y.to(device), idx.to(device)
        logits = model(x).logits
        loss = F.cross_entropy(logits, y) + lip_coef * reference_lipschitz(model)
        probs = F.softmax(logits, dim=1)
        loss = loss + consist_w * (probs - bank[idx]).pow(2).sum(1).mean()
        bank[idx] = 0.5 * bank[idx] + 0.5 * probs.detach()
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
        if max_images and seen >= max_images:
            break
    sync(device)
    secs = time.perf_counter() - t0
    return {"images": seen, "seconds": secs, "images_per_s": seen / secs}
