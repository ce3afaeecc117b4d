"""ASHA vs the full grid on the quickstart's teacher sweep: total epochs trained, wall time, and
whether the selected (best) teacher setting is the same.

Both sweeps run the bundled quickstart (``sweeps/quickstart.yaml``) on a local Ray instance,
once with its ASHA block and once with ``asha: null``. The best setting is the one the student
sweep would hand on: the top finished SoTeacher teacher by the file's ``select.metric``.

    python benchmarks/bench_asha.py [--set teachers.asha.grace_period=2 ...]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from _common import machine, table, write_json

from sot_ray.results import read_rows
from sot_ray.tune.spec import load_spec

QUICKSTART = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"


def run(overrides: list[str], name: str, storage: Path) -> dict:
    from sot_ray.tune.sweep import sweep_teachers

    spec = load_spec(QUICKSTART, overrides=overrides + [f"name={name}"])
    t0 = time.perf_counter()
    exp, _ = sweep_teachers(spec, storage, echo=False)
    wall = time.perf_counter() - t0
    rows = read_rows(exp / "teachers.parquet")
    sel = spec.teachers.select
    sign = 1.0 if sel.mode == "min" else -1.0
    finished = [r for r in rows if r["status"] == "finished" and not r["is_control"]]
    best = min(finished, key=lambda r: sign * r[sel.metric])
    return {"wall_s": wall, "epochs": sum(r["epochs_run"] for r in rows),
            "planned_epochs": sum(r["epochs_planned"] for r in rows),
            "stopped": sum(r["status"] == "stopped" for r in rows), "trials": len(rows),
            "best": {"lip_coef": best["lip_coef"], "consist_coef": best["consist_coef"],
                     sel.metric: best[sel.metric]},
            "rows": [{k: r[k] for k in ("trial_name", "status", "epochs_run", sel.metric)} for r in rows]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="dotted override of the quickstart file, applied to both sweeps")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    storage = Path(tempfile.mkdtemp(prefix="sot-ray-bench-asha-"))
    try:
        asha = run(args.overrides, "with_asha", storage)
        grid = run(args.overrides + ["teachers.asha=null"], "full_grid", storage)
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    same = (asha["best"]["lip_coef"], asha["best"]["consist_coef"]) == (grid["best"]["lip_coef"], grid["best"]["consist_coef"])
    rows = [[k, r["epochs"], r["planned_epochs"], r["stopped"], r["wall_s"],
             f"lip={r['best']['lip_coef']:g} consist={r['best']['consist_coef']:g}"]
            for k, r in (("ASHA", asha), ("full grid", grid))]
    rows.append(["ratio", asha["epochs"] / grid["epochs"], "", "", asha["wall_s"] / grid["wall_s"],
                 "same" if same else "different"])
    print(table("quickstart teacher sweep: ASHA vs the full grid",
                ["run", "epochs", "planned", "stopped", "wall s", "best setting"], rows))
    write_json("asha", {"machine": machine(torch.device("cpu")), "overrides": args.overrides,
                        "asha": asha, "full_grid": grid, "epoch_ratio": asha["epochs"] / grid["epochs"],
                        "wall_ratio": asha["wall_s"] / grid["wall_s"], "same_best": same}, args.out)


if __name__ == "__main__":
    main()
