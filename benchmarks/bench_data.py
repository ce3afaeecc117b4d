"""The data path alone (batches/s over one training epoch): sot-ray's device-resident loader vs
the reference-style DataLoader with per-sample PIL transforms, same augmentation (padded crop,
flip, normalisation), batch 64, CIFAR-100-format files.

    python benchmarks/bench_data.py [--images 10000] [--gpu]
"""

from __future__ import annotations

import argparse
import shutil
import time

import torch
from _common import cifar_files, machine, pick_device, reference_loader, sync, table, write_json

from sot_ray.config import DataConfig
from sot_ray.data import load_dataset, make_loader


def batches_per_s(loader, device) -> dict:
    it = iter(loader)
    next(it)  # start-up (workers, first allocation) is not timed
    sync(device)
    t0, n = time.perf_counter(), 0
    for x, _y, _i in it:
        x.sum().item() if device.type == "cpu" else None  # the batch is really produced
        n += 1
    sync(device)
    secs = time.perf_counter() - t0
    return {"batches": n, "seconds": secs, "batches_per_s": n / secs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--ref-workers", type=int, default=min(8, torch.get_num_threads()))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = pick_device(args.gpu)
    root = cifar_files(args.images)
    bundle = load_dataset(DataConfig(name="cifar100", root=str(root), val_fraction=0.1))
    ours = make_loader(bundle, "train", 64, device, seed=0)
    ours.set_epoch(1)
    results = {"sot_ray": batches_per_s(ours, device)}
    for w in sorted({0, args.ref_workers}):
        results[f"reference_workers_{w}"] = batches_per_s(reference_loader(root, 64, w, device), device)
    best = max(v["batches_per_s"] for k, v in results.items() if k.startswith("reference"))
    results["ratio_vs_best_reference"] = results["sot_ray"]["batches_per_s"] / best
    rows = [[k, v["batches_per_s"], v["batches_per_s"] / best]
            for k, v in results.items() if isinstance(v, dict)]
    print(table(f"data path, batches/s of 64 on {device} (ratio vs the best reference)",
                ["loader", "batches/s", "ratio"], rows))
    shutil.rmtree(root, ignore_errors=True)
    write_json("data_gpu" if args.gpu else "data", {"machine": machine(device), "results": results}, args.out)


if __name__ == "__main__":
    main()
