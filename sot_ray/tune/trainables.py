"""The Tune trial and the executors that run its engine.

A trial is a Tune *function* trial. With the ``train`` executor it builds a Ray Train
``TorchTrainer`` (Train V2) and fits it, and the workers run sot-ray's plain-PyTorch engine in the
trial's run folder under the experiment's storage; with the ``trial`` executor (single-worker
trials) the engine runs in the trial's own actor, which then holds the worker's resources,
saving Ray Train's controller, worker group and their start-up. Every epoch's metrics go to Tune
(``tune.report`` in the trial, Ray Train's ``TuneReportCallback`` from workers; ASHA reads
``epoch``); the engine's own checkpoints make a restored trial continue where it stopped,
regularizer and method state included.
"""

from __future__ import annotations

import math
from pathlib import Path

KINDS = ("teacher", "student")


def _scalars(row: dict) -> dict:
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def run_engine(loop: dict, report, rank: int, world: int) -> None:
    """One engine run in the trial's run folder, every epoch handed to ``report`` (the last one
    with the test metrics, so a trial at ``max_t`` has finished before ASHA ends it)."""
    import ray
    import torch

    from .. import config as C
    from ..engine import StudentTrainer, TeacherTrainer, rundir

    torch.set_num_threads(max(1, int(loop["threads"])))
    cls = TeacherTrainer if loop["kind"] == "teacher" else StudentTrainer
    cfg = C.from_dict(cls.config_cls, loop["config"])
    out = Path(loop["run_dir"])
    last_epoch = cfg.train.epochs

    def log(line: str) -> None:  # the engine's progress lines, kept in the run folder
        with open(out / rundir.LOG, "a") as f:
            f.write(line + "\n")

    if rank == 0:  # where this attempt runs (a restarted trial logs it again)
        out.mkdir(parents=True, exist_ok=True)
        log(f"worker rank 0 of {world} on node {ray.get_runtime_context().get_node_id()} "
            f"({loop.get('executor', 'train')} executor)")

    def on_epoch(row: dict, _out) -> None:
        if row["epoch"] < last_epoch:
            report(_scalars(row) | {"done": 0.0})

    summary = cls(cfg, out, resume=True, log=log, on_epoch=on_epoch).run()
    history = rundir.read_history(out)
    final = _scalars(history[-1]) if history else {"epoch": float(last_epoch)}
    final.update({f"last_{k}": v for k, v in _scalars(summary["last"]).items() if k.startswith("test/")})
    final.update({f"best_{k}": v for k, v in _scalars(summary["best"]).items() if k.startswith("test/")})
    report(final | {"done": 1.0, "epoch": float(summary["last"]["epoch"])})


def train_worker(loop: dict) -> None:
    """Runs on each Ray Train worker. With several workers Ray Train has set up the
    ``torch.distributed`` process group and the engine trains data-parallel; every rank reports
    (Ray Train takes rank 0's metrics), rank 0 alone writes the run folder."""
    import ray.train

    ctx = ray.train.get_context()
    run_engine(loop, ray.train.report, ctx.get_world_rank(), ctx.get_world_size())


def _loop(config: dict, executor: str) -> dict:
    t, r = config["trial"], config["resources"]
    return {"kind": config["kind"], "config": t["config"], "executor": executor,
            "run_dir": str(Path(config["runs_dir"]) / t["name"]),
            "threads": max(1, math.floor(r["cpus_per_worker"]))}


def trial(config: dict) -> None:
    """The Tune function trial: one teacher or student run, on the executor the sweep chose."""
    if config["resources"]["executor"] == "trial":
        trial_in_process(config)
    else:
        trial_on_train(config)


def trial_in_process(config: dict) -> None:
    """The low-overhead executor: the engine runs in the trial's own actor, which holds the
    worker's CPUs/GPU share (one worker per trial)."""
    import ray.tune

    run_engine(_loop(config, "trial"), ray.tune.report, 0, 1)


def trial_on_train(config: dict) -> None:
    """The Ray Train executor: the trial builds a TorchTrainer whose workers run the engine
    (data-parallel when ``resources.workers > 1``)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    t, r = config["trial"], config["resources"]
    res = {"CPU": r["cpus_per_worker"]}
    if r["gpus_per_worker"]:
        res["GPU"] = r["gpus_per_worker"]
    loop = _loop(config, "train")
    trainer = TorchTrainer(
        train_worker, train_loop_config=loop,
        scaling_config=ScalingConfig(num_workers=r["workers"], use_gpu=bool(r["gpus_per_worker"]),
                                     resources_per_worker=res),
        run_config=RunConfig(name=t["name"], storage_path=config["train_storage"],
                             callbacks=[TuneReportCallback()],
                             # a trial that raises fails (Tune records why); a worker group
                             # that cannot start is retried a bounded number of times
                             failure_config=FailureConfig(
                                 max_failures=0, controller_failure_limit=r["start_retries"])),
    )
    trainer.fit()


def trial_dirname(trial) -> str:
    return trial.config["trial"]["name"]
