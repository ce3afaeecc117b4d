import math

import numpy as np
import pytest
import torch
from torch import nn

from sot_ray.errors import SotError
from sot_ray.models import create_model, list_models
from sot_ray.regularizers import ConsistencyRegularizer, LipschitzPenalty, consist_weight


def reference_lip(net: nn.Module) -> torch.Tensor:
    """The reference's loop (SoTeacher helper/lip_util.py), restated: leaf modules by class name."""
    loss = torch.tensor(0.0)
    for module in net.modules():
        if list(module.children()):
            continue
        kind = module._get_name().lower()
        if "conv" in kind:
            loss = loss + torch.norm(module.weight, 1)
        elif "batchnorm" in kind:
            loss = loss + torch.max(module.weight.abs() / torch.sqrt(module.running_var + module.eps))
        elif "linear" in kind:
            loss = loss + module.weight.abs().sum(dim=0).max()
    return loss


def test_lip_golden_on_a_hand_built_network():
    conv = nn.Conv2d(1, 2, 2, bias=True)
    bn = nn.BatchNorm2d(2, eps=0.0)
    lin = nn.Linear(2, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -2.0, 3.0, -4.0, 0.5, 0.5, -0.5, 0.5]).view(2, 1, 2, 2))
        conv.bias.fill_(100.0)  # biases are not part of the penalty
        bn.weight.copy_(torch.tensor([1.0, -3.0]))
        bn.running_var.copy_(torch.tensor([4.0, 1.0]))
        lin.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.5], [-3.0, 0.25]]))
    net = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten(), lin)
    # conv: 10 + 2 = 12; bn: max(1/2, 3/1) = 3; linear: max(1+2+3, 1+0.5+0.25) = 6
    assert LipschitzPenalty(net)().item() == pytest.approx(21.0, rel=1e-6)


@pytest.mark.parametrize("name", list_models())
def test_lip_matches_the_reference_loop_on_every_model(name):
    torch.manual_seed(1)
    model = create_model(name, 100)
    with torch.no_grad():  # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(-1.5, 1.5)
    ours, ref = LipschitzPenalty(model)(), reference_lip(model)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize("name,expected", [("wrn_40_2", 0.85), ("wrn_40_1", 0.30)])
def test_lip_at_initialisation_matches_the_paper_sanity_values(name, expected):
    torch.manual_seed(0)
    value = 1e-5 * LipschitzPenalty(create_model(name, 100))().item()
    assert value == pytest.approx(expected, rel=0.03)


def test_lip_gradient_flows_to_weights_not_running_stats():
    model = create_model("resnet8", 10)
    LipschitzPenalty(model)().backward()
    conv = model.conv1
    assert torch.allclose(conv.weight.grad, conv.weight.sign())
    assert model.fc.bias.grad is None


def test_consistency_golden_values_over_three_epochs():
    reg = ConsistencyRegularizer(num_samples=2, num_classes=3)
    idx = torch.tensor([0, 1])
    zeros = torch.zeros(2, 3)
    assert reg(zeros, idx).item() == 0.0  # epoch 1: no loss, bank <- predictions
    assert torch.allclose(reg.bank, torch.full((2, 3), 1 / 3))
    reg.end_epoch()
    l2 = torch.tensor([[math.log(2.0), 0.0, 0.0]] * 2)  # softmax = (1/2, 1/4, 1/4)
    # mean over batch of sum_c (p - q)^2 = (1/6)^2 + 2 (1/12)^2 = 1/24
    assert reg(l2, idx).item() == pytest.approx(1 / 24, rel=1e-6)
    # epoch 2 weighs the new prediction 1/3 (the reference counts epoch 1 twice)
    expected = np.array([2 / 9 + 1 / 6, 2 / 9 + 1 / 12, 2 / 9 + 1 / 12])
    np.testing.assert_allclose(reg.bank.numpy(), np.tile(expected, (2, 1)), rtol=1e-6)
    reg.end_epoch()
    reg(zeros, idx)  # epoch 3: weight 1/4
    np.testing.assert_allclose(reg.bank[0].numpy(), 0.75 * expected + 0.25 / 3, rtol=1e-6)


def test_consistency_gradient_goes_through_softmax_only():
    torch.manual_seed(0)
    reg = ConsistencyRegularizer(4, 5)
    idx = torch.arange(4)
    reg(torch.randn(4, 5), idx)
    reg.end_epoch()
    logits = torch.randn(4, 5, requires_grad=True)
    q = reg.bank.clone()
    reg.loss(logits, idx).backward()
    p = torch.softmax(logits.detach(), 1)
    g = 2 * (p - q) / 4  # d/dp of mean_b sum_c (p - q)^2
    expected = p * (g - (g * p).sum(1, keepdim=True))  # through the softmax Jacobian
    assert torch.allclose(logits.grad, expected, atol=1e-6)


def test_consistency_state_travels_with_state_dict_and_device():
    reg = ConsistencyRegularizer(3, 2)
    reg(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 2]))
    reg.end_epoch()
    other = ConsistencyRegularizer(3, 2)
    other.load_state_dict(reg.state_dict())
    assert torch.equal(other.bank, reg.bank) and int(other.epochs_done) == 1
    moved = other.to(torch.float64)
    assert moved.bank.dtype == torch.float64
    assert set(reg.state_dict()) == {"bank", "epochs_done"}


@pytest.mark.parametrize("schedule,epoch,expected", [
    ("linear", 120, 0.5), ("linear", 240, 1.0), ("linear", 1, 1 / 240),
    ("step", 50, 0.0), ("step", 51, 1.0),
    ("cosine", 240, 1.0), ("cosine", 120, math.cos(math.pi / 4)),
    ("cycle", 240, 1.0), ("cycle", 120, math.sqrt(0.75)),
    ("constant", 7, 1.0),
])
def test_consistency_schedules(schedule, epoch, expected):
    assert consist_weight(schedule, 1.0, epoch, 240, start_at=50) == pytest.approx(expected)


def test_unknown_schedule_lists_valid_ones():
    with pytest.raises(SotError, match="valid: linear, step, cosine, cycle, constant"):
        consist_weight("exp", 1.0, 1, 10)
