"""Consistency weight schedules of SoTeacher (value during 1-based epoch ``e`` of ``E``)."""

from __future__ import annotations

import math

from ..errors import SotError

SCHEDULES = ("linear", "step", "cosine", "cycle", "constant")


def consist_weight(schedule: str, coef: float, epoch: int, epochs: int, start_at: int = 50) -> float:
    """The consistency weight in effect during ``epoch`` (1-based) of a run of ``epochs``.

    - ``linear``:   coef * e / E (the paper's main results)
    - ``step``:     0 while fewer than ``start_at`` epochs are complete, then coef
    - ``cosine``:   coef * cos((1 - e/E) * pi/2)
    - ``cycle``:    coef * sqrt(1 - (1 - e/E)^2)
    - ``constant``: coef
    """
    if schedule not in SCHEDULES:
        raise SotError(f"unknown consistency schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    frac = epoch / epochs
    if schedule == "linear":
        return coef * frac
    if schedule == "step":
        return 0.0 if epoch - 1 < start_at else coef
    if schedule == "cosine":
        return coef * math.cos((1.0 - frac) * math.pi / 2)
    if schedule == "cycle":
        return coef * math.sqrt(max(0.0, 1.0 - (1.0 - frac) ** 2))
    return coef
