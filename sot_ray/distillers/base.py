"""The distiller contract and its registry.

A distiller owns the student, the frozen teacher and the method's own modules (connectors,
embeddings, memories). ``forward(x, y, index, epoch)`` returns the student logits and a dict of
named, already weighted loss terms (``loss/ce``, ``loss/kd``, ``loss/<method>``); the trainer
sums them. Only the student and the method's modules learn; the teacher stays in eval mode.
A method declares what it needs (feature shapes, training labels, sample indices) instead of the
trainer branching on its name.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SotError


@dataclass(frozen=True)
class Weights:
    ce: float
    kd: float
    feat: float
    temperature: float = 4.0


@dataclass(frozen=True)
class MethodSpec:
    name: str
    cls: type
    defaults: Weights
    summary: str


_METHODS: dict[str, MethodSpec] = {}


def register(name: str, ce: float = 1.0, kd: float = 0.0, feat: float = 0.0, summary: str = ""):
    def deco(cls):
        _METHODS[name] = MethodSpec(name, cls, Weights(ce, kd, feat), summary)
        cls.method = name
        return cls

    return deco


def list_methods(pattern: str = "*") -> list[str]:
    return [n for n in _METHODS if fnmatch.fnmatchcase(n, pattern)]


def get_method(name: str) -> MethodSpec:
    try:
        return _METHODS[name]
    except KeyError:
        raise SotError(f"unknown method {name!r}; valid methods: {', '.join(_METHODS)}") from None


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """Hinton et al. (NIPS-W 2015): KL(softmax(t/T) || softmax(s/T)) * T^2, summed / batch."""
    log_p_s = F.log_softmax(student_logits / T, dim=1)
    p_t = F.softmax(teacher_logits / T, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="sum") * (T * T) / student_logits.shape[0]


@dataclass(frozen=True)
class Context:
    """What a method may need to size itself: feature shapes from a dummy forward, the data."""

    s_feats: list[torch.Size]
    t_feats: list[torch.Size]
    s_preact: list[torch.Size]
    t_preact: list[torch.Size]
    num_train: int
    num_classes: int
    train_targets: torch.Tensor | None
    student_name: str
    teacher_name: str
    input_size: int = 32


class Distiller(nn.Module):
    """Base: CE on the student, KL to the teacher, plus the method's own term ``feat_loss``."""

    method = "base"
    needs_preact = False
    init_epochs = 0  # > 0: an initialisation stage runs before the main training (ab, ft, fsp)
    init_only: tuple[str, ...] = ()  # modules trained in the init stage only, frozen afterwards

    def __init__(self, student: nn.Module, teacher: nn.Module, weights: Weights, ctx: Context):
        super().__init__()
        self.student = student
        self.teacher = teacher
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.w = weights
        self.epoch = 1

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher is frozen in eval mode, always
        return self

    def learnable_parameters(self) -> list[nn.Parameter]:
        """What the main stage optimizes: the student and the method's own modules, except the
        teacher and the modules that only the initialisation stage trains."""
        frozen = {id(p) for p in self.teacher.parameters()}
        for name in self.init_only:
            frozen.update(id(p) for p in getattr(self, name).parameters())
        return [p for p in self.parameters() if id(p) not in frozen]

    # ------------------------------------------------ the initialisation stage (multi-stage methods)

    def init_parameters(self) -> list[nn.Parameter]:
        """What the initialisation stage optimizes (the reference's ``init_modules``)."""
        return []

    def init_lr(self, base_lr: float) -> float:
        return base_lr

    def init_train_mode(self) -> None:
        """The reference puts teacher and student in eval mode and the init modules in train."""
        self.eval()
        for m in self.init_modules():
            m.train()

    def init_modules(self) -> list[nn.Module]:
        return []

    def init_loss(self, x: torch.Tensor) -> torch.Tensor:
        raise SotError(f"{self.method} has no initialisation stage")

    def method_state(self) -> dict:
        """State of the method's own modules and buffers (not student, not teacher)."""
        return {k: v for k, v in self.state_dict().items()
                if not k.startswith(("student.", "teacher."))}

    def load_method_state(self, state: dict) -> None:
        own = self.method_state()
        missing = set(own) - set(state)
        if missing:
            raise SotError(f"checkpoint lacks the {self.method} state {sorted(missing)[0]!r}")
        self.load_state_dict({**self.state_dict(), **state})

    def feat_loss(self, s_out, t_out, y, index) -> torch.Tensor | None:
        return None

    def forward(self, x, y, index):
        s_out = self.student(x)
        with torch.no_grad():
            t_out = self.teacher(x)
        terms = {}
        if self.w.ce:
            terms["loss/ce"] = self.w.ce * F.cross_entropy(s_out.logits, y)
        if self.w.kd:
            terms["loss/kd"] = self.w.kd * kd_loss(s_out.logits, t_out.logits, self.w.temperature)
        if self.w.feat:
            extra = self.feat_loss(s_out, t_out, y, index)
            if extra is not None:
                terms[f"loss/{self.method}"] = self.w.feat * extra
        return s_out.logits, terms


def pool_to_match(f_s: torch.Tensor, f_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two feature maps to the other's spatial size (as the reference)."""
    s_h, t_h = f_s.shape[2], f_t.shape[2]
    if s_h > t_h:
        f_s = F.adaptive_avg_pool2d(f_s, (t_h, t_h))
    elif s_h < t_h:
        f_t = F.adaptive_avg_pool2d(f_t, (s_h, s_h))
    return f_s, f_t


def feature_parameters(model: nn.Module, input_size: int) -> list[nn.Parameter]:
    """The parameters the pooled embedding depends on: the model without its classifier (the
    reference's ``get_feat_modules``), found by differentiating the embedding of a dummy batch."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    emb = model(torch.zeros(1, 3, input_size, input_size, device=device)).feats[-1]
    grads = torch.autograd.grad(emb.sum(), params, allow_unused=True)
    model.train(was)
    return [p for p, g in zip(params, grads) if g is not None]


def conv_regressor(s_shape, t_shape, relu: bool = True) -> nn.Module:
    """Maps a student feature map onto a teacher map's shape (RepDistiller's ConvReg)."""
    _, s_c, s_h, s_w = s_shape
    _, t_c, t_h, t_w = t_shape
    if s_h == 2 * t_h:
        conv = nn.Conv2d(s_c, t_c, 3, stride=2, padding=1)
    elif s_h * 2 == t_h:
        conv = nn.ConvTranspose2d(s_c, t_c, 4, stride=2, padding=1)
    elif s_h >= t_h:
        conv = nn.Conv2d(s_c, t_c, (1 + s_h - t_h, 1 + s_w - t_w))
    else:
        raise SotError(f"cannot connect a {s_h}x{s_w} student map to a {t_h}x{t_w} teacher map")
    layers = [conv, nn.BatchNorm2d(t_c)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Embed(nn.Module):
    """Linear projection to ``dim`` followed by L2 normalisation (CRD / CC heads)."""

    def __init__(self, cin: int, dim: int = 128):
        super().__init__()
        self.linear = nn.Linear(cin, dim)

    def forward(self, x):
        x = self.linear(x.flatten(1))
        return x / x.pow(2).sum(1, keepdim=True).pow(0.5)


Factory = Callable[..., Distiller]
