"""Plain-PyTorch training: one teacher run, checkpoints, metrics, TensorBoard. No Ray here."""

from .checkpoint import load_checkpoint, save_checkpoint
from .student import StudentTrainer, build_student_config
from .teacher import TeacherTrainer
from .trainer import Trainer, lr_at, resolve_device

__all__ = ["StudentTrainer", "TeacherTrainer", "build_student_config", "Trainer", "load_checkpoint", "lr_at", "resolve_device", "save_checkpoint"]
