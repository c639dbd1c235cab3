"""One table of the core ops, shared by the gradient property tests and the PyTorch parity tests.

Each entry: name -> (how to draw inputs, the op written against a module ``m``).
The op is written once and run with ``m = minidl`` and ``m = torch``: the two
libraries share names, so the same lambda serves as both the test and the oracle.
"""
from hypothesis import strategies as st

from minidl.testing import broadcastable_shapes, shapes, tensors, tensor_pairs


def one(**options):
    return st.tuples(tensors(max_dims=3, max_side=4, **options))


def away_from(*kinks, margin=0.01):
    """One tensor none of whose values lies within ``margin`` of a kink of the op (where finite differences fail)."""
    return one().filter(lambda args: all((abs(args[0].detach().numpy() - kink) > margin).all() for kink in kinks))


def two(**options):
    return tensor_pairs(**options)


def matrices():
    """Matmul operands: (b?, n, k) @ (b?, k, m), with optional broadcast batch dims and 1-D cases."""
    def build(sizes):
        n, k, m, batch, case = sizes
        left = {"mm": (n, k), "bmm": (batch, n, k), "vec": (k,), "bcast": (batch, n, k)}[case]
        right = {"mm": (k, m), "bmm": (batch, k, m), "vec": (k, m), "bcast": (k, m)}[case]
        return st.tuples(tensors(left), tensors(right))

    return st.tuples(*(st.integers(1, 4) for _ in range(4)), st.sampled_from(["mm", "bmm", "vec", "bcast"])).flatmap(build)


def axis_and_tensor(min_dims=1, **options):
    return shapes(min_dims=min_dims, max_dims=3, max_side=4).flatmap(
        lambda shape: st.tuples(tensors(shape, **options), st.integers(-len(shape), len(shape) - 1))
    )


def _alternating(m, like):
    """A fixed bool pattern shaped like ``like``: a condition that no perturbation can flip."""
    return m.arange(like.numel(), device=like.device).reshape(like.shape) % 2 == 0


OPS = {
    # elementwise
    "add": (two(), lambda m, a, b: a + b),
    "sub": (two(), lambda m, a, b: a - b),
    "mul": (two(), lambda m, a, b: a * b),
    "div": (two(away_from_zero=0.5), lambda m, a, b: a / b),
    "scalar_arith": (one(), lambda m, a: (2.5 - a) * 3 / 1.5 + 1),
    "rdiv": (one(away_from_zero=0.5), lambda m, a: 2.0 / a),
    "neg": (one(), lambda m, a: -a),
    "pow_scalar": (one(low=0.5, high=3.0), lambda m, a: a ** 2.5),
    "pow_tensor": (two(low=0.5, high=2.0), lambda m, a, b: a ** b),
    "exp": (one(), lambda m, a: m.exp(a)),
    "log": (one(low=0.1, high=5.0), lambda m, a: m.log(a)),
    "sqrt": (one(low=0.1, high=5.0), lambda m, a: m.sqrt(a)),
    "abs": (one(away_from_zero=0.05), lambda m, a: m.abs(a)),
    "maximum": (two(unique=True), lambda m, a, b: m.maximum(a, b)),
    "minimum": (two(unique=True), lambda m, a, b: m.minimum(a, b)),
    # clamp has no derivative at its bounds; hypothesis also draws the numbers it finds in this
    # file, so the inputs are kept away from the kinks explicitly
    "clamp": (away_from(-1.03, 1.47), lambda m, a: m.clamp(a, -1.03, 1.47)),
    "clamp_min": (away_from(0.21), lambda m, a: m.clamp(a, min=0.21)),
    "where": (two(), lambda m, a, b: m.where(_alternating(m, a), a * 2, b)),
    "relu": (one(away_from_zero=0.05), lambda m, a: m.relu(a)),
    "sigmoid": (one(), lambda m, a: m.sigmoid(a)),
    "tanh": (one(), lambda m, a: m.tanh(a)),
    # reductions
    "sum_all": (one(), lambda m, a: a.sum()),
    "sum_dim": (axis_and_tensor(), lambda m, a, d: a.sum(d)),
    "sum_keepdim": (axis_and_tensor(), lambda m, a, d: a.sum(d, keepdim=True)),
    "mean_all": (one(), lambda m, a: a.mean()),
    "mean_dim": (axis_and_tensor(), lambda m, a, d: a.mean(d)),
    "var_dim": (axis_and_tensor(), lambda m, a, d: a.var(d, keepdim=True) if a.shape[d] > 1 else a.sum(d)),
    "var_all_biased": (one(), lambda m, a: a.var(unbiased=False)),
    "max_dim": (axis_and_tensor(unique=True), lambda m, a, d: m.max(a, d)[0]),
    "min_dim_keepdim": (axis_and_tensor(unique=True), lambda m, a, d: a.min(d, keepdim=True)[0]),
    "max_all": (one(unique=True), lambda m, a: a.max()),
    # linear algebra
    "matmul": (matrices(), lambda m, a, b: a @ b),
    # shapes
    "reshape": (one(), lambda m, a: a.reshape(-1)),
    "flatten": (st.tuples(tensors(shapes(min_dims=3, max_dims=3, max_side=3))), lambda m, a: a.flatten(1)),
    "permute": (st.tuples(tensors(shapes(min_dims=3, max_dims=3, max_side=4))), lambda m, a: a.permute(2, 0, 1)),
    "transpose": (st.tuples(tensors(shapes(min_dims=2, max_dims=3, max_side=4))), lambda m, a: a.transpose(0, -1)),
    "unsqueeze_squeeze": (one(), lambda m, a: a.unsqueeze(0).unsqueeze(-1).squeeze(0)),
    "expand": (st.tuples(tensors((3, 1))), lambda m, a: a.expand(2, 3, 4)),
    "index_basic": (st.tuples(tensors(shapes(min_dims=2, max_dims=3, min_side=2, max_side=4))), lambda m, a: a[1:, ::2]),
    "index_int_array": (st.tuples(tensors((4, 3))), lambda m, a: a[m.tensor([0, 2, 2, 3], device=a.device)]),
    "index_mask": (st.tuples(tensors((4, 3))), lambda m, a: a[_alternating(m, a)]),
    "cat": (st.tuples(tensors((2, 3)), tensors((4, 3))), lambda m, a, b: m.cat([a, b * 2, a], 0)),
    "stack": (st.tuples(tensors((2, 3)), tensors((2, 3))), lambda m, a, b: m.stack([a, b], 1)),
    "pad": (st.tuples(tensors((2, 3, 3))), lambda m, a: _pad(m, a)),
    # composite: a broadcast then a reduction, through several nodes (a diamond)
    "composite": (two(), lambda m, a, b: ((a * b).exp() + m.tanh(a - b) * a).sum(-1) if a.dim() else (a * b).exp()),
}


def _pad(m, a):
    pad = m.nn.functional.pad
    return pad(a, (1, 2, 0, 1), value=0.5)
