"""SoTeacher's regularizers: the Lipschitz penalty and the consistency regularizer."""

from .consistency import ConsistencyRegularizer
from .lipschitz import LipschitzPenalty
from .schedules import SCHEDULES, consist_weight

__all__ = ["SCHEDULES", "ConsistencyRegularizer", "LipschitzPenalty", "consist_weight"]
