"""Connecting to Ray and sizing a sweep to the cluster it runs on."""

from __future__ import annotations

import logging
import math
import os

from ..errors import SotError
from .spec import RaySpec, ResourceSpec

# The Tune trial only drives its Ray Train workers: it asks for no CPU (a token of logical memory,
# since Tune refuses an empty request), so a trial's workers can use every CPU of a node.
TRIAL_DRIVER_RESOURCES = {"cpu": 0, "memory": 64 * 2**20}


def connect(spec: RaySpec) -> None:
    """Join ``spec.address`` (or $RAY_ADDRESS), or start a local instance. Ray's defaults stay:
    token authentication on, the dashboard and every port on 127.0.0.1 for a local instance."""
    import ray

    if ray.is_initialized():
        return
    # Ray Train's controller polls its workers every 2 s by default, which adds up to that much
    # to the end of every trial; a local instance inherits this process's environment
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    address = spec.address or os.environ.get("RAY_ADDRESS")
    kwargs = dict(log_to_driver=False, logging_level=logging.WARNING,
                  configure_logging=True)
    if address and address != "auto":
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, _temp_dir=spec.temp_dir, **kwargs)
    except ConnectionError as exc:
        raise SotError(f"cannot reach the Ray cluster at {address!r}: {str(exc).splitlines()[0]}") from None


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds on an address nothing answers at (Ray itself keeps retrying for minutes)."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SotError(f"--address {address!r} is not of the form HOST:PORT (or auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise SotError(f"cannot reach the Ray cluster at {address!r} ({exc.strerror or 'timed out'})") from None


def trial_resources(r: ResourceSpec) -> dict[str, float]:
    """What a trial's own actor asks Ray for: a token with the Ray Train executor (its workers
    hold the compute), the worker's share with the in-trial executor."""
    if r.executor == "train":
        return dict(TRIAL_DRIVER_RESOURCES)
    res = {"cpu": r.cpus_per_worker, "memory": TRIAL_DRIVER_RESOURCES["memory"]}
    if r.gpus_per_worker:
        res["gpu"] = r.gpus_per_worker
    return res


def worker_resources(r: ResourceSpec) -> dict[str, float]:
    res = {"CPU": r.cpus_per_worker}
    if r.gpus_per_worker:
        res["GPU"] = r.gpus_per_worker
    return res


def check_resources(r: ResourceSpec) -> int:
    """Refuse a trial shape no node (or the cluster) can ever hold, instead of letting its worker
    group wait; return how many trials may run at once."""
    import ray

    need = worker_resources(r)
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    total = {k: sum(n.get(k, 0.0) for n in nodes) for k in ("CPU", "GPU")}
    if r.check:
        fits = [n for n in nodes if all(n.get(k, 0.0) >= v for k, v in need.items())]
        if not fits:
            largest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
            raise SotError(
                f"no node can hold one worker ({_fmt(need)}); the largest node has "
                f"{_fmt({k: largest.get(k, 0.0) for k in need})}; lower resources.* in the sweep file"
            )
        slots = sum(min(math.floor(n.get(k, 0.0) / v + 1e-9) for k, v in need.items()) for n in fits)
        if slots < r.workers:
            raise SotError(f"the cluster holds {slots} worker(s) of {_fmt(need)}, a trial needs "
                           f"{r.workers}; lower resources.workers")
    concurrent = r.max_concurrent_trials
    if concurrent is None:
        per_trial = {k: v * r.workers for k, v in need.items()}
        concurrent = max(1, min(math.floor(total.get(k, 0.0) / v + 1e-9) for k, v in per_trial.items()))
    return concurrent


def _fmt(res: dict) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in res.items())


class OrphanReaper:
    """Removes placement groups that this sweep's Ray Train runs left behind.

    When Tune ends a trial (ASHA stops it, or it finishes) it terminates the trial's actor; a Train
    controller caught mid-shutdown can leave its workers' placement group reserved, and Train's
    own cleaner does not always see it (measured here: a leaked 1-CPU group starved every later
    trial of a 2-CPU machine). A group of this job that no live actor uses for ``grace_s``
    seconds is removed. Needs Ray's state API (the ``ray[default]`` extra); without it, it does
    nothing.
    """

    def __init__(self, grace_s: float = 30.0, every_s: float = 10.0):
        self.grace_s, self.every_s = grace_s, every_s
        self._idle_since: dict[str, float] = {}
        self._last = 0.0
        self.removed = 0

    def __call__(self, force: bool = False) -> int:
        import time

        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return 0
        self._last = now
        try:
            import ray
            from ray.util.placement_group import PlacementGroup, remove_placement_group
            from ray.util.state import list_actors, list_placement_groups

            job = ray.get_runtime_context().get_job_id()
            groups = list_placement_groups(filters=[("state", "=", "CREATED")], detail=True,
                                           limit=10000, raise_on_missing_output=False)
            actors = list_actors(filters=[("state", "!=", "DEAD")], detail=True, limit=100000,
                                 raise_on_missing_output=False)
        except Exception:  # no state API (no dashboard), or it is busy: try again later
            return 0
        used = {a.placement_group_id for a in actors if a.placement_group_id}
        idle = {g.placement_group_id for g in groups
                if g.creator_job_id == job and not g.is_detached and g.placement_group_id not in used
                and _holds_compute(g)}  # Tune's own trial groups hold no CPU/GPU: never touched
        self._idle_since = {pg: self._idle_since.get(pg, now) for pg in idle}
        removed = 0
        for pg, since in list(self._idle_since.items()):
            if now - since >= self.grace_s:
                try:
                    remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg))))
                    removed += 1
                except Exception:
                    pass
                self._idle_since.pop(pg, None)
        self.removed += removed
        return removed


def _holds_compute(group) -> bool:
    for b in group.bundles or []:
        res = b.get("unit_resources", {}) if isinstance(b, dict) else {}
        if res.get("CPU") or res.get("GPU"):
            return True
    return False
