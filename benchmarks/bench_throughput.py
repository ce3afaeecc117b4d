"""Teacher training throughput (images/s): sot-ray's engine vs the reference-style loop.

Same model, objective (CE + Lipschitz + consistency with an active bank), SGD and batch 64, on
CIFAR-100-format files, in one process on one machine. sot-ray's figure is the engine's own
epoch-2 training time (epoch 1 has no consistency term yet), with its defaults for the device
(fp32 + channels-last on CPU, bf16 + channels-last on CUDA) and, on CPU, also with bf16; the reference's is one timed pass
of the same number of images after its first batch, with 0 and with N DataLoader workers (the
better of the two is compared).

    python benchmarks/bench_throughput.py            # CPU: wrn_16_2, resnet8x4
    python benchmarks/bench_throughput.py --gpu      # plus wrn_40_2, bf16 + channels-last
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from _common import cifar_files, machine, pick_device, reference_loader, reference_train, table, write_json

from sot_ray import config as C
from sot_ray.engine import TeacherTrainer
from sot_ray.engine.rundir import read_history
from sot_ray.models import create_model


def engine_images_per_s(model: str, root: Path, device: torch.device, n_train: int, extra: dict) -> dict:
    out = Path(tempfile.mkdtemp(prefix="sot-ray-bench-run-")) / "t"
    cfg = C.from_dict(C.TeacherConfig, C.merge({
        "model": model, "data": {"name": "cifar100", "root": str(root), "val_fraction": 0.02},
        "train": {"epochs": 2, "device": str(device), "eval_batch_size": 512},
        "reg": {"lip_coef": 1e-5, "consist_coef": 1.0},
    }, extra))
    summary = TeacherTrainer(cfg, out, log=lambda _l: None).run()
    epoch2 = read_history(out)[-1]
    shutil.rmtree(out.parent, ignore_errors=True)
    n = n_train - round(n_train * 0.02)
    return {"images": n, "seconds": epoch2["time/train_s"], "images_per_s": n / epoch2["time/train_s"],
            "compute": summary["compute"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--images", type=int, default=3200, help="training images per timed pass")
    ap.add_argument("--ref-workers", type=int, default=min(8, torch.get_num_threads()),
                    help="DataLoader workers of the reference loop's second variant (its scripts use 8)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = pick_device(args.gpu)
    models = args.models or (["wrn_16_2", "resnet8x4", "wrn_40_2"] if args.gpu else ["wrn_16_2", "resnet8x4"])
    root = cifar_files(args.images)
    rows, results = [], {}
    for name in models:
        ours = engine_images_per_s(name, root, device, args.images, {})  # the defaults
        fast = None if args.gpu else engine_images_per_s(name, root, device, args.images,
                                                          {"train": {"precision": "bf16"}})
        refs = {}
        for workers in sorted({0, args.ref_workers}):
            torch.manual_seed(0)
            model = create_model(name, 100).to(device)
            loader = reference_loader(root, 64, workers, device)
            refs[workers] = reference_train(model, loader, device, args.images, 100, 1e-5, 1.0,
                                            max_images=ours["images"])
        best_ref = max(refs.values(), key=lambda r: r["images_per_s"])
        ratio = ours["images_per_s"] / best_ref["images_per_s"]
        results[name] = {"sot_ray": ours, "reference": {f"workers_{w}": r for w, r in refs.items()},
                         "ratio_vs_best_reference": ratio}
        row = [name, ours["images_per_s"]] + [refs[w]["images_per_s"] for w in sorted(refs)] + [ratio]
        if fast is not None:
            results[name]["sot_ray_bf16"] = fast
            results[name]["ratio_bf16_vs_best_reference"] = fast["images_per_s"] / best_ref["images_per_s"]
            row += [fast["images_per_s"], results[name]["ratio_bf16_vs_best_reference"]]
        rows.append(row)
    header = ["model", "sot-ray img/s"] + [f"ref img/s ({w} workers)" for w in sorted(refs)] + ["ratio"]
    if not args.gpu:
        header += ["sot-ray bf16 img/s", "ratio bf16"]
    print(table(f"teacher training throughput on {device} (ratio = sot-ray / best reference)", header, rows))
    shutil.rmtree(root, ignore_errors=True)
    write_json("throughput_gpu" if args.gpu else "throughput", {"machine": machine(device), "results": results}, args.out)


if __name__ == "__main__":
    main()
