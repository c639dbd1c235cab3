"""Optimisers and schedulers: parity with PyTorch's update rules, param groups, state_dicts, validation."""
import math

import numpy as np
import pytest

import minidl
import minidl.nn as nn
from minidl import optim
from minidl.serialization import load, save
from tests.helpers import assert_close, needs_torch, torch

SHAPES = [(4, 3), (3,), (2, 2, 2)]
STEPS = 6


def _arrays(dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]
    grads = [[rng.standard_normal(shape).astype(dtype) for shape in SHAPES] for _ in range(STEPS)]
    return params, grads


def _run_minidl(make, params, grads, groups=None, device="cpu"):
    tensors = [nn.Parameter(minidl.tensor(p, device=device)) for p in params]
    optimizer = make([{"params": [tensors[i] for i in g], **kw} for g, kw in groups] if groups else tensors)
    history = []
    for step_grads in grads:
        for tensor, grad in zip(tensors, step_grads):
            tensor.grad = minidl.tensor(grad, device=device)
        optimizer.step()
        history.append([t.detach().cpu().numpy().copy() for t in tensors])
    return history, tensors, optimizer


def _run_torch(make, params, grads, groups=None):
    tensors = [torch.nn.Parameter(torch.tensor(p)) for p in params]
    optimizer = make([{"params": [tensors[i] for i in g], **kw} for g, kw in groups] if groups else tensors)
    history = []
    for step_grads in grads:
        for tensor, grad in zip(tensors, step_grads):
            tensor.grad = torch.tensor(grad)
        optimizer.step()
        history.append([t.detach().numpy().copy() for t in tensors])
    return history


def _assert_same_history(ours, theirs, rtol, atol):
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for index, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"step {step}, parameter {index}")


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.1, momentum=0.9, weight_decay=0.01),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05, maximize=True),
]
ADAM_CONFIGS = [
    dict(),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05, amsgrad=True),
    dict(lr=0.01, maximize=True),
]


def _cases():
    for config in SGD_CONFIGS:
        yield "SGD", config
    for config in ADAM_CONFIGS:
        yield "Adam", config
        yield "AdamW", config


@needs_torch
@pytest.mark.parametrize("name,config", list(_cases()), ids=lambda v: str(v))
def test_update_rule_matches_pytorch_float64(name, config):
    params, grads = _arrays(np.float64)
    ours, _, _ = _run_minidl(lambda p: getattr(optim, name)(p, **config), params, grads)
    theirs = _run_torch(lambda p: getattr(torch.optim, name)(p, **config), params, grads)
    _assert_same_history(ours, theirs, rtol=1e-12, atol=1e-14)


@needs_torch
@pytest.mark.parametrize("name,config", [("SGD", SGD_CONFIGS[4]), ("Adam", ADAM_CONFIGS[3]), ("AdamW", ADAM_CONFIGS[2])])
def test_float32_stays_float32_and_matches_pytorch(name, config):
    params, grads = _arrays(np.float32)
    ours, tensors, optimizer = _run_minidl(lambda p: getattr(optim, name)(p, **config), params, grads)
    theirs = _run_torch(lambda p: getattr(torch.optim, name)(p, **config), params, grads)
    _assert_same_history(ours, theirs, rtol=1e-5, atol=1e-6)
    assert all(t.dtype == minidl.float32 for t in tensors)
    assert all(v.dtype == minidl.float32 for state in optimizer.state.values() for v in state.values()
               if isinstance(v, minidl.Tensor))


@needs_torch
@pytest.mark.parametrize("name,defaults,groups", [
    ("SGD", dict(lr=0.1, momentum=0.9), [([0], dict(lr=0.01)), ([1, 2], dict(momentum=0.5, nesterov=True))]),
    ("Adam", dict(lr=0.01), [([0, 2], dict(weight_decay=0.1)), ([1], dict(lr=0.1, amsgrad=True))]),
    ("AdamW", dict(lr=0.01), [([2], dict(weight_decay=0.0)), ([0, 1], dict(betas=(0.5, 0.9)))]),
])
def test_param_groups_match_pytorch(name, defaults, groups):
    params, grads = _arrays(np.float64, seed=1)
    ours, _, optimizer = _run_minidl(lambda p: getattr(optim, name)(p, **defaults), params, grads, groups)
    theirs = _run_torch(lambda p: getattr(torch.optim, name)(p, **defaults), params, grads, groups)
    _assert_same_history(ours, theirs, rtol=1e-12, atol=1e-14)
    assert optimizer.param_groups[0]["lr"] == groups[0][1].get("lr", defaults["lr"])


@pytest.mark.parametrize("name,config", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
                                         ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
                                         ("AdamW", dict(lr=0.01))])
def test_optimizer_on_device_matches_cpu(device, name, config):
    params, grads = _arrays(np.float32, seed=4)
    on_cpu, _, _ = _run_minidl(lambda p: getattr(optim, name)(p, **config), params, grads)
    on_device, tensors, optimizer = _run_minidl(lambda p: getattr(optim, name)(p, **config), params, grads,
                                                device=device)
    _assert_same_history(on_device, on_cpu, rtol=1e-6, atol=1e-7)
    assert all(t.device == minidl.device(device) for t in tensors)
    restored = getattr(optim, name)([nn.Parameter(minidl.tensor(p)) for p in params], **config)
    restored.load_state_dict(optimizer.state_dict())  # device state comes back onto the CPU parameters
    assert all(v.device == minidl.device("cpu") for state in restored.state.values() for v in state.values()
               if isinstance(v, minidl.Tensor))


def test_params_without_grad_are_skipped():
    a, b = nn.Parameter(minidl.ones(3)), nn.Parameter(minidl.ones(3))
    optimizer = optim.Adam([a, b], lr=0.1)
    a.grad = minidl.ones(3)
    optimizer.step()
    assert_close(b, np.ones(3, np.float32), rtol=0, atol=0)
    assert b not in optimizer.state and a in optimizer.state
    assert (a.detach().numpy() < 1).all()


def test_zero_grad():
    a = nn.Parameter(minidl.ones(3))
    optimizer = optim.SGD([a], lr=0.1)
    a.grad = minidl.ones(3)
    optimizer.zero_grad(set_to_none=False)
    assert a.grad is not None and not a.grad.numpy().any()
    optimizer.zero_grad()
    assert a.grad is None


def test_closure_is_called_with_grad_enabled():
    a = nn.Parameter(minidl.tensor([2.0]))
    optimizer = optim.SGD([a], lr=0.1)

    def closure():
        optimizer.zero_grad()
        loss = (a * a).sum()
        loss.backward()
        return loss

    with minidl.no_grad():
        loss = optimizer.step(closure)
    assert loss.item() == 4.0
    assert_close(a, np.array([1.6], np.float32))


def test_step_updates_in_place_under_no_grad():
    model = nn.Linear(3, 2)
    weight, array = model.weight, model.weight._array
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(minidl.randn(4, 3)).sum().backward()
    optimizer.step()
    assert model.weight is weight and model.weight._array is array  # same Parameter, same memory
    assert model.weight.grad_fn is None and model.weight.requires_grad


@pytest.mark.parametrize("name,config", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                         ("Adam", dict(lr=0.01, amsgrad=True)), ("AdamW", dict(lr=0.01))])
def test_state_dict_resume_gives_identical_steps(name, config, tmp_path):
    params, grads = _arrays(np.float32, seed=2)
    full, _, _ = _run_minidl(lambda p: getattr(optim, name)(p, **config), params, grads)

    half, tensors, optimizer = _run_minidl(lambda p: getattr(optim, name)(p, **config), params, grads[:3])
    save({"optimizer": optimizer.state_dict(), "params": [t.detach() for t in tensors]}, tmp_path / "ckpt.npz")
    checkpoint = load(tmp_path / "ckpt.npz")
    resumed = [nn.Parameter(t) for t in checkpoint["params"]]
    optimizer = getattr(optim, name)(resumed, lr=123.0)  # hyper-parameters come back from the state_dict
    optimizer.load_state_dict(checkpoint["optimizer"])
    assert optimizer.param_groups[0]["lr"] == config["lr"]
    for step_grads in grads[3:]:
        for tensor, grad in zip(resumed, step_grads):
            tensor.grad = minidl.tensor(grad)
        optimizer.step()
    _assert_same_history([[t.detach().numpy() for t in resumed]], [full[-1]], rtol=0, atol=0)


def test_state_dict_format():
    a, b = nn.Parameter(minidl.ones(2)), nn.Parameter(minidl.ones(3))
    optimizer = optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.5}])
    b.grad = minidl.ones(3)
    optimizer.step()
    state = optimizer.state_dict()
    assert [g["params"] for g in state["param_groups"]] == [[0], [1]]
    assert state["param_groups"][1]["lr"] == 0.5
    assert list(state["state"]) == [1] and state["state"][1]["step"] == 1
    assert set(state["state"][1]) == {"step", "exp_avg", "exp_avg_sq"}


@needs_torch
def test_loads_pytorch_optimizer_state():
    params, grads = _arrays(np.float64, seed=3)
    tensors = [torch.nn.Parameter(torch.tensor(p)) for p in params]
    theirs = torch.optim.Adam(tensors, lr=0.01)
    for step_grads in grads[:3]:
        for t, g in zip(tensors, step_grads):
            t.grad = torch.tensor(g)
        theirs.step()
    converted = theirs.state_dict()
    converted["state"] = {i: {k: v.numpy() for k, v in s.items()} for i, s in converted["state"].items()}
    ours = [nn.Parameter(minidl.tensor(t.detach().numpy())) for t in tensors]
    optimizer = optim.Adam(ours, lr=0.01)
    optimizer.load_state_dict(converted)
    for step_grads in grads[3:]:
        for m, t, g in zip(ours, tensors, step_grads):
            m.grad, t.grad = minidl.tensor(g), torch.tensor(g)
        optimizer.step()
        theirs.step()
    for m, t in zip(ours, tensors):
        assert_close(m, t, rtol=1e-12, atol=1e-14)


def test_load_state_dict_rejects_mismatched_groups():
    a, b = nn.Parameter(minidl.ones(2)), nn.Parameter(minidl.ones(3))
    state = optim.SGD([a, b], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="has 2 parameters, the optimizer.s has 1"):
        optim.SGD([a], lr=0.1).load_state_dict(state)
    with pytest.raises(ValueError, match="parameter groups"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(state)


def test_validation_errors():
    a = nn.Parameter(minidl.ones(2))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam([a], lr=-1)
    with pytest.raises(ValueError, match="beta"):
        optim.AdamW([a], betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="sets"):
        optim.SGD({a}, lr=0.1)
    optimizer = optim.SGD([a], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optimizer.add_param_group({"params": [a]})
    b = nn.Parameter(minidl.ones(1))
    optimizer.add_param_group({"params": b, "lr": 0.5})
    assert optimizer.param_groups[1]["lr"] == 0.5 and optimizer.param_groups[1]["momentum"] == 0


@pytest.mark.parametrize("make,name", [
    (lambda p, v: optim.SGD(p, lr=v), "lr"), (lambda p, v: optim.SGD(p, lr=0.1, momentum=v), "momentum"),
    (lambda p, v: optim.SGD(p, lr=0.1, dampening=v), "dampening"),
    (lambda p, v: optim.SGD(p, lr=0.1, weight_decay=v), "weight_decay"),
    (lambda p, v: optim.Adam(p, lr=v), "lr"), (lambda p, v: optim.Adam(p, eps=v), "eps"),
    (lambda p, v: optim.AdamW(p, lr=v), "lr"), (lambda p, v: optim.AdamW(p, weight_decay=v), "weight_decay"),
    (lambda p, v: optim.SGD([{"params": p, "lr": v}], lr=0.1), "lr"),  # a group's own setting
])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_hyper_parameters_are_refused(make, name, value):
    with pytest.raises(ValueError, match=rf"Invalid {name} value: {value} \({name} must be a finite number\)"):
        make([nn.Parameter(minidl.ones(2))], value)


# ----------------------------------------------------------------------------- schedulers
SCHEDULERS = [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[5, 12, 12, 20], gamma=0.3)),
    ("CosineAnnealingLR", dict(T_max=10, eta_min=0.001)),
    ("CosineAnnealingLR", dict(T_max=7)),
    ("LambdaLR", dict(lr_lambda=lambda epoch: 0.9**epoch)),
]


def _scheduled(lib, name, kwargs):
    p, q = lib.nn.Parameter(lib.zeros(1)), lib.nn.Parameter(lib.zeros(1))
    optimizer = lib.optim.SGD([{"params": [p]}, {"params": [q], "lr": 0.3}], lr=0.1, momentum=0.9)
    return optimizer, getattr(lib.optim.lr_scheduler, name)(optimizer, **kwargs)


@needs_torch
@pytest.mark.parametrize("name,kwargs", SCHEDULERS, ids=lambda v: str(v))
def test_scheduler_matches_pytorch_over_30_steps(name, kwargs):
    ours_opt, ours = _scheduled(minidl, name, kwargs)
    theirs_opt, theirs = _scheduled(torch, name, kwargs)
    assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
    for _ in range(30):
        ours_opt.step()
        theirs_opt.step()
        ours.step()
        theirs.step()
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12, abs=1e-15)
        assert [g["lr"] for g in ours_opt.param_groups] == ours.get_last_lr()


def test_scheduler_closed_forms():
    optimizer, scheduler = _scheduled(minidl, "StepLR", dict(step_size=3, gamma=0.1))
    for epoch in range(1, 10):
        scheduler.step()
        assert scheduler.get_last_lr()[0] == pytest.approx(0.1 * 0.1 ** (epoch // 3), rel=1e-12)
    optimizer, scheduler = _scheduled(minidl, "CosineAnnealingLR", dict(T_max=8, eta_min=0.01))
    for epoch in range(1, 9):
        scheduler.step()
        expected = 0.01 + (0.3 - 0.01) * (1 + math.cos(math.pi * epoch / 8)) / 2
        assert scheduler.get_last_lr()[1] == pytest.approx(expected, rel=1e-12)
    assert scheduler.get_last_lr()[0] == pytest.approx(0.01)


@pytest.mark.parametrize("name,kwargs", SCHEDULERS, ids=lambda v: str(v))
def test_scheduler_state_dict_resume(name, kwargs, tmp_path):
    optimizer, scheduler = _scheduled(minidl, name, kwargs)
    for _ in range(9):
        scheduler.step()
    save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp_path / "s.npz")
    expected = []
    for _ in range(15):
        scheduler.step()
        expected.append(scheduler.get_last_lr())

    checkpoint = load(tmp_path / "s.npz")
    optimizer, scheduler = _scheduled(minidl, name, kwargs)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    for lrs in expected:
        scheduler.step()
        assert scheduler.get_last_lr() == pytest.approx(lrs, rel=1e-12)
