"""Sweeps against a real local Ray instance: ASHA, chained students, resume, Parquet row by row."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from sot_ray.cli import cli
from sot_ray.engine import rundir
from sot_ray.results import ResultTable, TEACHERS

pytestmark = pytest.mark.slow

TEACHER_SWEEP = {
    "name": "t",
    "teachers": {
        "config": {"model": "resnet8", "data": {"name": "digits"},
                   "train": {"epochs": 4, "device": "cpu"}, "reg": {"consist_start_at": 1}},
        # 3e-3 * Lip (about 4,400 for resnet8) swamps the cross-entropy: ASHA must stop it
        "search": {"lip_coef": {"grid": [1e-5, 3e-3]}, "consist_coef": {"grid": [1.0]}},
        "asha": {"metric": "val/nll", "grace_period": 1, "reduction_factor": 2},
        "select": {"k": 1, "metric": "val_nll_last"},
    },
    "students": {"config": {"train": {"epochs": 1, "device": "cpu"}}, "models": ["resnet8"],
                 "methods": ["kd"], "seeds": [0]},
    # one trial at a time: ASHA's decisions then follow the grid order (the first trial to reach a
    # rung always continues), which keeps this test deterministic
    # the Ray Train executor here (the reaper of its leaked worker groups is tested below); the
    # other sweep tests run the default in-trial executor
    "resources": {"workers": 1, "executor": "train", "cpus_per_worker": 1, "max_concurrent_trials": 1},
}


def run(args):
    r = CliRunner().invoke(cli, args)
    return r


def one_line_error(r, match):
    lines = r.output.strip().splitlines()
    assert r.exit_code != 0, r.output
    assert match in lines[-1] and "Traceback" not in r.output, r.output


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("sweepfile") / "sweep.yaml"
    p.write_text(yaml.safe_dump(TEACHER_SWEEP))
    return p


@pytest.fixture(scope="module")
def teacher_exp(ray_session, sweep_file, tmp_path_factory):
    storage = tmp_path_factory.mktemp("storage")
    r = run(["sweep", "teachers", "--config", str(sweep_file), "--storage", str(storage), "--name", "exp"])
    assert r.exit_code == 0, r.output
    return storage / "exp"


def test_teacher_sweep_asha_stops_early_and_writes_one_row_per_trial(teacher_exp):
    rows = pq.read_table(teacher_exp / "teachers.parquet").to_pylist()
    assert pq.read_schema(teacher_exp / "teachers.parquet").equals(TEACHERS)
    assert len(rows) == 3  # two SoTeacher settings + the control
    by_lip = {(r["is_control"], r["lip_coef"]): r for r in rows}
    control, good, bad = by_lip[(True, 0.0)], by_lip[(False, 1e-5)], by_lip[(False, 3e-3)]
    assert control["status"] == "finished" and good["status"] == "finished"
    assert bad["status"] == "stopped" and bad["stopped_early"] and bad["epochs_run"] < 4
    assert bad["test_acc_last"] is None  # a stopped teacher is never tested
    for r in (control, good):  # row by row against the run folder it came from
        summary = json.loads((Path(r["run_dir"]) / "metrics.json").read_text())
        assert r["teacher_id"] == summary["run_id"] and r["epochs_run"] == 4 == r["epochs_planned"]
        assert r["test_acc_last"] == pytest.approx(summary["last"]["test/acc"])
        assert r["test_acc_best"] == pytest.approx(summary["best"]["test/acc"])
        assert r["val_nll_last"] == pytest.approx(summary["last"]["val/nll"])
        assert r["best_epoch"] == summary["best"]["epoch"]
        assert Path(r["checkpoint_last"]).is_file() and Path(r["checkpoint_best"]).is_file()
        assert r["trial_wall_s"] >= r["train_time_s"] > 0
        cfg = yaml.safe_load((Path(r["run_dir"]) / "config.yaml").read_text())
        assert cfg["reg"]["lip_coef"] == r["lip_coef"] and cfg["train"]["seed"] == r["seed"] == 0
    # the run folders live under the experiment, TensorBoard and HParams included
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(good["run_dir"]) / "tb"))
    acc.Reload()
    assert "val/nll" in acc.Tags()["scalars"]
    hp = EventAccumulator(str(Path(good["run_dir"]) / "tb" / "hparams"))
    hp.Reload()
    assert "hparam/test_acc_last" in hp.Tags()["scalars"]


def test_stopped_trials_release_their_resources(teacher_exp):
    import ray

    deadline = time.time() + 60
    while time.time() < deadline and ray.available_resources().get("CPU", 0) < 1.99:
        time.sleep(1)
    assert ray.available_resources().get("CPU", 0) >= 1.99, ray.available_resources()


def test_chained_student_sweep_uses_the_selected_teachers(teacher_exp, sweep_file):
    storage = teacher_exp.parent
    r = run(["sweep", "students", "--teachers", "exp", "--config", str(sweep_file), "--storage", str(storage)])
    assert r.exit_code == 0, r.output
    teachers = {t["teacher_id"]: t for t in pq.read_table(teacher_exp / "teachers.parquet").to_pylist()}
    students = pq.read_table(teacher_exp / "students.parquet").to_pylist()
    used = {s["teacher_id"] for s in students}
    # k = 1: the best finished SoTeacher teacher by val NLL, plus the control; never the stopped one
    expected = {t["teacher_id"] for t in teachers.values() if t["status"] == "finished"}
    assert used == expected and len(students) == 2
    for s in students:
        t = teachers[s["teacher_id"]]
        assert s["status"] == "finished" and s["method"] == "kd" and s["model"] == "resnet8"
        assert (s["teacher_lip_coef"], s["teacher_is_control"]) == (t["lip_coef"], t["is_control"])
        summary = json.loads((Path(s["run_dir"]) / "metrics.json").read_text())
        assert summary["teacher_id"] == t["teacher_id"] and s["student_id"] == summary["run_id"]
        assert s["test_acc_last"] == pytest.approx(summary["last"]["test/acc"])
        assert s["test_agreement_last"] == pytest.approx(summary["last"]["test/agreement"])
    out = run(["results", str(teacher_exp)])
    assert out.exit_code == 0 and "standard (control)" in out.output and "gain" in out.output
    csv = run(["results", "exp", "--storage", str(storage), "--format", "csv"])
    assert csv.output.splitlines()[0].startswith("method,student,teacher,setting")
    assert len(csv.output.strip().splitlines()) == 3
    js = json.loads(run(["results", str(teacher_exp), "--format", "json"]).output)
    best = js["best_per_method"][0]
    assert best["gain_over_control"] == pytest.approx(best["best_test_acc_mean"] - best["control_test_acc_mean"])


def test_bad_sweep_input_with_ray(ray_session, teacher_exp, sweep_file, tmp_path):
    storage = str(teacher_exp.parent)
    one_line_error(run(["sweep", "students", "--teachers", "nope", "--config", str(sweep_file),
                        "--storage", storage]), "experiment 'nope' does not exist")
    empty = tmp_path / "storage" / "empty"
    ResultTable(empty / "teachers.parquet", TEACHERS).upsert(
        {"trial_id": "x", "status": "stopped", "trial_name": "t000"})
    one_line_error(run(["sweep", "students", "--teachers", "empty", "--config", str(sweep_file),
                        "--storage", str(tmp_path / "storage")]), "has no finished teacher")
    one_line_error(run(["sweep", "teachers", "--config", str(sweep_file), "--storage", storage,
                        "--name", "exp"]), "already holds a teacher sweep; pass --resume")
    one_line_error(run(["sweep", "teachers", "--config", str(sweep_file), "--storage", storage,
                        "--name", "fresh", "--resume"]), "no teacher sweep to resume")
    one_line_error(run(["sweep", "teachers", "--config", str(sweep_file), "--storage", storage,
                        "--name", "gpu", "--set", "resources.gpus_per_worker=1"]),
                   "no node can hold one worker (1 CPU, 1 GPU); the largest node has 2 CPU, 0 GPU")
    one_line_error(run(["sweep", "teachers", "--config", str(sweep_file), "--storage", storage,
                        "--name", "wide", "--set", "resources.cpus_per_worker=2",
                        "--set", "resources.workers=2"]), "the cluster holds 1 worker(s) of 2 CPU")
    afile = tmp_path / "a_file"
    afile.write_text("x")
    one_line_error(run(["sweep", "teachers", "--config", str(sweep_file), "--storage", str(afile / "sub")]),
                   "cannot be written")
    assert not (teacher_exp.parent / "gpu" / "teachers").exists()  # refused before any trial


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "driver-killed"])
def test_interrupted_sweep_resumes_without_rerunning_finished_trials(ray_session, tmp_path, sig):
    spec = {
        "name": "r",
        "teachers": {"config": {"model": "resnet8", "data": {"name": "digits"},
                                "train": {"epochs": 5, "device": "cpu"}, "reg": {"consist_start_at": 1}},
                     "search": {"lip_coef": {"grid": [1e-5]}}, "asha": None},
        "resources": {"workers": 1, "cpus_per_worker": 1, "max_concurrent_trials": 1},
    }
    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump(spec))
    storage = tmp_path / "st"
    exp = storage / "r"
    env = dict(os.environ, RAY_ADDRESS=ray_session)
    proc = subprocess.Popen([sys.executable, "-m", "sot_ray.cli", "sweep", "teachers", "--config", str(f),
                             "--storage", str(storage)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    # wait until one trial has finished and the other has checkpointed an epoch, then interrupt
    deadline, finished, partial = time.time() + 240, None, None
    while time.time() < deadline and proc.poll() is None:
        runs = sorted((exp / "runs" / "teachers").glob("t*")) if (exp / "runs").exists() else []
        finished = [r for r in runs if (rundir.read_summary(r) or {}).get("status") == "finished"]
        partial = [r for r in runs if r not in finished and (r / rundir.LAST).is_file()]
        if finished and partial and (exp / "teachers.parquet").is_file():
            break
        time.sleep(0.3)
    assert finished and partial, proc.communicate(timeout=5)[0] if proc.poll() is not None else "timeout"
    t_kill = time.time()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    done_dir, part_dir = finished[0], partial[0]
    done_history = (done_dir / rundir.HISTORY).read_text()
    done_summary = (done_dir / "metrics.json").read_text()
    epochs_before = len(rundir.read_history(part_dir))
    assert 1 <= epochs_before < 5
    if sig == signal.SIGKILL:  # the killed driver's trials die with its job; let Ray notice
        time.sleep(3)
    r = run(["sweep", "teachers", "--config", str(f), "--storage", str(storage), "--resume"])
    assert r.exit_code == 0, r.output
    print(f"recovery: {time.time() - t_kill:.1f}s from the interrupt to the finished sweep")
    # the finished trial was not rerun; the unfinished one continued from its checkpoint
    assert (done_dir / rundir.HISTORY).read_text() == done_history
    assert (done_dir / "metrics.json").read_text() == done_summary
    hist = rundir.read_history(part_dir)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5]
    assert "resuming" in (part_dir / "train.log").read_text()
    rows = pq.read_table(exp / "teachers.parquet").to_pylist()
    assert len(rows) == 2 and all(r["status"] == "finished" for r in rows)


@pytest.mark.parametrize("name", ["quickstart", "cifar100_wrn40_2", "tinyimagenet_resnet34", "synthetic"])
def test_bundled_sweep_file_smoke_pipeline(ray_session, tmp_path, name, cifar_root, tiny_root):
    args = ["sweep", "pipeline", "--smoke", "--storage", str(tmp_path)]
    if name != "quickstart":  # the quickstart is the embedded default: no --config
        args += ["--config", f"sweeps/{name}.yaml"]
    root = {"cifar100_wrn40_2": cifar_root, "tinyimagenet_resnet34": tiny_root}.get(name)
    if root:
        args += ["--set", f"teachers.config.data.root={root}"]
    r = run(args)
    assert r.exit_code == 0, r.output
    assert "best SoTeacher setting per method" in r.output and "pipeline wall time" in r.output
    exp = tmp_path / name
    teachers = pq.read_table(exp / "teachers.parquet").to_pylist()
    students = pq.read_table(exp / "students.parquet").to_pylist()
    assert len(teachers) == 2 and any(t["is_control"] for t in teachers)
    assert students and all(s["status"] == "finished" for s in students)
    assert {s["teacher_id"] for s in students} <= {t["teacher_id"] for t in teachers}
    r = run(["report", name, "--storage", str(tmp_path)])  # the report on the pipeline's output
    assert r.exit_code == 0, r.output
    assert "## Which teacher proxy predicts student accuracy?" in r.output
    assert (exp / "report" / "report.md").is_file() and (exp / "report" / "student_acc_grid.png").is_file()
    if name == "cifar100_wrn40_2":  # the early-stopped standard teacher, and the paper's numbers
        assert any(s["teacher_checkpoint"] == "epoch1" for s in students)
        assert "standard @ epoch1" in r.output and "not at the paper's scale" in r.output


def test_data_parallel_trial_on_two_ray_train_workers(ray_session, tmp_path):
    spec = {"name": "dp",
            "teachers": {"config": {"model": "resnet8", "data": {"name": "digits"},
                                    "train": {"epochs": 2, "device": "cpu"},
                                    "reg": {"consist_start_at": 0}},
                         "search": {"lip_coef": {"grid": [1e-5]}}, "control": False, "asha": None},
            "resources": {"workers": 2, "cpus_per_worker": 1}}
    f = tmp_path / "dp.yaml"
    f.write_text(yaml.safe_dump(spec))
    r = run(["sweep", "teachers", "--config", str(f), "--storage", str(tmp_path)])
    assert r.exit_code == 0, r.output
    (row,) = pq.read_table(tmp_path / "dp" / "teachers.parquet").to_pylist()
    assert row["status"] == "finished" and row["epochs_run"] == 2
    run_dir = Path(row["run_dir"])
    assert [h["epoch"] for h in rundir.read_history(run_dir)] == [1, 2]
    log = (run_dir / "train.log").read_text()
    assert log.count("epoch 1/2") == 1  # rank 0 alone logs and writes
