import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sot_ray.distillers import create_distiller, get_method, kd_loss, list_methods
from sot_ray.distillers.attention import at_loss
from sot_ray.distillers.boundary import ab_loss
from sot_ray.distillers.correlation import cc_loss
from sot_ray.distillers.crd import NegativeSampler, nce_loss
from sot_ray.distillers.factor import ft_loss
from sot_ray.distillers.fsp import fsp_loss
from sot_ray.distillers.logits import dkd_loss
from sot_ray.distillers.nst import nst_loss
from sot_ray.distillers.pkt import pkt_loss
from sot_ray.distillers.relational import rkd_loss
from sot_ray.distillers.similarity import sp_loss
from sot_ray.errors import SotError
from sot_ray.models import ModelOutput, create_model

from . import reference_forms as ref

GOLDEN = Path(__file__).parent / "golden" / "distill_losses.json"
PAPER_DEFAULTS = {  # ../shared/paper.md: (ce, kd, feat)
    "none": (1, 0, 0), "kd": (0.1, 0.9, 0), "fitnet": (1, 0, 100), "at": (1, 0, 1000),
    "sp": (1, 0, 3000), "cc": (1, 0, 0.02), "vid": (1, 0, 1), "rkd": (1, 0, 1),
    "pkt": (1, 0, 30000), "nst": (1, 0, 50), "crd": (1, 0, 0.8), "crd+kd": (1, 1, 0.8),
    "dkd": (1, 0, 1), "ab": (1, 0, 1), "ft": (1, 0, 200), "fsp": (1, 0, 50),
}


def fixed_inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(1234)
    x = {
        "s_logits": torch.randn(6, 5, generator=g) * 2,
        "t_logits": torch.randn(6, 5, generator=g) * 2,
        "y": torch.tensor([0, 1, 2, 3, 4, 0]),
        "s_map": torch.randn(6, 4, 8, 8, generator=g).relu(),
        "t_map": torch.randn(6, 3, 4, 4, generator=g).relu(),
        "s_emb": torch.randn(6, 7, generator=g),
        "t_emb": torch.randn(6, 9, generator=g),
        "e_s": F.normalize(torch.randn(6, 8, generator=g), dim=1),
        "e_t": F.normalize(torch.randn(6, 8, generator=g), dim=1),
        "scores": torch.rand(6, 11, generator=g) * 1e-3,
    }
    # stage lists (3 stages, student and teacher channels equal as FSP needs)
    x["g_s"] = [torch.randn(4, c, h, h, generator=g) for c, h in ((4, 8), (6, 4), (8, 2))]
    x["g_t"] = [torch.randn(4, c, h, h, generator=g) for c, h in ((4, 8), (6, 4), (8, 2))]
    return {k: [t.to(dtype) for t in v] if isinstance(v, list) else
            (v.to(dtype) if v.is_floating_point() else v) for k, v in x.items()}


def loss_values() -> dict[str, float]:
    x = fixed_inputs()
    return {
        "kd_T4": kd_loss(x["s_logits"], x["t_logits"], 4.0).item(),
        "dkd_a1_b8_T4": dkd_loss(x["s_logits"], x["t_logits"], x["y"], 1.0, 8.0, 4.0).item(),
        "at_p2": at_loss(x["s_map"], x["t_map"]).item(),
        "sp": sp_loss(x["s_map"], x["s_map"].flip(0)).item(),
        "cc": cc_loss(x["e_s"], x["e_t"]).item(),
        "rkd_25_50": rkd_loss(x["s_emb"], x["t_emb"]).item(),
        "pkt": pkt_loss(x["s_emb"], x["t_emb"]).item(),
        "nst": nst_loss(x["s_map"], x["t_map"]).item(),
        "nce_n100": nce_loss(x["scores"], 100).item(),
        "ab_m1": ab_loss(x["g_s"], x["g_t"]).item(),
        "fsp": fsp_loss(x["g_s"], x["g_t"]).item(),
        "ft_p2_l1": ft_loss(x["s_map"], x["t_map"]).item(),
    }


def reference_values() -> dict[str, float]:
    x = fixed_inputs(torch.float64)
    return {
        "kd_T4": ref.kd(x["s_logits"], x["t_logits"], 4.0),
        "dkd_a1_b8_T4": ref.dkd(x["s_logits"], x["t_logits"], x["y"], 1.0, 8.0, 4.0),
        "at_p2": ref.at(x["s_map"], x["t_map"]),
        "sp": ref.sp(x["s_map"], x["s_map"].flip(0)),
        "cc": ref.cc(x["e_s"], x["e_t"]),
        "rkd_25_50": ref.rkd(x["s_emb"], x["t_emb"]),
        "pkt": ref.pkt(x["s_emb"], x["t_emb"]),
        "nst": ref.nst(x["s_map"], x["t_map"]),
        "nce_n100": ref.nce(x["scores"], 100),
        "ab_m1": ref.ab(x["g_s"], x["g_t"]),
        "fsp": ref.fsp(x["g_s"], x["g_t"]),
        "ft_p2_l1": ref.ft(x["s_map"], x["t_map"]),
    }


def test_losses_equal_the_reference_formulas_restated_element_by_element():
    ours, theirs = loss_values(), reference_values()
    assert set(ours) == set(theirs)
    for k in ours:
        assert ours[k] == pytest.approx(theirs[k], rel=1e-5), k
        assert theirs[k] != 0.0, k  # a vanishing value would test nothing


def test_losses_equal_their_frozen_golden_values():
    golden = json.loads(GOLDEN.read_text())
    values = loss_values()
    assert set(values) == set(golden)
    for k, v in values.items():
        assert v == pytest.approx(golden[k], rel=1e-5), k


def test_kd_loss_by_hand():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    p_s, p_t = torch.softmax(s / 2, 1), torch.softmax(t / 2, 1)
    expected = (p_t * (p_t.log() - p_s.log())).sum() * 4
    assert kd_loss(s, t, 2.0).item() == pytest.approx(expected.item(), rel=1e-6)


def test_dkd_decomposes_kd_as_the_paper_states():
    # Zhao et al.: KD = TCKD + (1 - p_t^gt) NCKD, per sample
    x = fixed_inputs()
    for i in range(3):
        s, t, y = x["s_logits"][i:i + 1], x["t_logits"][i:i + 1], x["y"][i:i + 1]
        tckd = dkd_loss(s, t, y, 1.0, 0.0, 1.0)
        nckd = dkd_loss(s, t, y, 0.0, 1.0, 1.0)
        p_gt = torch.softmax(t, 1)[0, y[0]]
        assert kd_loss(s, t, 1.0).item() == pytest.approx((tckd + (1 - p_gt) * nckd).item(), rel=1e-4)


def test_method_defaults_are_the_papers():
    assert set(list_methods()) == set(PAPER_DEFAULTS)
    for name, (ce, kd, feat) in PAPER_DEFAULTS.items():
        d = get_method(name).defaults
        assert (d.ce, d.kd, d.feat, d.temperature) == (ce, kd, feat, 4.0), name


def _distiller(method, student="resnet8", teacher="wrn_16_1", n=32):
    torch.manual_seed(0)
    s, t = create_model(student, 10), create_model(teacher, 10)
    d = create_distiller(method, s, t, input_size=32, num_train=n, num_classes=10,
                         train_targets=torch.arange(n) % 10, student_name=student,
                         teacher_name=teacher)
    return d, s, t


def _snapshot(params):
    return [p.detach().clone() for p in params]


def _changed(before, params):
    return [not torch.equal(a, b) for a, b in zip(before, params)]


@pytest.mark.parametrize("method", list_methods())
def test_every_method_trains_and_only_the_right_parameters_learn(method):
    d, student, teacher = _distiller(method)
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    learn = d.learnable_parameters()
    learn_ids = {id(p) for p in learn}
    own = [p for n, p in d.named_parameters()
           if not n.startswith(("student.", "teacher.")) and id(p) in learn_ids]
    frozen_own = [p for n, p in d.named_parameters()
                  if not n.startswith(("student.", "teacher.")) and id(p) not in learn_ids]
    assert not frozen_own or d.init_only  # only init-stage modules sit out the main stage
    own_before, frozen_before = _snapshot(own), _snapshot(frozen_own)
    s_before = _snapshot(student.parameters())
    opt = torch.optim.SGD(learn, lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for step in range(3):
        idx = torch.randperm(32, generator=g)[:8]
        x, y = torch.randn(8, 3, 32, 32, generator=g), idx % 10
        d.train()
        assert not teacher.training
        logits, terms = d(x, y, idx)
        assert logits.shape == (8, 10) and terms
        assert all(torch.isfinite(v) for v in terms.values()), terms
        if method not in ("none", "kd", "ab", "fsp"):  # ab, fsp: CE only after their init stage
            assert f"loss/{get_method(method).cls.method}" in terms
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, t_before[k]) for k, v in teacher.state_dict().items())  # BN stats too
    assert any(_changed(s_before, student.parameters()))
    assert all(_changed(own_before, own)), "method modules must learn"
    assert not any(_changed(frozen_before, frozen_own)), "init-only modules stay frozen"


@pytest.mark.parametrize("method", [m for m in list_methods() if get_method(m).cls.init_epochs])
def test_initialisation_stage_trains_only_its_modules_and_lowers_its_loss(method):
    # wrn_16_2 -> resnet8 needs real (conv) AB connectors; FSP needs equal channels
    d, student, teacher = _distiller(method, teacher="wrn_16_1" if method == "fsp" else "wrn_16_2")
    if method == "ab":
        assert all(isinstance(c, nn.Sequential) for c in d.connectors)
    assert d.init_epochs == 30
    init_ids = {id(p) for p in d.init_parameters()}
    classifier = student.fc.parameters()
    if method == "ft":  # only the paraphraser: the student is untouched by this stage
        assert not init_ids & {id(p) for p in student.parameters()}
    else:  # the student's feature layers (not its classifier) and the method's connectors
        assert not init_ids & {id(p) for p in classifier}
        assert {id(p) for p in student.layer1.parameters()} <= init_ids
    assert not init_ids & {id(p) for p in teacher.parameters()}
    params = d.init_parameters()
    rest = [p for p in d.parameters() if id(p) not in init_ids]
    rest_before, init_before = _snapshot(rest), _snapshot(params)
    opt = torch.optim.SGD(params, lr=d.init_lr(0.05), momentum=0.9)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(15):
        d.init_train_mode()
        assert not teacher.training
        loss = d.init_loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(_changed(rest_before, rest))
    assert sum(_changed(init_before, params)) >= len(params) // 2


def test_factor_transfer_pretrains_its_paraphraser_with_the_reference_rate():
    d, _, _ = _distiller("ft")
    assert d.init_lr(0.05) == 0.01  # resnet8 student: the reference's 0.01
    d2, _, _ = _distiller("ft", student="ShuffleV1")
    assert d2.init_lr(0.01) == 0.01 and d2.init_lr(0.05) == 0.05


def test_fsp_refuses_a_pair_with_different_channels():
    with pytest.raises(SotError, match=r"method fsp cannot serve wrn_16_2 -> resnet8: fsp needs "
                                       r"equal channels at every stage"):
        _distiller("fsp", teacher="wrn_16_2")


def test_crd_negatives_come_from_other_classes():
    targets = torch.arange(40) % 4
    sampler = NegativeSampler(targets, k=25)
    idx = torch.tensor([0, 1, 2, 3, 17])
    cand = sampler(idx)
    assert cand.shape == (5, 26) and torch.equal(cand[:, 0], idx)
    assert (targets[cand[:, 1:]] != targets[idx].unsqueeze(1)).all()
    assert len(torch.unique(cand[:, 1:])) > 20  # spread over the pool


def test_crd_memory_state_is_checkpointable():
    d, _, _ = _distiller("crd")
    state = d.method_state()
    assert {"memory.memory_s", "memory.memory_t", "memory.z"} <= set(state)
    assert state["memory.memory_s"].shape == (32, 128)


class _WideHint(nn.Module):
    """A teacher whose third feature map (32x32) no regressor can reach from an 8x8 student map."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        f = self.conv(x)
        emb = f.mean((2, 3))
        feats = [f, f, f, f, emb]
        return ModelOutput(self.fc(emb), feats, feats)


def test_pair_a_method_cannot_serve_is_refused_before_training():
    with pytest.raises(SotError, match="method fitnet cannot serve odd -> MobileNetV2"):
        create_distiller("fitnet", create_model("MobileNetV2", 10), _WideHint(), input_size=32,
                         num_train=8, num_classes=10, train_targets=None,
                         student_name="MobileNetV2", teacher_name="odd")


def test_unknown_method_lists_valid_ones():
    with pytest.raises(SotError, match="valid methods: none, kd"):
        get_method("hint")


def test_nce_is_minimal_for_confident_positives():
    n = 100
    good = torch.cat([torch.ones(4, 1), torch.full((4, 10), 1e-6)], dim=1)
    bad = torch.cat([torch.full((4, 1), 1e-6), torch.ones(4, 10)], dim=1)
    assert nce_loss(good, n) < nce_loss(bad, n)
    assert math.isfinite(nce_loss(good, n).item())
