"""Data-parallel training with a real torch.distributed process group (gloo, two processes)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sot_ray.config import StudentConfig, TeacherConfig, build_config
from sot_ray.engine import StudentTrainer, TeacherTrainer, rundir

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, world, port, kind, overrides, out, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        if kind == "teacher":
            cfg = build_config(TeacherConfig, overrides=overrides)
            trainer = TeacherTrainer(cfg, out, log=lambda _: None)
        else:
            cfg = build_config(StudentConfig, overrides=overrides)
            trainer = StudentTrainer(cfg, out, log=lambda _: None)
        summary = trainer.run()
        state = {"model": trainer.model.state_dict(), "summary_acc": summary["last"]["test/acc"]}
        if kind == "teacher":
            state["bank"] = trainer.consist.bank
        else:
            state["memory"] = trainer.distiller.memory.memory_s
        torch.save(state, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _spawn(kind, overrides, out, tmp_path):
    mp.spawn(_rank, args=(2, _free_port(), kind, overrides, str(out), str(tmp_path)), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]


def test_two_rank_teacher_keeps_one_consistency_bank_and_one_model(tmp_path):
    out = tmp_path / "t"
    r0, r1 = _spawn("teacher", ["train.epochs=2", "train.device=cpu", "reg.consist_coef=1.0",
                                "reg.consist_start_at=0", "optim.batch_size=64"], out, tmp_path)
    assert torch.count_nonzero(r0["bank"]) > 0
    assert torch.equal(r0["bank"], r1["bank"])  # every rank folded in every rank's batches
    rows_filled = (r0["bank"].sum(1) > 0).sum().item()
    assert rows_filled == 1294 // 2 * 2  # both shards of each epoch (remainder dropped)
    for k, v in r0["model"].items():
        if "running" not in k and "num_batches" not in k:  # BN statistics stay per rank
            assert torch.equal(v, r1["model"][k]), k
    assert [h["epoch"] for h in rundir.read_history(out)] == [1, 2]  # rank 0 wrote once
    assert (out / rundir.LAST).is_file() and r0["summary_acc"] == r1["summary_acc"]


def test_two_rank_crd_student_keeps_one_memory(tmp_path):
    teacher = tmp_path / "teacher"
    TeacherTrainer(build_config(TeacherConfig, overrides=["train.epochs=1", "train.device=cpu"]),
                   teacher, log=lambda _: None).run()
    out = tmp_path / "s"
    r0, r1 = _spawn("student", [f"teacher={teacher}", "distill.method=crd", "train.epochs=1",
                                "train.device=cpu"], out, tmp_path)
    assert torch.equal(r0["memory"], r1["memory"])
    for k, v in r0["model"].items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, r1["model"][k]), k
