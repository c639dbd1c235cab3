"""Forward values and gradients of every core op against PyTorch, in float64."""
import numpy as np
import pytest
from hypothesis import given

import minidl
from tests.helpers import assert_close, needs_torch, to_numpy, torch
from tests.op_table import OPS

pytestmark = needs_torch


def _run(library, op, args, grad_seed):
    """Run ``op`` in ``library`` on copies of ``args``; return the output and each input's gradient."""
    inputs = []
    for a in args:
        if isinstance(a, minidl.Tensor):
            value = a.detach().numpy().copy()
            inputs.append(library.tensor(value, dtype=library.float64, requires_grad=True))
        else:
            inputs.append(a)
    out = op(library, *inputs)
    weights = np.random.default_rng(grad_seed).standard_normal(tuple(out.shape))
    (out * library.tensor(weights, dtype=library.float64)).sum().backward()
    grads = [to_numpy(t.grad) if t.grad is not None else None for t in inputs if hasattr(t, "grad")]
    return to_numpy(out), grads


@pytest.mark.parametrize("name", sorted(OPS))
def test_forward_and_gradient_match_pytorch(name):
    strategy, op = OPS[name]

    @given(strategy)
    def check(args):
        ours, our_grads = _run(minidl, op, args, 1)
        theirs, their_grads = _run(torch, op, args, 1)
        assert ours.shape == theirs.shape
        assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
        for mine, reference in zip(our_grads, their_grads):
            if reference is None:
                assert mine is None or not np.any(mine)
            else:
                assert_close(mine, reference, rtol=1e-9, atol=1e-12)

    check()


def test_max_dim_indices_match_pytorch():
    x = np.random.default_rng(3).standard_normal((4, 5, 6))
    for dim in (0, 1, -1):
        values, indices = minidl.max(minidl.tensor(x), dim)
        t_values, t_indices = torch.max(torch.tensor(x), dim)
        assert_close(values, t_values)
        np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())
        assert indices.dtype == minidl.int64
    np.testing.assert_array_equal(minidl.tensor(x).argmax(1).numpy(), torch.tensor(x).argmax(1).numpy())
    assert minidl.tensor(x).argmax().item() == torch.tensor(x).argmax().item()
