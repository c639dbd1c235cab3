"""nn.Module mechanics: registration, naming, state_dict, modes, dtype/device moves, repr, hooks, containers."""
from collections import OrderedDict

import numpy as np
import pytest

import minidl
import minidl.nn as nn
import minidl.optim
from tests.helpers import assert_close, needs_torch, torch


class Block(nn.Module):
    """A module with its own parameter, a buffer (persistent and not) and children."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(minidl.ones(3))
        self.fc = nn.Linear(4, 3)
        self.register_buffer("steps", minidl.zeros((), dtype=minidl.int64))
        self.register_buffer("cache", minidl.zeros(3), persistent=False)
        self.note = minidl.zeros(2)  # a plain tensor attribute: not registered

    def forward(self, x):
        return self.fc(x) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x):
        return self.bn(self.head(self.block(x)))


EXPECTED_PARAMS = ["block.scale", "block.fc.weight", "block.fc.bias", "head.0.weight", "head.0.bias",
                   "head.2.weight", "head.2.bias", "bn.weight", "bn.bias"]
EXPECTED_STATE = ["block.scale", "block.steps", "block.fc.weight", "block.fc.bias", "head.0.weight", "head.0.bias",
                  "head.2.weight", "head.2.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                  "bn.num_batches_tracked"]


# ----------------------------------------------------------------------------- registration and naming
def test_setattr_registers_parameters_buffers_and_children():
    block = Block()
    assert list(block._parameters) == ["scale"]
    assert list(block._modules) == ["fc"]
    assert list(block._buffers) == ["steps", "cache"]
    assert "note" not in block._buffers and "note" not in dict(block.named_parameters())
    assert isinstance(block.fc.weight, nn.Parameter) and block.fc.weight.requires_grad
    assert [name for name, _ in block.named_children()] == ["fc"]


def test_named_parameters_order_and_names():
    net = Net()
    assert [name for name, _ in net.named_parameters()] == EXPECTED_PARAMS
    assert len(list(net.parameters())) == len(EXPECTED_PARAMS)
    assert [name for name, _ in net.named_buffers()] == ["block.steps", "block.cache", "bn.running_mean",
                                                         "bn.running_var", "bn.num_batches_tracked"]
    assert [name for name, _ in net.named_modules()] == ["", "block", "block.fc", "head", "head.0", "head.1",
                                                         "head.2", "bn"]
    assert [name for name, _ in net.named_parameters(recurse=False)] == []
    assert net.get_submodule("head.2") is net.head[2]


@needs_torch
def test_parameter_names_match_pytorch():
    class TorchBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3))
            self.fc = torch.nn.Linear(4, 3)
            self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
            self.register_buffer("cache", torch.zeros(3), persistent=False)

    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = TorchBlock()
            self.head = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
            self.bn = torch.nn.BatchNorm1d(2)

    ours, theirs = Net(), TorchNet()
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]


def test_shared_parameter_is_listed_once():
    a = nn.Linear(3, 3)
    seq = nn.Sequential(a, nn.ReLU(), a)
    assert [name for name, _ in seq.named_parameters()] == ["0.weight", "0.bias"]


def test_assignment_errors():
    block = Block()
    with pytest.raises(TypeError, match="parameter 'scale'"):
        block.scale = minidl.ones(3)  # a plain Tensor can't replace a Parameter
    with pytest.raises(TypeError, match="child module 'fc'"):
        block.fc = 3
    with pytest.raises(TypeError, match="buffer 'steps'"):
        block.steps = 3.0
    block.scale = None  # an optional parameter may be removed
    assert "scale" not in dict(block.named_parameters())

    class Forgot(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(minidl.ones(1))  # before super().__init__()

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Forgot()
    with pytest.raises(KeyError, match="contain"):
        block.register_buffer("a.b", minidl.zeros(1))
    with pytest.raises(KeyError, match="already exists"):
        block.register_buffer("note", minidl.zeros(1))


def test_attribute_lookup_and_deletion():
    block = Block()
    with pytest.raises(AttributeError, match="'Block' object has no attribute 'nope'"):
        block.nope
    del block.fc
    assert "fc" not in block._modules
    block.fc = nn.Parameter(minidl.zeros(1))  # a name can change kind
    assert [name for name, _ in block.named_parameters()] == ["scale", "fc"]


def test_forward_missing_raises():
    class NoForward(nn.Module):
        pass

    with pytest.raises(NotImplementedError, match="NoForward"):
        NoForward()(minidl.zeros(1))


# ----------------------------------------------------------------------------- state_dict
def test_state_dict_keys_values_and_round_trip():
    net = Net()
    state = net.state_dict()
    assert isinstance(state, OrderedDict) and list(state) == EXPECTED_STATE
    assert all(not value.requires_grad for value in state.values())
    assert np.shares_memory(state["block.fc.weight"].numpy(), net.block.fc.weight._array)  # detached views
    assert state["bn.num_batches_tracked"].dtype == minidl.int64

    other = Net()
    weight_before = other.block.fc.weight
    result = other.load_state_dict(net.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert other.block.fc.weight is weight_before  # loaded in place
    for key, value in other.state_dict().items():
        assert_close(value, state[key], rtol=0, atol=0)
    x = minidl.randn(6, 4)
    assert_close(other.eval()(x), net.eval()(x), rtol=0, atol=0)


def test_load_state_dict_accepts_numpy_arrays_and_casts_dtype():
    net = Block()
    arrays = {key: np.full(value.shape, 2.5, dtype=np.float64) for key, value in net.state_dict().items()}
    arrays["steps"] = np.array(7)
    net.load_state_dict(arrays)
    assert net.fc.weight.dtype == minidl.float32
    assert_close(net.fc.weight, np.full((3, 4), 2.5, dtype=np.float32))
    assert net.steps.item() == 7 and net.steps.dtype == minidl.int64


def test_strict_load_names_missing_and_unexpected_keys():
    net = Net()
    state = net.state_dict()
    del state["head.2.bias"]
    state["head.9.weight"] = minidl.zeros(1)
    with pytest.raises(RuntimeError) as info:
        Net().load_state_dict(state)
    message = str(info.value)
    assert "Error(s) in loading state_dict for Net" in message
    assert 'Missing key(s) in state_dict: "head.2.bias"' in message
    assert 'Unexpected key(s) in state_dict: "head.9.weight"' in message

    result = Net().load_state_dict(state, strict=False)
    assert result.missing_keys == ["head.2.bias"] and result.unexpected_keys == ["head.9.weight"]


def test_load_shape_mismatch_names_key_and_both_shapes_and_leaves_model_untouched():
    net = Net()
    state = net.state_dict()
    state["head.0.weight"] = minidl.zeros(5, 4)
    state["block.scale"] = minidl.full((3,), 9.0)
    target = Net()
    before = target.block.scale.detach().numpy().copy()
    for strict in (True, False):  # a shape mismatch is an error even when not strict
        with pytest.raises(RuntimeError) as info:
            target.load_state_dict(state, strict=strict)
        message = str(info.value)
        assert "size mismatch for head.0.weight" in message
        assert "(5, 4)" in message and "(5, 3)" in message
    np.testing.assert_array_equal(target.block.scale.detach().numpy(), before)  # nothing was copied


def test_load_state_dict_rejects_non_tensor_values():
    with pytest.raises(TypeError, match="fc.weight"):
        Block().load_state_dict({**Block().state_dict(), "fc.weight": "oops"})


# ----------------------------------------------------------------------------- modes, grads, dtypes, devices
def test_train_eval_propagate():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.head.train()
    assert net.head[1].training and not net.bn.training
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad_and_requires_grad():
    net = Block()
    net(minidl.randn(2, 4)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_to_dtype_keeps_parameter_identity_and_optimizer_works():
    net = Net()
    params = list(net.parameters())
    optimizer = minidl.optim.SGD(net.parameters(), lr=0.1)
    (net(minidl.randn(4, 4)) * minidl.randn(4, 2)).sum().backward()
    assert net.double() is net
    assert all(a is b for a, b in zip(net.parameters(), params))
    assert all(p.dtype == minidl.float64 and p.grad.dtype == minidl.float64 for p in net.parameters())
    assert net.bn.running_mean.dtype == minidl.float64
    assert net.bn.num_batches_tracked.dtype == minidl.int64  # integer buffers keep their dtype
    before = net.block.fc.weight.detach().numpy().copy()
    optimizer.step()  # built before .double(): still updates the model's parameters
    assert not np.allclose(net.block.fc.weight.detach().numpy(), before)
    assert net.block.fc.weight.dtype == minidl.float64
    out = net(minidl.randn(4, 4, dtype=minidl.float64))
    assert out.dtype == minidl.float64
    assert net.float().block.fc.weight.dtype == minidl.float32
    with pytest.raises(TypeError, match="floating point"):
        net.to(minidl.int64)


def test_to_device(device):
    reference = Net().eval()
    net = Net().to(device)
    assert all(p.device == minidl.device(device) for p in net.parameters())
    assert all(b.device == minidl.device(device) for b in net.buffers())
    net.load_state_dict(reference.state_dict())  # CPU values are copied onto the model's device
    x = minidl.randn(2, 4)
    out = net.eval()(x.to(device))
    assert out.device == minidl.device(device)
    assert_close(out.cpu(), reference(x), rtol=1e-6, atol=1e-6)
    assert net.cpu().block.fc.weight.device == minidl.device("cpu")


def test_apply_visits_children_first():
    seen = []
    Net().apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Block", "Linear", "ReLU", "Linear", "Sequential", "BatchNorm1d", "Net"]


# ----------------------------------------------------------------------------- repr
def test_repr_tree():
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 8, 3, padding=1, bias=False),
                                    body=nn.Sequential(nn.ReLU(inplace=True), nn.Linear(8, 2))))
    assert repr(net) == (
        "Sequential(\n"
        "  (conv): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)\n"
        "  (body): Sequential(\n"
        "    (0): ReLU(inplace=True)\n"
        "    (1): Linear(in_features=8, out_features=2, bias=True)\n"
        "  )\n"
        ")"
    )

    class WithExtra(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Identity()

        def extra_repr(self):
            return "gain=2"

    assert repr(WithExtra()) == "WithExtra(\n  gain=2\n  (fc): Identity()\n)"


@needs_torch
def test_repr_matches_pytorch():
    def build(lib):
        n = lib.nn
        return n.Sequential(
            n.Conv2d(3, 8, 3, stride=2, padding=1, dilation=2, groups=1), n.BatchNorm2d(8, momentum=None),
            n.ReLU(), n.LeakyReLU(0.2), n.MaxPool2d(2, return_indices=False), n.AvgPool2d(3, 1, 1),
            n.AdaptiveAvgPool2d((1, 1)), n.MaxUnpool2d(2), n.Upsample(scale_factor=2, mode="bilinear"),
            n.ConvTranspose2d(8, 4, 4, stride=2, padding=1, output_padding=1, groups=2, bias=False),
            n.Dropout(0.1), n.Dropout2d(), n.Flatten(), n.Linear(4, 2, bias=False), n.Identity(), n.Sigmoid(),
            n.Tanh(), n.Softmax(dim=1), n.LogSoftmax(dim=1), n.CrossEntropyLoss(ignore_index=3), n.MSELoss(),
            n.BatchNorm1d(4, affine=False), n.ModuleList([n.ReLU(), n.Tanh()]), n.Conv2d(2, 2, 3, padding="same"),
        )

    assert repr(build(minidl)) == repr(build(torch))


# ----------------------------------------------------------------------------- hooks
def test_forward_hooks_see_inputs_and_outputs_and_are_removable():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    calls = []
    handle = net[0].register_forward_hook(lambda m, inputs, output: calls.append((m, inputs[0].shape, output.shape)))
    x = minidl.randn(2, 4)
    net(x)
    assert calls == [(net[0], (2, 4), (2, 3))]
    handle.remove()
    net(x)
    assert len(calls) == 1

    with net.register_forward_hook(lambda m, inputs, output: output * 0):  # a hook may replace the output
        assert not net(x).detach().numpy().any()
    assert net(x).detach().numpy().any()

    net.register_forward_pre_hook(lambda m, inputs: (inputs[0] * 0,))  # and a pre-hook the input
    assert_close(net(x), net(minidl.zeros(2, 4)))


def test_hook_collects_every_layer_shape():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    shapes = []
    handles = [m.register_forward_hook(lambda m, i, o: shapes.append((type(m).__name__, o.shape)))
               for m in net.modules() if m is not net]
    net(minidl.randn(5, 4))
    for h in handles:
        h.remove()
    assert shapes == [("Linear", (5, 8)), ("ReLU", (5, 8)), ("Linear", (5, 2))]


# ----------------------------------------------------------------------------- containers
def test_sequential_container_protocol():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b)
    assert len(seq) == 2 and seq[0] is a and seq[-1] is b and list(seq) == [a, b]
    seq.append(c)
    assert seq[2] is c and [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    head = seq[1:]
    assert isinstance(head, nn.Sequential) and list(head) == [b, c]
    x = minidl.randn(4, 2)
    assert_close(seq(x), c(b(a(x))))
    del seq[1]
    assert list(seq._modules) == ["0", "1"] and seq[1] is c
    with pytest.raises(IndexError):
        seq[5]


def test_module_list_and_dict():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and len(list(layers.parameters())) == 6
    layers.append(nn.ReLU())
    assert isinstance(layers[-1], nn.ReLU) and [n for n, _ in layers.named_children()][-1] == "3"
    layers.insert(0, nn.Tanh())
    assert isinstance(layers[0], nn.Tanh) and isinstance(layers[4], nn.ReLU)
    heads = nn.ModuleDict({"seg": nn.Linear(2, 3), "cls": nn.Linear(2, 1)})
    assert list(heads) == ["seg", "cls"] and "seg" in heads
    assert [n for n, _ in heads.named_parameters()] == ["seg.weight", "seg.bias", "cls.weight", "cls.bias"]


def test_deepcopy_gives_an_independent_module():
    import copy

    net = Net()
    clone = copy.deepcopy(net)
    assert clone.block.fc.weight is not net.block.fc.weight
    assert isinstance(clone.block.fc.weight, nn.Parameter) and clone.block.fc.weight.requires_grad
    with minidl.no_grad():
        clone.block.fc.weight.fill_(0)
    assert net.block.fc.weight.detach().numpy().any()
    assert [n for n, _ in clone.named_parameters()] == EXPECTED_PARAMS
