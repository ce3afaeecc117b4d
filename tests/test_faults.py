"""Faults against real Ray processes: failing trials, and a multi-node cluster on one machine
that loses a node in the middle of a sweep."""

import os
import re
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

pytestmark = pytest.mark.slow


def _sweep(tmp_path, name, teachers, resources):
    spec = {"name": name, "teachers": teachers, "resources": resources}
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(spec))
    return f


def test_failing_trial_is_recorded_with_its_reason_and_the_sweep_goes_on(ray_session, tmp_path):
    f = _sweep(tmp_path, "nan", {
        "config": {"model": "resnet8", "data": {"name": "digits"}, "train": {"epochs": 2, "device": "cpu"}},
        "search": {"lr": {"grid": [0.05, 1.0e6]}}, "control": False, "asha": None},
        {"workers": 1, "cpus_per_worker": 1, "trial_retries": 1})
    r = CliRunner().invoke(cli, ["sweep", "teachers", "--config", str(f), "--storage", str(tmp_path)])
    assert r.exit_code != 0
    assert r.output.strip().splitlines()[-1].startswith("Error: 1 of 2 teacher trials failed")
    rows = {row["trial_name"]: row for row in pq.read_table(tmp_path / "nan" / "teachers.parquet").to_pylist()}
    assert len(rows) == 2
    good = next(v for v in rows.values() if v["status"] == "finished")
    bad = next(v for v in rows.values() if v["status"] == "error")
    assert good["test_acc_last"] is not None
    assert "training loss became nan" in bad["error"]
    starts = (Path(bad["run_dir"]) / "train.log").read_text().count("worker rank 0")
    assert starts == 2  # the first attempt and exactly one bounded retry


def test_multi_node_sweep_survives_losing_a_node(tmp_path):
    """A head (no CPUs for trials) and two 1-CPU worker nodes, started as real Ray processes;
    a sweep submitted by a separate driver; one worker node killed while it trains."""
    import secrets

    from ray.cluster_utils import Cluster

    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    os.environ.setdefault("RAY_AUTH_TOKEN_PATH", str(token))
    # the dashboard (state API) is what lets Ray Train and sot-ray clean up a dead node's groups
    import socket

    with socket.socket() as sock:  # the session's own Ray instance may hold the default port
        sock.bind(("127.0.0.1", 0))
        dashboard_port = sock.getsockname()[1]
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": True, "dashboard_port": dashboard_port})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        f = _sweep(tmp_path, "mn", {
            "config": {"model": "resnet8", "data": {"name": "digits"},
                       "train": {"epochs": 6, "device": "cpu"}, "reg": {"consist_start_at": 1}},
            "search": {"lip_coef": {"grid": [1e-5, 1e-4]}}, "control": False, "asha": None},
            {"workers": 1, "cpus_per_worker": 1, "trial_retries": 2})
        storage = tmp_path / "st"
        env = dict(os.environ)
        proc = subprocess.Popen([sys.executable, "-m", "sot_ray.cli", "sweep", "teachers", "--config",
                                 str(f), "--storage", str(storage), "--address", cluster.address],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        runs = storage / "mn" / "runs" / "teachers"

        def where():  # run folder -> node id, for runs that have checkpointed an epoch
            out = {}
            for r in runs.glob("t*") if runs.exists() else []:
                log = (r / "train.log").read_text() if (r / "train.log").is_file() else ""
                nodes = re.findall(r"on node ([0-9a-f]+)", log)
                if nodes and (r / rundir.LAST).is_file() and not (r / "metrics.json").is_file():
                    out[r] = nodes[-1]
            return out

        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and len(set(where().values())) < 2:
            time.sleep(0.3)
        placed = where()
        assert len(set(placed.values())) == 2, proc.communicate(timeout=5)[0] if proc.poll() is not None else placed
        victim_run, victim_node = next(iter(placed.items()))
        node = next(w for w in workers if w.node_id == victim_node)
        epochs_before = len(rundir.read_history(victim_run))
        t_kill = time.time()
        cluster.remove_node(node, allow_graceful=False)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        rows = pq.read_table(storage / "mn" / "teachers.parquet").to_pylist()
        assert len(rows) == 2 and all(r["status"] == "finished" for r in rows)  # once each
        hist = rundir.read_history(victim_run)
        assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]
        log = (victim_run / "train.log").read_text()
        assert "resuming" in log and epochs_before >= 1
        after = re.findall(r"on node ([0-9a-f]+)", log)
        assert after[-1] != victim_node  # restarted elsewhere, from its checkpoint
        secret = Path(os.environ["RAY_AUTH_TOKEN_PATH"]).read_text().strip()  # the token in use
        assert len(secret) >= 32  # no secret in any log, config dump or table:
        for path in storage.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
        recovered = (victim_run / "metrics.json").stat().st_mtime - t_kill
        print(f"node loss: trial finished {recovered:.1f}s after the kill (from epoch {epochs_before})")
    finally:
        cluster.shutdown()
