"""Layer modules: forward/backward parity with PyTorch, input checks, BatchNorm's running statistics,
dropout, and a short training run that must give PyTorch's losses step for step."""
import numpy as np
import pytest

import minidl
import minidl.nn as nn
import minidl.optim
from tests.helpers import assert_close, needs_torch, torch

TOLERANCES = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-5, atol=2e-5)}


def _rng():
    return np.random.default_rng(0)


def _float(shape):
    return _rng().standard_normal(shape)


def _labels(shape, classes, ignore=None):
    labels = _rng().integers(0, classes, size=shape)
    if ignore is not None:
        labels[..., 0] = ignore
    return labels.astype(np.int64)


def _pool_unpool(lib):
    """MaxPool2d(return_indices) feeding MaxUnpool2d, on an odd size that needs output_size."""

    class PoolUnpool(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = lib.nn.MaxPool2d(2, return_indices=True)
            self.unpool = lib.nn.MaxUnpool2d(2)

        def forward(self, x):
            pooled, indices = self.pool(x)
            return self.unpool(pooled, indices, output_size=tuple(x.shape))

    return PoolUnpool()


def _transpose_with_size(lib):
    class Up(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.up = lib.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2)

        def forward(self, x):
            return self.up(x, output_size=(2, 6, 12, 11))  # the two valid sizes are 11 and 12

    return Up()


# (id, builder given the library (minidl or torch), input arrays, train mode)
CASES = [
    ("conv", lambda lib: lib.nn.Conv2d(3, 4, 3, stride=2, padding=1), [_float((2, 3, 9, 9))], True),
    ("conv_grouped_dilated_same", lambda lib: lib.nn.Conv2d(4, 6, 3, padding="same", dilation=2, groups=2, bias=False),
     [_float((2, 4, 7, 7))], True),
    ("conv_transpose", lambda lib: lib.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
     [_float((2, 4, 5, 5))], True),
    ("conv_transpose_output_size", lambda lib: _transpose_with_size(lib), [_float((2, 4, 6, 6))], True),
    ("maxpool", lambda lib: lib.nn.MaxPool2d(2), [_float((2, 3, 8, 8))], True),
    ("maxpool_padded_ceil_dilated", lambda lib: lib.nn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True),
     [_float((2, 3, 9, 9))], True),
    ("maxpool_unpool", lambda lib: _pool_unpool(lib), [_float((2, 3, 7, 7))], True),
    ("avgpool", lambda lib: lib.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), [_float((2, 3, 8, 8))], True),
    ("adaptive_avgpool", lambda lib: lib.nn.AdaptiveAvgPool2d((2, 3)), [_float((2, 3, 7, 8))], True),
    ("upsample_nearest", lambda lib: lib.nn.Upsample(scale_factor=2), [_float((2, 3, 4, 5))], True),
    ("upsample_bilinear", lambda lib: lib.nn.Upsample(size=(7, 5), mode="bilinear"), [_float((2, 3, 4, 3))], True),
    ("upsample_bilinear_corners", lambda lib: lib.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
     [_float((2, 3, 4, 3))], True),
    ("batchnorm2d_train", lambda lib: lib.nn.BatchNorm2d(3), [_float((4, 3, 5, 5))], True),
    ("batchnorm2d_eval", lambda lib: lib.nn.BatchNorm2d(3), [_float((4, 3, 5, 5))], False),
    ("batchnorm2d_no_affine", lambda lib: lib.nn.BatchNorm2d(3, affine=False, momentum=None), [_float((4, 3, 5, 5))], True),
    ("batchnorm2d_no_stats_eval", lambda lib: lib.nn.BatchNorm2d(3, track_running_stats=False), [_float((4, 3, 2, 2))], False),
    ("batchnorm1d_2d", lambda lib: lib.nn.BatchNorm1d(5), [_float((8, 5))], True),
    ("batchnorm1d_3d", lambda lib: lib.nn.BatchNorm1d(5, momentum=0.3), [_float((4, 5, 6))], True),
    ("dropout_eval", lambda lib: lib.nn.Dropout(0.5), [_float((4, 5))], False),
    ("dropout2d_eval", lambda lib: lib.nn.Dropout2d(0.5), [_float((2, 3, 4, 4))], False),
    ("relu", lambda lib: lib.nn.ReLU(), [_float((3, 4, 5))], True),
    ("leaky_relu", lambda lib: lib.nn.LeakyReLU(0.2), [_float((3, 4, 5))], True),
    ("sigmoid", lambda lib: lib.nn.Sigmoid(), [_float((3, 4))], True),
    ("tanh", lambda lib: lib.nn.Tanh(), [_float((3, 4))], True),
    ("softmax", lambda lib: lib.nn.Softmax(dim=1), [_float((3, 4, 2))], True),
    ("log_softmax", lambda lib: lib.nn.LogSoftmax(dim=-1), [_float((3, 4))], True),
    ("linear", lambda lib: lib.nn.Linear(5, 3), [_float((2, 4, 5))], True),
    ("linear_no_bias", lambda lib: lib.nn.Linear(5, 3, bias=False), [_float((4, 5))], True),
    ("flatten", lambda lib: lib.nn.Flatten(), [_float((2, 3, 4, 5))], True),
    ("identity", lambda lib: lib.nn.Identity(7, any="thing"), [_float((2, 3))], True),
    ("cross_entropy_segmentation", lambda lib: lib.nn.CrossEntropyLoss(ignore_index=3),
     [_float((2, 3, 4, 5)), _labels((2, 4, 5), 3, ignore=3)], True),
    ("cross_entropy_weighted_sum", lambda lib: lib.nn.CrossEntropyLoss(weight=lib.tensor([0.2, 1.0, 2.0, 0.5]),
                                                                reduction="sum"),
     [_float((6, 4)), _labels((6,), 4)], True),
    ("cross_entropy_none_smoothing", lambda lib: lib.nn.CrossEntropyLoss(reduction="none", label_smoothing=0.1),
     [_float((6, 4)), _labels((6,), 4)], True),
    ("mse", lambda lib: lib.nn.MSELoss(), [_float((3, 4)), _float((3, 4)) * 0.5], True),
    ("mse_sum", lambda lib: lib.nn.MSELoss(reduction="sum"), [_float((3, 4)), _float((3, 4)) + 1], True),
]


def _wrap(lib, array, dtype):
    """A leaf tensor for float inputs (requiring grad), an int64 tensor for labels."""
    if array.dtype.kind == "f":
        return lib.tensor(array.astype(dtype), requires_grad=True)
    return lib.tensor(array)


@needs_torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,build,inputs,train", CASES, ids=[case[0] for case in CASES])
def test_layer_matches_pytorch(name, build, inputs, train, dtype):
    torch.manual_seed(0)
    theirs = build(torch)
    ours = build(minidl)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})  # identical weights
    if name.endswith("eval") and "running_mean" in dict(theirs.named_buffers()):  # non-trivial running stats
        with torch.no_grad():
            theirs.running_mean.uniform_(-1, 1)
            theirs.running_var.uniform_(0.5, 2)
        ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    theirs.to(getattr(torch, dtype)).train(train)
    ours.to(getattr(minidl, dtype)).train(train)

    our_inputs = [_wrap(minidl, array, dtype) for array in inputs]
    their_inputs = [_wrap(torch, array, dtype) for array in inputs]
    our_out, their_out = ours(*our_inputs), theirs(*their_inputs)
    tol = TOLERANCES[dtype]
    assert our_out.dtype == getattr(minidl, dtype) and tuple(our_out.shape) == tuple(their_out.shape)
    assert_close(our_out, their_out, **tol)

    grad_out = _rng().standard_normal(tuple(their_out.shape)).astype(dtype)
    our_out.backward(minidl.tensor(grad_out))
    their_out.backward(torch.tensor(grad_out))
    for ours_in, theirs_in in zip(our_inputs, their_inputs):
        if theirs_in.requires_grad:
            assert_close(ours_in.grad, theirs_in.grad, **tol)
    their_params = dict(theirs.named_parameters())
    for key, param in ours.named_parameters():
        assert_close(param.grad, their_params[key].grad, **tol)
    their_state = theirs.state_dict()
    for key, value in ours.state_dict().items():  # running statistics, num_batches_tracked
        assert_close(value, their_state[key], **tol)


@needs_torch
def test_batchnorm_cumulative_average_over_several_batches():
    theirs, ours = torch.nn.BatchNorm2d(3, momentum=None), nn.BatchNorm2d(3, momentum=None).double()
    theirs.double()
    for step in range(4):
        x = _rng().standard_normal((2, 3, 4, 4)) + step
        theirs(torch.tensor(x))
        ours(minidl.tensor(x))
    for key, value in ours.state_dict().items():
        assert_close(value, theirs.state_dict()[key], rtol=1e-12, atol=1e-14)
    assert ours.num_batches_tracked.item() == 4 and ours.num_batches_tracked.dtype == minidl.int64


def test_batchnorm_counts_only_in_training():
    bn = nn.BatchNorm2d(2)
    x = minidl.randn(3, 2, 4, 4)
    bn(x)
    bn(x)
    assert bn.num_batches_tracked.item() == 2
    mean_after_training = bn.running_mean.numpy().copy()
    bn.eval()(x)
    assert bn.num_batches_tracked.item() == 2
    np.testing.assert_array_equal(bn.running_mean.numpy(), mean_after_training)


def test_dropout_train_statistics_and_eval_identity():
    x = minidl.ones(200, 500)
    dropout = nn.Dropout(0.3)
    out = dropout(x).numpy()
    assert set(np.unique(out)) <= {0.0, np.float32(1 / 0.7)}
    assert abs((out == 0).mean() - 0.3) < 0.01  # 100k samples: 0.01 is ~7 standard errors
    assert dropout.eval()(x) is x

    channels = nn.Dropout2d(0.5)(minidl.ones(50, 40, 3, 3)).numpy()
    per_channel = channels.reshape(50, 40, 9)
    assert (per_channel.min(axis=2) == per_channel.max(axis=2)).all()  # whole channels kept or dropped
    assert abs((per_channel[:, :, 0] == 0).mean() - 0.5) < 0.05
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_softmax_implicit_dim_warns():
    with pytest.warns(UserWarning, match="Implicit dimension"):
        out = nn.Softmax()(minidl.randn(2, 3))
    assert_close(out.sum(dim=1), np.ones(2, np.float32), rtol=1e-6)


# ----------------------------------------------------------------------------- input checks
@pytest.mark.parametrize("layer,shape,fragments", [
    (lambda: nn.Conv2d(3, 8, 3), (2, 4, 8, 8), ["Conv2d(3, 8, kernel_size=(3, 3)", "(N, 3, H, W)", "(2, 4, 8, 8)"]),
    (lambda: nn.Conv2d(3, 8, 3), (3, 8, 8), ["Conv2d(3, 8", "4-D", "(3, 8, 8)"]),
    (lambda: nn.ConvTranspose2d(8, 4, 2, stride=2), (1, 4, 5, 5), ["ConvTranspose2d(8, 4", "(N, 8, H, W)", "(1, 4, 5, 5)"]),
    (lambda: nn.BatchNorm2d(16), (2, 8, 5, 5), ["BatchNorm2d(16", "(N, 16, H, W)", "(2, 8, 5, 5)"]),
    (lambda: nn.BatchNorm2d(16), (2, 16), ["BatchNorm2d(16", "4-D", "(2, 16)"]),
    (lambda: nn.BatchNorm1d(4), (2, 4, 3, 3), ["BatchNorm1d(4", "2-D or 3-D", "(2, 4, 3, 3)"]),
    (lambda: nn.Linear(5, 3), (2, 4), ["Linear(in_features=5, out_features=3", "(*, 5)", "(2, 4)"]),
    (lambda: nn.MaxPool2d(2), (3, 8, 8), ["MaxPool2d(kernel_size=2", "(N, C, H, W)", "(3, 8, 8)"]),
    (lambda: nn.Upsample(scale_factor=2), (3, 8), ["Upsample(scale_factor=2.0", "(3, 8)"]),
])
def test_wrong_input_shape_names_layer_and_shapes(layer, shape, fragments):
    module = layer()
    with pytest.raises(ValueError) as info:
        module(minidl.zeros(*shape))
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


def test_other_argument_errors():
    up = nn.ConvTranspose2d(2, 2, 3, stride=2)
    with pytest.raises(ValueError, match=r"ConvTranspose2d.*valid sizes.*range from 9 to 10"):
        up(minidl.zeros(1, 2, 4, 4), output_size=(12, 12))
    pool, unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
    out, indices = pool(minidl.randn(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"MaxUnpool2d.*indices"):
        unpool(out, indices[:, :1])
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 8, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 8, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="uneven"):
        nn.Conv2d(3, 8, 2, padding="same")
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(TypeError, match="minidl Tensor"):
        nn.Linear(2, 2)(np.zeros((1, 2)))


def test_cross_entropy_weight_is_a_buffer_that_moves():
    loss = nn.CrossEntropyLoss(weight=minidl.tensor([1.0, 2.0]))
    assert list(loss.state_dict()) == ["weight"]
    assert loss.double().weight.dtype == minidl.float64


def test_small_net_step_on_device_matches_cpu(device):
    minidl.manual_seed(0)
    reference = _small_net(minidl)
    model = _small_net(minidl).to(device)
    model.load_state_dict(reference.state_dict())
    images, labels = minidl.randn(2, 3, 8, 8), minidl.randint(0, 4, (2, 8, 8))
    losses = []
    for net, dev in ((reference, "cpu"), (model, device)):
        # SGD, not Adam: the conv biases before BatchNorm have a gradient of 0 up to rounding
        # (1e-9), which Adam's division by sqrt(v) would blow up into steps of +-lr
        optimizer = minidl.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        loss = nn.CrossEntropyLoss()(net(images.to(dev)), labels.to(dev))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for key, value in model.state_dict().items():
        assert value.device == minidl.device(device)
        assert_close(value.cpu(), reference.state_dict()[key], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- a short training run
def _small_net(lib):
    n = lib.nn
    return n.Sequential(
        n.Conv2d(3, 8, 3, padding=1), n.BatchNorm2d(8), n.ReLU(), n.MaxPool2d(2),
        n.Conv2d(8, 8, 3, padding=1), n.BatchNorm2d(8), n.ReLU(), n.Dropout2d(0.0),
        n.ConvTranspose2d(8, 8, 2, stride=2), n.LeakyReLU(0.1), n.Conv2d(8, 4, 1),
    )


@needs_torch
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-9), ("float32", 2e-4)])
def test_training_run_matches_pytorch(dtype, rtol):
    """20 SGD-momentum steps of a small segmentation net on random data: same losses as PyTorch."""
    torch.manual_seed(0)
    theirs = _small_net(torch).to(getattr(torch, dtype))
    ours = _small_net(minidl).to(getattr(minidl, dtype))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    their_opt = torch.optim.SGD(theirs.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-4)
    our_opt = minidl.optim.SGD(ours.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-4)
    their_loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    our_loss_fn = nn.CrossEntropyLoss(ignore_index=255)

    rng = np.random.default_rng(1)
    images = rng.standard_normal((4, 3, 8, 8)).astype(dtype)
    labels = rng.integers(0, 4, size=(4, 8, 8))
    labels[:, 0, :] = 255  # a void border
    our_losses, their_losses = [], []
    for _ in range(20):
        for opt, model, loss_fn, lib, losses in ((our_opt, ours, our_loss_fn, minidl, our_losses),
                                                 (their_opt, theirs, their_loss_fn, torch, their_losses)):
            opt.zero_grad()
            loss = loss_fn(model(lib.tensor(images)), lib.tensor(labels))
            loss.backward()
            opt.step()
            losses.append(loss.item())
    np.testing.assert_allclose(our_losses, their_losses, rtol=rtol)
    assert our_losses[-1] < 0.9 * our_losses[0]  # it learned something
    their_state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        assert_close(value, their_state[key], rtol=rtol * 10, atol=rtol * 10)
    assert all(p.dtype == getattr(minidl, dtype) for p in ours.parameters())
