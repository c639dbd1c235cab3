"""The worked example examples/custom_op.py: its own tests run here, and each broken backward prints what
the guide's table says it prints."""
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from tests.helpers import needs_torch, torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import custom_op  # noqa: E402
from custom_op import (  # noqa: E402,F401  (pytest collects the example's own tests from here)
    test_silu_gradient,
    test_silu_gradient_at_drawn_inputs,
    test_silu_values,
    test_the_pointwise_shorthand_is_the_same_op,
)

_MISMATCH = (
    r"GradcheckError: gradcheck failed for input 0 of shape \(3, 4\) at index \(0, 0\): analytic {projected}, "
    r"numerical 0\.116636\d+ \(12 of 12 elements differ; atol=1e-05, rtol=0\.001\)\n"
    r"  Both are d sum\(v \* output\) / d inputs\[0\]\[0, 0\], where v is a fixed random array shaped like the "
    r"output \(seed=0\): one backward checks the whole Jacobian, weighted by v\.\n"
    r"  The Jacobian entry that differs most, d output\[0, 0\] / d inputs\[0\]\[0, 0\]: "
    r"analytic {entry}, numerical 0\.92767\d+\.\n"
    r"  \|analytic - numerical\| = \S+ > atol \+ rtol \* \|numerical\| = 0\.000127\.$"
)
_UNFIT = "Function SiLUBackward returned an invalid gradient at index 0 - {}"

# name: (what backward() gives, what gradcheck gives), as regular expressions matched against the whole text
PRINTS = {
    "dropped term": (r"no error; x\.grad: \(3, 4\) float64",
                     _MISMATCH.format(projected=r"0\.0919161\d+", entry=r"0\.7310585\d+")),  # s(1) for silu'(1)
    "wrong sign": (r"no error; x\.grad: \(3, 4\) float64",
                   _MISMATCH.format(projected=r"0\.0671960\d+", entry=r"0\.5344466\d+")),
    "wrong shape": ("InvalidGradientError: " + re.escape(_UNFIT.format("got [4] but expected shape compatible with [3, 4]")),
                    r"GradcheckError: gradcheck failed: a backward returned a gradient that does not fit its input\. "
                    + re.escape(_UNFIT.format("got [4] but expected shape compatible with [3, 4]"))),
    "None": (r"no error; x\.grad is None",
             r"GradcheckError: gradcheck failed for input 0 of shape \(3, 4\): it received no gradient \(a backward "
             r"returned None for it, or no recorded op connects it to the output\), but its numerical gradient is not "
             r"zero: d sum\(v \* output\) / d inputs\[0\]\[0, 0\] is 0\.116636\d+ \(v: a fixed random array shaped "
             r"like the output; 12 of 12 elements nonzero; atol=1e-05, rtol=0\.001\)"),
    "wrong dtype: float32": (r"no error; x\.grad: \(3, 4\) float64", "passes"),  # cast back, as PyTorch does
    "wrong dtype: complex": ("InvalidGradientError: " + re.escape(_UNFIT.format("expected dtype float64 but got complex128")),
                             r"GradcheckError: .*" + re.escape(_UNFIT.format("expected dtype float64 but got complex128"))),
    "a Tensor, not an array": (
        "InvalidGradientError: " + re.escape(_UNFIT.format(
            "expected an array or None, got Tensor (backward takes and returns raw arrays, not Tensors)")),
        r"GradcheckError: .*got Tensor \(backward takes and returns raw arrays, not Tensors\)"),
}


def test_every_broken_backward_of_the_example_is_in_the_table():
    assert set(PRINTS) == set(custom_op.BROKEN_BACKWARDS)


@pytest.mark.parametrize("name", list(PRINTS))
def test_what_a_broken_backward_prints(name):
    backward, gradcheck = custom_op.what_it_prints(name)
    expected_backward, expected_gradcheck = PRINTS[name]
    assert re.fullmatch(expected_backward, backward), backward
    assert re.fullmatch(expected_gradcheck, gradcheck), gradcheck


def test_the_example_runs_as_a_script(capsys):
    custom_op.main()
    out = capsys.readouterr().out
    assert "ok  test_silu_gradient_at_drawn_inputs" in out
    assert out.count("\n## ") == len(custom_op.BROKEN_BACKWARDS)


@needs_torch
def test_silu_matches_torch():
    values = np.linspace(-4, 4, 17)
    x = minidl.tensor(values, requires_grad=True)
    y = custom_op.silu(x)
    y.sum().backward()
    t = torch.tensor(values, requires_grad=True)
    torch.nn.functional.silu(t).sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), torch.nn.functional.silu(t).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-12)
