"""Cluster files (Ray's cluster launcher) and taking a sweep to a cluster.

``validate_cluster_file`` checks a file offline against Ray's own schema
(``ray/autoscaler/ray-schema.json``, the one ``ray up`` uses) and sot-ray's rules: the Ray it
installs matches the project's, no discontinued ``ray-ml`` image, the dashboard is not bound to
all interfaces, no firewall rule open to the world except SSH, and a shared storage path for the
sweep's results (``metadata.sot_ray.storage``). ``cluster_plan`` lists the launcher commands that
bring the cluster up, ship the project and run the sweep on the head node.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from .. import config as C
from ..errors import SotError

WORLD = ("0.0.0.0/0", "::/0")


def _ray_version() -> str:
    import ray

    return ray.__version__


def _schema_error(exc) -> str:
    where = ".".join(str(x) for x in exc.absolute_path) or "top level"
    msg = exc.message
    if exc.validator == "additionalProperties":
        m = re.search(r"\('([^']+)' was unexpected\)", msg)
        if m:
            msg = f"unknown key {m.group(1)!r}"
    return f"{where}: {msg}"


def validate_cluster_file(path: str | Path) -> dict:
    """The cluster config, or a one-line SotError naming the first problem."""
    import jsonschema
    import ray.autoscaler

    cfg = C.load_yaml(path, what="cluster file")
    name = str(path)
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    try:
        jsonschema.validate(cfg, schema)
    except jsonschema.ValidationError as exc:
        raise SotError(f"cluster file {name!r} fails Ray's schema at {_schema_error(exc)}") from None
    types = cfg.get("available_node_types") or {}
    if not types or "head_node_type" not in cfg:
        raise SotError(f"cluster file {name!r}: give available_node_types and head_node_type")
    if cfg["head_node_type"] not in types:
        raise SotError(f"cluster file {name!r}: head_node_type {cfg['head_node_type']!r} is not one of "
                       f"the node types ({', '.join(types)})")
    for t, spec in types.items():
        lo, hi = spec.get("min_workers", 0), spec.get("max_workers", cfg.get("max_workers", 0))
        if lo > hi:
            raise SotError(f"cluster file {name!r}: node type {t!r} has min_workers {lo} > max_workers {hi}")
    if sum(s.get("min_workers", 0) for s in types.values()) > cfg.get("max_workers", 2):
        raise SotError(f"cluster file {name!r}: the node types' min_workers add up to more than max_workers")
    _check_ray_version(cfg, name)
    _check_security(cfg, name)
    storage = ((cfg.get("metadata") or {}).get("sot_ray") or {}).get("storage")
    if not storage:
        raise SotError(f"cluster file {name!r}: set metadata.sot_ray.storage to a path every node "
                       "shares (e.g. an EFS/NFS mount); results of a multi-node sweep land there")
    return cfg


def _texts(cfg: dict) -> list[str]:
    out = []
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands",
                "initialization_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        out += [str(c) for c in cfg.get(key) or []]
    for spec in (cfg.get("available_node_types") or {}).values():
        for key in ("worker_setup_commands", "initialization_commands"):
            out += [str(c) for c in spec.get(key) or []]
    return out


def _check_ray_version(cfg: dict, name: str) -> None:
    want = _ray_version()
    docker = cfg.get("docker") or {}
    images = [docker.get(k) for k in ("image", "head_image", "worker_image") if docker.get(k)]
    for image in images:
        if "ray-ml" in image:
            raise SotError(f"cluster file {name!r}: {image!r} is a ray-ml image; those are discontinued "
                           "- use rayproject/ray")
        m = re.match(r"rayproject/ray:(\d+\.\d+\.\d+)", image)
        if m and m.group(1) != want:
            raise SotError(f"cluster file {name!r}: image {image!r} runs Ray {m.group(1)}; the project "
                           f"runs Ray {want}")
    pins = re.findall(r"\bray(?:\[[^\]]*\])?==(\d+\.\d+\.\d+)", " ".join(_texts(cfg)))
    for v in pins:
        if v != want:
            raise SotError(f"cluster file {name!r}: its commands install Ray {v}; the project runs Ray {want}")
    if not images and not pins:
        raise SotError(f"cluster file {name!r}: pin Ray {want} (a rayproject/ray:{want} image or "
                       f"ray=={want} in setup_commands)")


def _check_security(cfg: dict, name: str) -> None:
    for cmd in _texts(cfg):
        if re.search(r"--dashboard-host[= ]+0\.0\.0\.0", cmd):
            raise SotError(f"cluster file {name!r}: the dashboard must not listen on 0.0.0.0 "
                           "(reach it through `ray dashboard` / an SSH tunnel)")
        if re.search(r"RAY_AUTH_MODE=disabled", cmd):
            raise SotError(f"cluster file {name!r}: keep Ray's token authentication on")
    sg = (cfg.get("provider") or {}).get("security_group") or {}
    for perm in sg.get("IpPermissions", []) or []:
        ranges = [r.get("CidrIp") for r in perm.get("IpRanges", []) or []]
        ranges += [r.get("CidrIpv6") for r in perm.get("Ipv6Ranges", []) or []]
        if any(r in WORLD for r in ranges) and not (perm.get("FromPort") == perm.get("ToPort") == 22):
            raise SotError(f"cluster file {name!r}: security group opens ports "
                           f"{perm.get('FromPort')}-{perm.get('ToPort')} to the world; only SSH may be")
    for rule in (cfg.get("provider") or {}).get("firewall_rules", []) or []:
        if any(r in WORLD for r in rule.get("sourceRanges", [])) and set(
                map(str, sum((a.get("ports", []) for a in rule.get("allowed", [])), []))) - {"22"}:
            raise SotError(f"cluster file {name!r}: a firewall rule opens more than SSH to the world")


def cluster_storage(cfg: dict) -> str:
    return cfg["metadata"]["sot_ray"]["storage"]


def cluster_plan(cluster_file: str, cfg: dict, sweep_args: list[str], storage: str | None,
                 project_dir: Path) -> tuple[list[list[str]], str]:
    """The launcher commands for a sweep on the cluster, and how to fetch its results."""
    shared = cluster_storage(cfg)
    storage = storage or shared
    if storage.startswith(("s3://", "gs://", "az://")):
        raise SotError(f"--storage {storage!r}: object storage is not supported yet; use the cluster's "
                       f"shared filesystem ({shared})")
    if not (storage.rstrip("/") + "/").startswith(shared.rstrip("/") + "/"):
        raise SotError(f"--storage {storage!r} is local to one node; a multi-node sweep needs the shared "
                       f"path the cluster file declares ({shared}, metadata.sot_ray.storage)")
    remote = "~/sot-ray"
    inner = " ".join(shlex.quote(a) for a in [*sweep_args, "--storage", storage])
    steps = [
        ["ray", "up", "-y", cluster_file],
        ["ray", "rsync-up", cluster_file, f"{project_dir}/", f"{remote}/"],
        ["ray", "exec", cluster_file, f"cd {remote} && pip install -q -e . && sot-ray {inner}"],
    ]
    fetch = f"ray rsync-down {cluster_file} {storage}/ ./sot-ray-results/"
    return steps, fetch


def run_plan(steps: list[list[str]], dry_run: bool, echo) -> None:
    """Print each step; unless ``dry_run``, run it (its output streams through) and stop at the
    first that fails."""
    import os
    import subprocess

    for i, step in enumerate(steps, 1):
        echo(f"[{i}/{len(steps)}] {shlex.join(step)}")
        if dry_run:
            continue
        try:
            rc = subprocess.run(step, env=os.environ).returncode
        except FileNotFoundError:
            raise SotError(f"step {i}: {step[0]!r} is not installed here") from None
        if rc:
            raise SotError(f"step {i} ({step[0]} {step[1]}) failed with exit status {rc}")
