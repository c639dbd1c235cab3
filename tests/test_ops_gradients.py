"""Every core op's gradient, checked against finite differences on hypothesis-drawn inputs."""
import pytest
from hypothesis import given

import minidl
from tests.op_table import OPS


def _check(op, args, device):
    tensors = [a.detach().to(device).requires_grad_() for a in args if isinstance(a, minidl.Tensor)]
    others = [a for a in args if not isinstance(a, minidl.Tensor)]
    assert minidl.gradcheck(lambda *ts: op(minidl, *ts, *others), tensors)


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradient_matches_finite_differences(name, device):
    """On every device: the cuda cases run where CuPy and a GPU are present, and skip elsewhere."""
    strategy, op = OPS[name]

    @given(strategy)
    def check(args):
        _check(op, args, device)

    check()


def test_gradcheck_reports_a_wrong_gradient():
    class WrongExp(minidl.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.__array_namespace__().exp(x) if hasattr(x, "__array_namespace__") else __import__("numpy").exp(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * x  # should be grad * exp(x)

    x = minidl.randn(3, 2, dtype=minidl.float64, requires_grad=True)
    with pytest.raises(minidl.GradcheckError, match=r"input 0 of shape \(3, 2\) at index .*analytic .* numerical"):
        minidl.gradcheck(WrongExp.apply, [x])


def test_gradcheck_rejects_float32_inputs():
    x = minidl.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        minidl.gradcheck(minidl.exp, [x])
