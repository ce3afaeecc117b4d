"""Regularizer overhead: one SGD step with both SoTeacher terms (Lipschitz + consistency, bank
active) vs plain cross-entropy, same model and batches; and the Lipschitz term alone, sot-ray's
batched form vs the reference-style Python loop over modules.

Timings are medians over interleaved repeats (CE, SoTeacher, CE, ...) so drift hits both alike.

    python benchmarks/bench_regularizer.py [--gpu] [--models wrn_16_2 resnet8x4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from _common import machine, pick_device, reference_lipschitz, sync, table, write_json

from sot_ray import config as C
from sot_ray.data import DataBundle, TensorSplit
from sot_ray.engine import TeacherTrainer


def trainer(model: str, device: torch.device, lip: float, consist: float, n: int) -> TeacherTrainer:
    cfg = C.from_dict(C.TeacherConfig, {"model": model, "train": {"device": str(device)},
                                        "reg": {"lip_coef": lip, "consist_coef": consist,
                                                                "track_gap": False}})
    t = TeacherTrainer(cfg, tempfile.mkdtemp(prefix="sot-ray-bench-"), log=lambda _l: None)
    t.device = device
    x = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    bundle = DataBundle("bench", 100, 32, (0.5,) * 3, (0.25,) * 3, TensorSplit(x, torch.zeros(n, dtype=torch.long)),
                        None, None)
    torch.manual_seed(0)
    t.build(bundle)
    t.compute = t._setup_compute()
    if t.consist is not None:
        t.consist.epochs_done += 1  # the bank is active, as from epoch 2 on
        t.consist_w = consist
    t.optimizer = torch.optim.SGD(t.model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    t.model.train()
    return t


def step_time(t: TeacherTrainer, batches, device) -> float:
    amp = t.compute["precision"] == "bf16"
    sync(device)
    t0 = time.perf_counter()
    for x, y, idx in batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            _, total, _ = t.compute_loss(x, y, idx)
        t.optimizer.zero_grad(set_to_none=True)
        total.backward()
        t.optimizer.step()
    sync(device)
    return (time.perf_counter() - t0) / len(batches)


def lip_time(fn, model, device, reps: int) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn().backward()
    sync(device)
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = pick_device(args.gpu)
    models = args.models or (["wrn_16_2", "resnet8x4", "wrn_40_2"] if args.gpu else ["wrn_16_2", "resnet8x4"])
    n = 64 * args.steps
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(n, 3, 32, 32, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
    ys = torch.randint(0, 100, (n,), generator=gen).to(device)
    batches = [(xs[i:i + 64], ys[i:i + 64], torch.arange(i, i + 64, device=device)) for i in range(0, n, 64)]
    rows, results = [], {}
    for name in models:
        plain, soteacher = trainer(name, device, 0.0, 0.0, n), trainer(name, device, 1e-5, 1.0, n)
        step_time(plain, batches[:2], device), step_time(soteacher, batches[:2], device)  # warm-up
        ce, both = [], []
        for _ in range(args.repeats):
            ce.append(step_time(plain, batches, device))
            both.append(step_time(soteacher, batches, device))
        ce_s, both_s = statistics.median(ce), statistics.median(both)
        model = soteacher.model
        ours_lip = statistics.median(lip_time(soteacher.lip, model, device, 20) for _ in range(args.repeats))
        ref_lip = statistics.median(lip_time(lambda: reference_lipschitz(model), model, device, 20)
                                    for _ in range(args.repeats))
        ref_step = ce_s + ref_lip  # the same step with the reference's Lipschitz loop instead of ours
        results[name] = {"step_ce_s": ce_s, "step_soteacher_s": both_s, "overhead": both_s / ce_s - 1.0,
                         "lip_batched_s": ours_lip, "lip_python_loop_s": ref_lip,
                         "lip_speedup": ref_lip / ours_lip, "reference_style_overhead": ref_step / ce_s - 1.0}
        rows.append([name, ce_s * 1e3, both_s * 1e3, f"{100 * (both_s / ce_s - 1):.1f}%",
                     ours_lip * 1e3, ref_lip * 1e3, ref_lip / ours_lip])
    print(table(f"regularizer overhead on {device} (batch 64; ms per step)",
                ["model", "CE step ms", "SoTeacher step ms", "overhead", "Lip ms (batched)",
                 "Lip ms (python loop)", "Lip speed-up"], rows))
    write_json("regularizer_gpu" if args.gpu else "regularizer", {"machine": machine(device), "results": results}, args.out)


if __name__ == "__main__":
    main()
