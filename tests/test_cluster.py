"""Cluster files: Ray's schema plus sot-ray's rules, offline; the --cluster plan (dry run)."""

import copy

import pytest
import yaml
from click.testing import CliRunner

from sot_ray.cli import cli
from sot_ray.errors import SotError
from sot_ray.tune.launch import validate_cluster_file

AWS = yaml.safe_load(open("cluster/aws.yaml"))


def _write(tmp_path, cfg):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


@pytest.mark.parametrize("name", ["cluster/aws.yaml", "cluster/gcp.yaml"])
def test_bundled_cluster_files_validate(name):
    r = CliRunner().invoke(cli, ["cluster", "validate", name])
    assert r.exit_code == 0 and "valid" in r.output, r.output


def _set(path, value):
    def mutate(cfg):
        node = cfg
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return mutate


BAD = [
    (_set(["available_node_types", "gpu_spot", "resources"], {"GPU": 0.5}), "fails Ray's schema at available_node_types.gpu_spot.resources.GPU"),
    (_set(["bogus"], 1), "unknown key 'bogus'"),
    (_set(["head_node_type"], "cpu_head"), "head_node_type 'cpu_head' is not one of the node types"),
    (_set(["available_node_types", "gpu_spot", "min_workers"], 9), "min_workers 9 > max_workers 8"),
    (_set(["docker", "image"], "rayproject/ray:2.9.0-py311-gpu"), "runs Ray 2.9.0; the project runs Ray"),
    (_set(["docker", "image"], "rayproject/ray-ml:latest-gpu"), "ray-ml image; those are discontinued"),
    (_set(["setup_commands"], ["pip install ray[default]==2.9.3"]), "install Ray 2.9.3"),
    (_set(["head_start_ray_commands"], ["ray start --head --dashboard-host=0.0.0.0"]), "must not listen on 0.0.0.0"),
    (_set(["provider", "security_group", "IpPermissions"],
          [{"FromPort": 8265, "ToPort": 8265, "IpProtocol": "TCP", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]),
     "opens ports 8265-8265 to the world"),
    (_set(["metadata"], {}), "set metadata.sot_ray.storage"),
]


@pytest.mark.parametrize("mutate,match", BAD)
def test_bad_cluster_files_give_one_line_errors(tmp_path, mutate, match):
    cfg = copy.deepcopy(AWS)
    mutate(cfg)
    path = _write(tmp_path, cfg)
    with pytest.raises(SotError, match=None):
        validate_cluster_file(path)
    r = CliRunner().invoke(cli, ["cluster", "validate", path])
    lines = r.output.strip().splitlines()
    assert r.exit_code != 0 and len(lines) == 1 and match in lines[0], r.output


def test_missing_and_unparsable_cluster_files(tmp_path):
    r = CliRunner().invoke(cli, ["cluster", "validate", str(tmp_path / "none.yaml")])
    assert r.exit_code != 0 and "does not exist" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("provider: [\n")
    r = CliRunner().invoke(cli, ["cluster", "validate", str(bad)])
    assert r.exit_code != 0 and "not valid YAML" in r.output


def test_cluster_dry_run_prints_every_step_and_runs_none(tmp_path):
    r = CliRunner().invoke(cli, ["sweep", "pipeline", "--config", "sweeps/cifar100_wrn40_2.yaml",
                                 "--cluster", "cluster/aws.yaml", "--dry-run", "--name", "wrn40"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "[1/3] ray up -y cluster/aws.yaml"
    assert lines[1].startswith("[2/3] ray rsync-up cluster/aws.yaml ")
    assert "sot-ray sweep pipeline --config sweeps/cifar100_wrn40_2.yaml --name wrn40 --address auto " \
           "--storage /mnt/efs/sot-ray-results" in lines[2]
    assert lines[3] == "results: ray rsync-down cluster/aws.yaml /mnt/efs/sot-ray-results/ ./sot-ray-results/"


@pytest.mark.parametrize("args,match", [
    (["--storage", "/tmp/local"], "is local to one node; a multi-node sweep needs the shared path"),
    (["--storage", "s3://bucket/x"], "object storage is not supported yet"),
])
def test_cluster_sweep_needs_shared_storage(args, match):
    r = CliRunner().invoke(cli, ["sweep", "teachers", "--config", "sweeps/quickstart.yaml",
                                 "--cluster", "cluster/aws.yaml", "--dry-run", *args])
    lines = r.output.strip().splitlines()
    assert r.exit_code != 0 and len(lines) == 1 and match in lines[0], r.output


def test_dry_run_needs_cluster():
    r = CliRunner().invoke(cli, ["sweep", "pipeline", "--dry-run"])
    assert r.exit_code != 0 and "--dry-run needs --cluster" in r.output


def test_unreachable_address_fails_fast(tmp_path):
    import time

    t0 = time.time()
    r = CliRunner().invoke(cli, ["sweep", "teachers", "--config", "sweeps/quickstart.yaml", "--smoke",
                                 "--address", "127.0.0.1:9", "--storage", str(tmp_path)])
    lines = r.output.strip().splitlines()
    assert r.exit_code != 0 and "cannot reach the Ray cluster at '127.0.0.1:9'" in lines[-1], r.output
    assert time.time() - t0 < 30
