"""LARS, parameter groups, optimiser registry, lr scaling and schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainables.core.optim import LARS, build_optimizer, build_schedule, param_groups
from trainables.spec.lr_scaling import LR_SCALING, scaled_lr
from trainables.spec.optimizers import OPTIMIZERS, SCHEDULES

BATCHES = [128, 256, 512, 1024, 2048, 4096, 8192]


def _convnet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, kernel_size=3, bias=True),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


def _group_of(groups: list[dict], param: torch.Tensor) -> dict:
    (group,) = [g for g in groups if any(p is param for p in g["params"])]
    return group


# --- param_groups ----------------------------------------------------------------------------
def test_param_groups_exclude_biases_and_norm_parameters() -> None:
    model = _convnet()
    conv, bn, linear = model[0], model[1], model[5]
    groups = param_groups(model, weight_decay=1e-4)
    for excluded in (conv.bias, bn.weight, bn.bias, linear.bias):
        assert _group_of(groups, excluded)["lars_exclude"] is True
        assert _group_of(groups, excluded)["weight_decay"] == 0.0
    for included in (conv.weight, linear.weight):
        assert _group_of(groups, included)["lars_exclude"] is False
        assert _group_of(groups, included)["weight_decay"] == 1e-4


def test_param_groups_cover_each_trainable_parameter_once() -> None:
    model = _convnet()
    model[5].weight.requires_grad_(False)
    grouped = [p for g in param_groups(model, weight_decay=1e-4) for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(grouped) == len(trainable) == len({id(p) for p in grouped})
    assert {id(p) for p in grouped} == {id(p) for p in trainable}


def test_param_groups_drop_empty_groups() -> None:
    groups = param_groups(nn.BatchNorm1d(3), weight_decay=1e-4)
    assert [g["lars_exclude"] for g in groups] == [True]


# --- LARS ------------------------------------------------------------------------------------
def _lars_on_one_model(weight_decay: float, lr: float) -> tuple[nn.Linear, LARS]:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0]]))  # ‖w‖ = 5
        layer.bias.copy_(torch.tensor([2.0]))
    optimizer = LARS(param_groups(layer, weight_decay), lr=lr)
    return layer, optimizer


def _set_grads(layer: nn.Linear, weight_grad: list[float], bias_grad: float) -> None:
    layer.weight.grad = torch.tensor([weight_grad])
    layer.bias.grad = torch.tensor([bias_grad])


def test_lars_excluded_parameter_takes_a_plain_momentum_sgd_step() -> None:
    layer, optimizer = _lars_on_one_model(weight_decay=0.5, lr=0.1)
    _set_grads(layer, [0.6, 0.8], bias_grad=0.3)
    optimizer.step()
    # No decay, no trust ratio: b ← b − lr·g.
    torch.testing.assert_close(layer.bias, torch.tensor([2.0 - 0.1 * 0.3]))
    _set_grads(layer, [0.6, 0.8], bias_grad=-0.2)
    optimizer.step()
    # buf = 0.9·0.3 − 0.2 = 0.07.
    torch.testing.assert_close(layer.bias, torch.tensor([2.0 - 0.03 - 0.1 * 0.07]))


def test_lars_excluded_parameters_match_torch_sgd() -> None:
    torch.manual_seed(0)
    model = _convnet()
    reference = _convnet()
    reference.load_state_dict(model.state_dict())
    lars = LARS(param_groups(model, weight_decay=0.1), lr=0.05)
    sgd = torch.optim.SGD(param_groups(reference, weight_decay=0.1), lr=0.05, momentum=0.9)
    for _ in range(3):
        grads = [torch.randn_like(p) for p in model.parameters()]
        for p, q, g in zip(model.parameters(), reference.parameters(), grads):
            p.grad, q.grad = g.clone(), g.clone()
        lars.step()
        sgd.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        if p.ndim <= 1:
            torch.testing.assert_close(p, q)


def test_lars_included_parameter_is_scaled_by_the_trust_ratio() -> None:
    lr, wd = 0.1, 0.5
    layer, optimizer = _lars_on_one_model(weight_decay=wd, lr=lr)
    _set_grads(layer, [0.6, 0.8], bias_grad=0.0)  # ‖g‖ = 1
    optimizer.step()
    # d = g + wd·w = (2.1, 2.8); ratio = 0.001·5 / (1 + 0.5·5) = 0.005 / 3.5.
    ratio = 0.001 * 5.0 / 3.5
    expected = torch.tensor([[3.0 - lr * ratio * 2.1, 4.0 - lr * ratio * 2.8]])
    torch.testing.assert_close(layer.weight, expected)


def test_lars_momentum_accumulates_trust_scaled_updates() -> None:
    lr, wd = 0.1, 0.0
    layer, optimizer = _lars_on_one_model(weight_decay=wd, lr=lr)
    _set_grads(layer, [0.6, 0.8], bias_grad=0.0)
    optimizer.step()
    w1 = layer.weight.detach().clone()
    first = 0.001 * 5.0 * torch.tensor([[0.6, 0.8]])  # ratio · g with ‖g‖ = 1
    torch.testing.assert_close(w1, torch.tensor([[3.0, 4.0]]) - lr * first)
    _set_grads(layer, [0.0, 2.0], bias_grad=0.0)  # ‖g‖ = 2
    optimizer.step()
    second = 0.001 * torch.linalg.vector_norm(w1) / 2.0 * torch.tensor([[0.0, 2.0]])
    torch.testing.assert_close(layer.weight, w1 - lr * (0.9 * first + second))


def test_lars_trust_ratio_is_one_for_zero_weights() -> None:
    layer, optimizer = _lars_on_one_model(weight_decay=0.5, lr=0.1)
    with torch.no_grad():
        layer.weight.zero_()
    _set_grads(layer, [0.6, 0.8], bias_grad=0.0)
    optimizer.step()
    torch.testing.assert_close(layer.weight, torch.tensor([[-0.06, -0.08]]))


def test_lars_skips_parameters_without_gradients() -> None:
    layer, optimizer = _lars_on_one_model(weight_decay=0.5, lr=0.1)
    before = layer.weight.detach().clone()
    optimizer.step()
    torch.testing.assert_close(layer.weight, before)


def test_lars_without_groups_adapts_every_parameter() -> None:
    layer = nn.Linear(2, 1)
    optimizer = LARS(layer.parameters(), lr=0.1)
    assert optimizer.param_groups[0]["lars_exclude"] is False
    assert optimizer.param_groups[0]["trust_coefficient"] == 0.001
    assert optimizer.param_groups[0]["momentum"] == 0.9


# --- build_optimizer -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kind"), [("lars", LARS), ("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)]
)
def test_build_optimizer_uses_param_groups(name: str, kind: type) -> None:
    model = _convnet()
    optimizer = build_optimizer(name, model, 0.3, weight_decay=1e-6)
    assert isinstance(optimizer, kind)
    assert [(g["weight_decay"], g["lars_exclude"]) for g in optimizer.param_groups] == [(1e-6, False), (0.0, True)]
    assert all(g["lr"] == 0.3 for g in optimizer.param_groups)


def test_optimizer_registry_names() -> None:
    assert set(OPTIMIZERS) == {"lars", "sgd", "adam"}


@pytest.mark.parametrize("name", ["lars", "sgd"])
def test_build_optimizer_passes_momentum(name: str) -> None:
    optimizer = build_optimizer(name, _convnet(), 0.1, weight_decay=0.0, momentum=0.8)
    assert all(g["momentum"] == 0.8 for g in optimizer.param_groups)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_build_optimizer_passes_fused(name: str) -> None:
    model = _convnet()
    optimizer = build_optimizer(name, model, 1e-3, weight_decay=1e-6, fused=True)
    assert all(g["fused"] is True for g in optimizer.param_groups)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()


def test_lars_accepts_and_ignores_fused() -> None:
    assert isinstance(build_optimizer("lars", _convnet(), 0.1, weight_decay=1e-6, fused=True), LARS)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "rmsprop"}, "optimizer"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"weight_decay": -1e-6}, "weight_decay"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
    ],
)
def test_build_optimizer_rejects_bad_values(kwargs: dict, field: str) -> None:
    arguments = {"name": "sgd", "lr": 0.1, "weight_decay": 1e-6, "momentum": 0.9} | kwargs
    name, lr = arguments.pop("name"), arguments.pop("lr")
    with pytest.raises(ValueError, match=field) as info:
        build_optimizer(name, _convnet(), lr, **arguments)
    assert repr(kwargs[next(iter(kwargs))]) in str(info.value)


def test_unknown_optimizer_message_lists_the_allowed_names() -> None:
    with pytest.raises(ValueError, match=r"optimizer='rmsprop'.*\['adam', 'lars', 'sgd'\]"):
        build_optimizer("rmsprop", _convnet(), 0.1, weight_decay=0.0)


# --- lr scaling ------------------------------------------------------------------------------
@pytest.mark.parametrize(("batch_size", "expected"), zip(BATCHES, [0.15, 0.3, 0.6, 1.2, 2.4, 4.8, 9.6]))
def test_linear_scaling_matches_flatclr_table(batch_size: int, expected: float) -> None:
    assert scaled_lr(0.3, batch_size, "linear") == pytest.approx(expected)


@pytest.mark.parametrize(("batch_size", "expected"), zip(BATCHES, [0.85, 1.20, 1.70, 2.40, 3.39, 4.80, 6.79]))
def test_sqrt_scaling_matches_flatclr_table(batch_size: int, expected: float) -> None:
    assert round(scaled_lr(0.075, batch_size, "sqrt"), 2) == expected


def test_linear_and_sqrt_agree_at_4096() -> None:
    assert scaled_lr(0.3, 4096, "linear") == pytest.approx(scaled_lr(0.075, 4096, "sqrt"))


def test_no_scaling_keeps_the_base_lr() -> None:
    assert scaled_lr(1e-3, 256, "none") == 1e-3
    assert set(LR_SCALING) == {"linear", "sqrt", "none"}


@pytest.mark.parametrize(
    ("args", "field"),
    [((0.3, 256, "cubic"), "lr_scaling"), ((0.3, 0, "linear"), "batch_size"), ((0.0, 256, "linear"), "base_lr")],
)
def test_scaled_lr_rejects_bad_values(args: tuple, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        scaled_lr(*args)


# --- schedules -------------------------------------------------------------------------------
BASE_LR, FINAL_LR, WARMUP, TOTAL = 0.6, 1e-6, 10, 110


def _closed_form(step: int) -> float:
    if step < WARMUP:
        return BASE_LR * step / WARMUP
    progress = min((step - WARMUP) / (TOTAL - WARMUP), 1.0)
    return FINAL_LR + 0.5 * (BASE_LR - FINAL_LR) * (1 + math.cos(math.pi * progress))


def _lrs_over(schedule_name: str, steps: int) -> list[list[float]]:
    """Every group's lr before each of ``steps`` optimiser steps (index = step)."""
    optimizer = build_optimizer("lars", _convnet(), BASE_LR, weight_decay=1e-6)
    scheduler = build_schedule(optimizer, schedule_name, warmup_steps=WARMUP, total_steps=TOTAL, final_lr=FINAL_LR)
    lrs = []
    for _ in range(steps):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_schedule_follows_the_closed_form() -> None:
    lrs = _lrs_over("cosine", TOTAL + 5)
    midway = WARMUP + (TOTAL - WARMUP) // 2
    checkpoints = {0: 0.0, WARMUP: BASE_LR, midway: (BASE_LR + FINAL_LR) / 2, TOTAL: FINAL_LR, TOTAL + 4: FINAL_LR}
    for step, value in checkpoints.items():
        assert lrs[step] == pytest.approx([value, value], rel=1e-9, abs=1e-12)
    for step, group_lrs in enumerate(lrs):
        assert group_lrs == pytest.approx([_closed_form(step)] * 2, rel=1e-9, abs=1e-12)


def test_cosine_warmup_is_linear_from_zero() -> None:
    lrs = [group_lrs[0] for group_lrs in _lrs_over("cosine", WARMUP + 1)]
    assert lrs == pytest.approx([BASE_LR * step / WARMUP for step in range(WARMUP + 1)])


def test_cosine_without_warmup_starts_at_the_peak() -> None:
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=BASE_LR)
    build_schedule(optimizer, "cosine", warmup_steps=0, total_steps=TOTAL)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(BASE_LR)


def test_cosine_schedule_resumes_from_a_state_dict() -> None:
    def fresh() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        optimizer = build_optimizer("sgd", _convnet(), BASE_LR, weight_decay=0.0)
        return optimizer, build_schedule(optimizer, "cosine", warmup_steps=WARMUP, total_steps=TOTAL)

    optimizer, scheduler = fresh()
    for _ in range(30):
        optimizer.step()
        scheduler.step()
    resumed_optimizer, resumed_scheduler = fresh()
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    resumed_scheduler.load_state_dict(scheduler.state_dict())
    optimizer.step()
    scheduler.step()
    resumed_optimizer.step()
    resumed_scheduler.step()
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])
    assert resumed_optimizer.param_groups[0]["lr"] == pytest.approx(_closed_form(31), rel=1e-6)


def test_constant_schedule_never_changes_the_lr() -> None:
    lrs = _lrs_over("constant", 30)
    assert all(group_lrs == [BASE_LR, BASE_LR] for group_lrs in lrs)
    assert set(SCHEDULES) == {"cosine", "constant"}


@pytest.mark.parametrize(
    ("name", "warmup_steps", "total_steps", "field"),
    [("step", 0, 10, "schedule"), ("cosine", -1, 10, "warmup_steps"), ("cosine", 10, 10, "total_steps")],
)
def test_build_schedule_rejects_bad_values(name: str, warmup_steps: int, total_steps: int, field: str) -> None:
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match=field):
        build_schedule(optimizer, name, warmup_steps=warmup_steps, total_steps=total_steps)
