"""Connecting to Ray and sizing a sweep to the cluster it runs on."""

from __future__ import annotations

import logging
import math
import os

from ..errors import SotError
from .spec import RaySpec, ResourceSpec

TRIAL_DRIVER_CPU = 0.01  # the Tune trial only drives its Ray Train workers


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
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, _temp_dir=spec.temp_dir, **kwargs)
    except ConnectionError as exc:
        raise SotError(f"cannot reach the Ray cluster at {address!r}: {str(exc).splitlines()[0]}") from None


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
