"""Plain-PyTorch training: one teacher run, checkpoints, metrics, TensorBoard. No Ray here."""

from .checkpoint import load_checkpoint, save_checkpoint
from .teacher import TeacherTrainer
from .trainer import Trainer, lr_at, resolve_device

__all__ = ["TeacherTrainer", "Trainer", "load_checkpoint", "lr_at", "resolve_device", "save_checkpoint"]
