"""Sweep overhead per executor: the wall time of a 4-trial teacher sweep (two trials at a time,
one CPU each, a local Ray instance) against the training time its trials report.

For each executor (``trial``: the engine inside the Tune trial; ``train``: a Ray Train worker
group per trial) it prints
- per trial: Tune's trial time minus the engine's own run time (start-up inside the trial,
  reporting, test evaluation is part of the engine and not counted as overhead);
- per sweep: wall time x concurrency / sum of the engines' run times - 1, which also counts
  actor start-up, scheduling and shutdown.

    python benchmarks/bench_sweep.py [--epochs 25] [--executors trial train] [--gpu]

With --gpu it instead measures packing: trials per hour with 1, 2 and 4 trials per GPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import machine, table, write_json

from sot_ray.results import read_rows
from sot_ray.tune.spec import C, SweepSpec, validate_spec


def spec_for(name: str, executor: str, epochs: int, gpus: float = 0.0, model: str = "resnet8",
             dataset: str = "digits") -> SweepSpec:
    data = {
        "name": name,
        "teachers": {
            "config": {"model": model, "data": {"name": dataset},
                       "train": {"epochs": epochs, "device": "cuda" if gpus else "cpu"},
                       "reg": {"consist_start_at": 1}},
            "search": {"lip_coef": {"grid": [1e-5, 2e-5]}, "consist_coef": {"grid": [0.5, 1.0]}},
            "control": False, "asha": None,
        },
        "resources": {"workers": 1, "executor": executor, "cpus_per_worker": 1, "gpus_per_worker": gpus},
    }
    spec = C.from_dict(SweepSpec, data)
    validate_spec(spec)
    return spec


def run_sweep(spec: SweepSpec, storage: Path) -> dict:
    from sot_ray.tune.sweep import sweep_teachers

    t0 = time.perf_counter()
    exp, result = sweep_teachers(spec, storage, echo=False)
    wall = time.perf_counter() - t0
    rows = read_rows(exp / "teachers.parquet")
    engines = [json.loads((Path(r["run_dir"]) / "metrics.json").read_text()) for r in rows]
    engine_s = [m["wall_time_s"] for m in engines]
    per_trial = [r["trial_wall_s"] - m["wall_time_s"] for r, m in zip(rows, engines)]
    return {"trials": len(rows), "finished": sum(r["status"] == "finished" for r in rows),
            "wall_s": wall, "engine_s": engine_s, "train_s": [m["train_time_s"] for m in engines],
            "per_trial_overhead_s": per_trial, "tune_trial_s": [r["trial_wall_s"] for r in rows]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=25, help="per trial (25 digits epochs: about a minute here)")
    ap.add_argument("--executors", nargs="*", default=["trial", "train"])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from sot_ray.tune import cluster

    storage = Path(tempfile.mkdtemp(prefix="sot-ray-bench-sweep-"))
    results, rows = {}, []
    try:
        if args.gpu:
            if not torch.cuda.is_available():
                raise SystemExit("--gpu: no CUDA device here")
            for per_gpu in (1, 2, 4):
                spec = spec_for(f"pack{per_gpu}", "trial", args.epochs, gpus=1.0 / per_gpu,
                                model="wrn_16_2", dataset="synthetic")
                cluster.connect(spec.ray)
                r = run_sweep(spec, storage)
                r["trials_per_hour"] = r["trials"] * 3600.0 / r["wall_s"]
                results[f"{per_gpu}_per_gpu"] = r
                rows.append([per_gpu, r["wall_s"], r["trials_per_hour"]])
            print(table("packing on one GPU (4 wrn_16_2 trials)", ["trials per GPU", "wall s", "trials/hour"], rows))
            device = torch.device("cuda")
        else:
            for executor in args.executors:
                spec = spec_for(f"overhead_{executor}", executor, args.epochs)
                cluster.connect(spec.ray)
                concurrent = cluster.check_resources(spec.resources)
                r = run_sweep(spec, storage)
                r["concurrent"] = concurrent
                r["sweep_overhead"] = r["wall_s"] * concurrent / sum(r["engine_s"]) - 1.0
                r["per_trial_overhead"] = statistics.median(
                    o / e for o, e in zip(r["per_trial_overhead_s"], r["engine_s"]))
                results[executor] = r
                rows.append([executor, statistics.median(r["engine_s"]),
                             statistics.median(r["per_trial_overhead_s"]),
                             f"{100 * r['per_trial_overhead']:.1f}%", r["wall_s"],
                             f"{100 * r['sweep_overhead']:.1f}%"])
            print(table(f"sweep overhead, 4 trials of {args.epochs} epochs, {concurrent} at once",
                        ["executor", "engine s/trial", "trial overhead s", "per trial", "sweep wall s",
                         "sweep overhead"], rows))
            device = torch.device("cpu")
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    write_json("sweep_gpu" if args.gpu else f"sweep_{args.epochs}ep",
               {"machine": machine(device), "epochs": args.epochs, "results": results}, args.out)


if __name__ == "__main__":
    main()
