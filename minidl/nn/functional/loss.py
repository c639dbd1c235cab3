"""Losses: cross_entropy, nll_loss, binary_cross_entropy_with_logits, mse_loss.

Class-index losses (cross_entropy, nll_loss) take scores of shape (N, C) or
(N, C, d1, ..., dk) -- a segmentation map is (N, C, H, W) -- and int64
targets of shape (N,) or (N, d1, ..., dk). Internally the scores are viewed
as (N, C, M), M = d1 * ... * dk, and each of the N * M *positions* has one
target class t and one loss value::

    loss_i = w[t_i] * (-log p_i[t_i])          (0 where t_i == ignore_index)

with class weights w (all 1 by default). The reductions follow PyTorch:
"none" returns the per-position losses (shaped like the target), "sum"
their sum, and "mean" the *weighted* mean sum_i loss_i / sum_i w[t_i] over
the positions that are not ignored.

cross_entropy is one fused op (log-softmax and NLL together), so that its
backward is simply ``softmax - onehot`` (scaled), and it keeps no full-size
log-probabilities for backward; see ``CrossEntropy``.
"""
from __future__ import annotations

import numbers

from ...autograd.function import Function
from ...backend import array_module, quiet_float_errors
from ...ops import elementwise as E, reduction as R
from ... import dtypes
from .common import ncm_shape

__all__ = ["cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "mse_loss"]

_REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------- shared pieces
class ClassTargets:
    """The targets of an (N, C, M) score array, as arrays of shape (N, M).

    - ``flat_index``: where each position's target score sits in the flattened
      (N*C*M) scores -- one gather/scatter finds all of them (ignored
      positions point at class 0 and carry weight 0);
    - ``kept``: False where the target is ignore_index;
    - ``weight``: w[t] per position, 0 where ignored.
    """

    def __init__(self, target, class_weight, ignore_index, scores_shape, dtype, name):
        xp = array_module(target)
        n, c, m = ncm_shape(scores_shape)
        target = target.reshape(n, m)
        self.kept = target != ignore_index
        _check_target_range(xp, target, self.kept, c, ignore_index, name)
        safe = xp.where(self.kept, target, 0)
        self.flat_index = (xp.arange(n).reshape(n, 1) * c + safe) * m + xp.arange(m)
        if class_weight is None:
            self.weight = self.kept.astype(dtype)
        else:
            self.weight = xp.where(self.kept, class_weight.astype(dtype, copy=False)[safe], dtype.type(0))

    def gather(self, scores):
        """scores[n, t, m] for every position: (N, C, M) -> (N, M)."""
        return scores.reshape(-1)[self.flat_index]


def _check_target_range(xp, target, kept, classes, ignore_index, name):
    """ValueError naming the first target outside [0, C) that is not ignore_index."""
    bad = kept & ((target < 0) | (target >= classes))
    if bool(bad.any()):
        value = int(target[bad][0])
        raise ValueError(
            f"{name}: target value {value} is out of bounds; class indices must lie in [0, {classes}) "
            f"for {classes} classes, or equal ignore_index ({ignore_index})"
        )


def _reduce_positions(loss, targets, reduction):
    """Per-position losses (N, M) -> the output, and the mean's denominator sum(w[t]) (1 otherwise)."""
    xp = array_module(loss)
    if reduction == "none":
        return loss, 1
    if reduction == "sum":
        return xp.asarray(loss.sum()), 1
    total_weight = targets.weight.sum()
    with quiet_float_errors(xp):
        return xp.asarray(loss.sum() / total_weight), total_weight


def _position_scale(grad, targets, reduction, total_weight):
    """d(output)/d(loss_i) times the incoming gradient, per position (N, M); 0 where ignored."""
    xp = array_module(grad)
    if reduction == "none":
        per_position = grad.reshape(targets.kept.shape)
    else:
        with quiet_float_errors(xp):  # total_weight 0 (all ignored): nan, but no position is kept to use it
            per_position = grad / total_weight  # total_weight: a scalar of grad's dtype, or 1
    return xp.where(targets.kept, per_position, grad.dtype.type(0))


def _no_weight_gradient(ctx, index):
    if ctx.needs_input_grad[index]:
        raise RuntimeError("the derivative for 'weight' is not implemented (as in PyTorch)")


# --------------------------------------------------------------------------- cross entropy
class CrossEntropy(Function):
    """Fused log-softmax + NLL over axis 1 of logits z: (N, C, *) with targets t: (N, *).

    With p = softmax(z) over the classes, per position::

        loss = w[t] * (logsumexp(z) - z[t])                 (= -w[t] log p[t])
        dloss/dz = w[t] * (p - onehot(t))

    With label smoothing e the target is (1 - e) onehot(t) + e/C, and PyTorch
    weights the uniform part by the class weights::

        loss = (1-e) w[t] (lse - z[t]) + e/C sum_c w[c] (lse - z[c])
        dloss/dz = p ((1-e) w[t] + e/C sum(w)) - (1-e) w[t] onehot(t) - e/C w

    Memory: the forward pass needs one full-size buffer, exp(z - max). It is
    kept for backward, which turns it *in place* into the gradient: the
    gradient has to be a full-size array anyway, and this saves both a
    second exp pass and a second allocation. (A repeated backward, with
    retain_graph=True, finds the buffer used up and recomputes it from z.)

    The fast CPU kernel (minidl/kernels/cpu/loss.py) replaces ``exp_in_place``.
    """

    exp_in_place = staticmethod(lambda a: array_module(a).exp(a, out=a))

    @staticmethod
    def forward(ctx, logits, target, class_weight, ignore_index, reduction, smoothing):
        xp = array_module(logits)
        n, c, m = ncm_shape(logits.shape)
        z = logits.reshape(n, c, m)
        if class_weight is not None:  # in the logits' dtype: a float64 weight must not widen the math
            class_weight = class_weight.astype(logits.dtype, copy=False)
        targets = ClassTargets(target, class_weight, ignore_index, logits.shape, logits.dtype, "cross_entropy")

        max_z = z.max(axis=1, keepdims=True)  # (N, 1, M)
        # The one full-size buffer, made in the logits' shape so that the gradient it becomes is an
        # array of its own (a leaf keeps it without a copy). Holds z - max for now.
        buffer = xp.empty(logits.shape, dtype=logits.dtype)
        exp_shifted = xp.subtract(z, max_z, out=buffer.reshape(n, c, m))  # (a view of buffer)
        target_z = targets.gather(exp_shifted)  # z[t] - max, (N, M)
        if smoothing:
            weighted_class_sum = _class_sum(exp_shifted, class_weight)  # sum_c w[c] (z[c] - max)
        ctx.exp_in_place(exp_shifted)  # now exp(z - max), every value in (0, 1]
        sum_exp = exp_shifted.sum(axis=1)  # (N, M), >= 1
        log_sum_exp = xp.log(sum_exp)  # logsumexp(z) - max

        loss = targets.weight * (log_sum_exp - target_z)
        if smoothing:
            all_weight = c if class_weight is None else class_weight.sum()
            uniform = xp.where(targets.kept, all_weight * log_sum_exp - weighted_class_sum, logits.dtype.type(0))
            loss = (1 - smoothing) * loss + (smoothing / c) * uniform
        output, total_weight = _reduce_positions(loss, targets, reduction)

        if ctx.needs_input_grad[0]:
            ctx.exp_shifted, ctx.sum_exp, ctx.max_z, ctx.logits = buffer, sum_exp, max_z, logits
            ctx.targets, ctx.class_weight, ctx.total_weight = targets, class_weight, total_weight
            ctx.reduction, ctx.smoothing = reduction, smoothing
        return output.reshape(target.shape) if reduction == "none" else output

    @staticmethod
    def backward(ctx, grad):
        _no_weight_gradient(ctx, 2)
        targets, smoothing, w = ctx.targets, ctx.smoothing, ctx.class_weight
        n, c, m = ncm_shape(ctx.logits.shape)
        scale = _position_scale(grad, targets, ctx.reduction, ctx.total_weight)  # (N, M)

        grad_input = ctx.exp_shifted  # in the logits' shape
        ctx.exp_shifted = None  # used up: it becomes the gradient below
        if grad_input is None:  # a second backward through a retained graph: exp(z - max) again
            xp = array_module(grad)
            grad_input = xp.empty(ctx.logits.shape, dtype=ctx.logits.dtype)
            xp.exp(xp.subtract(ctx.logits.reshape(n, c, m), ctx.max_z, out=grad_input.reshape(n, c, m)),
                   out=grad_input.reshape(n, c, m))
        grad_z = grad_input.reshape(n, c, m)  # a view: the in-place steps below write into grad_input

        # p * (its coefficient), with p = exp_shifted / sum_exp: one in-place pass
        target_weight = (1 - smoothing) * targets.weight
        all_weight = 0 if not smoothing else (c if w is None else w.sum())
        coefficient = scale * (target_weight + (smoothing / c) * all_weight) / ctx.sum_exp
        grad_z *= coefficient.reshape(n, 1, m)
        # the onehot(t) part: one value per position, scattered through the flat index
        grad_z.reshape(-1)[targets.flat_index] -= scale * target_weight
        if smoothing:  # the e/C * w[c] part, every class (a full-size temporary; only with smoothing)
            class_term = (smoothing / c) * (1 if w is None else w.reshape(1, c, 1))
            grad_z -= scale.reshape(n, 1, m) * class_term
        return grad_input, None, None, None, None, None


def _class_sum(shifted, class_weight):
    """sum over classes of w[c] * shifted[:, c, :] for (N, C, M) -> (N, M), as a matmul (no temporary)."""
    if class_weight is None:
        return shifted.sum(axis=1)
    return array_module(shifted).matmul(class_weight, shifted)  # (C,) @ (N, C, M) -> (N, M)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross entropy between logits and class indices (softmax over dim 1), as PyTorch.

    input: logits (N, C), (N, C, H, W) or any (N, C, d1, ..., dk) (also an unbatched (C,));
    target: int64 class indices (N,) or (N, d1, ..., dk) (or () for (C,)), each in [0, C)
    or equal to ``ignore_index`` (such positions add nothing, not even to the mean's
    denominator); weight: optional (C,) class weights.

    Returns a scalar for reduction "mean" (the weighted mean sum(w[t] loss) / sum(w[t]))
    or "sum", or per-position losses shaped like target for "none". If every target
    is ignored, "mean" is 0/0 = nan -- what PyTorch returns too.
    label_smoothing e in [0, 1] mixes the one-hot target with the uniform one.
    Gradients flow to ``input`` only.
    """
    _check_class_loss_args("cross_entropy", input, target, weight, reduction)
    if not isinstance(label_smoothing, numbers.Real) or not 0 <= label_smoothing <= 1:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return CrossEntropy.apply(input, target, weight, int(ignore_index), reduction, float(label_smoothing))


# --------------------------------------------------------------------------- nll loss
class NllLoss(Function):
    """loss = -w[t] * logp[t] per position, for log-probabilities logp: (N, C, *).

    dloss/dlogp is -w[t] at the target class and 0 elsewhere: a zero array
    with one value scattered in per position.
    """

    @staticmethod
    def forward(ctx, log_probs, target, class_weight, ignore_index, reduction):
        xp = array_module(log_probs)
        targets = ClassTargets(target, class_weight, ignore_index, log_probs.shape, log_probs.dtype, "nll_loss")
        # where(), not a product: an ignored position may hold -inf, and 0 * -inf is nan
        loss = xp.where(targets.kept, -targets.weight * targets.gather(log_probs), log_probs.dtype.type(0))
        output, total_weight = _reduce_positions(loss, targets, reduction)
        ctx.targets, ctx.total_weight, ctx.reduction = targets, total_weight, reduction
        ctx.input_shape = log_probs.shape
        return output.reshape(target.shape) if reduction == "none" else output

    @staticmethod
    def backward(ctx, grad):
        _no_weight_gradient(ctx, 2)
        targets = ctx.targets
        scale = _position_scale(grad, targets, ctx.reduction, ctx.total_weight)
        grad_input = array_module(grad).zeros(ctx.input_shape, dtype=grad.dtype)
        grad_input.reshape(-1)[targets.flat_index] = -scale * targets.weight
        return grad_input, None, None, None, None


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of class indices, given log-probabilities (e.g. from log_softmax).

    Same shapes, weighting, ignore_index and reductions as ``cross_entropy``
    (which is log_softmax followed by this, fused). All targets ignored with
    reduction "mean" gives nan, as in PyTorch.
    """
    _check_class_loss_args("nll_loss", input, target, weight, reduction)
    return NllLoss.apply(input, target, weight, int(ignore_index), reduction)


def _check_class_loss_args(name, input, target, weight, reduction):
    _check_reduction(name, reduction)
    if not dtypes.is_floating(input.dtype):
        raise TypeError(f"{name}: input must be floating point scores, got {input.dtype}")
    if input.ndim == 0:
        raise ValueError(f"{name}: input must have a class dimension, got a 0-d tensor")
    if dtypes.category(target.dtype) != 1:
        raise TypeError(
            f"{name}: target must hold integer class indices (int64), got {target.dtype} "
            f"(probability targets are not supported)"
        )
    expected = tuple(input.shape[:1]) + tuple(input.shape[2:]) if input.ndim > 1 else ()
    if tuple(target.shape) != expected:
        raise ValueError(
            f"{name}: target of shape {tuple(target.shape)} does not match input of shape {tuple(input.shape)}; "
            f"expected target shape {expected} (the input's shape without the class dimension 1)"
        )
    classes = input.shape[1] if input.ndim > 1 else input.shape[0]
    if weight is not None and tuple(weight.shape) != (classes,):
        raise ValueError(f"{name}: weight should have shape ({classes},), one per class, got {tuple(weight.shape)}")


def _check_reduction(name, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


# --------------------------------------------------------------------------- binary cross entropy
class BinaryCrossEntropyWithLogits(Function):
    """loss = -[P y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))] * w, elementwise.

    P is pos_weight (1 by default) and w the weight. With s = softplus(-x) =
    -log sigmoid(x), computed stably as max(-x, 0) + log1p(exp(-|x|))::

        loss  = w * ((1 - y) x + (1 + (P - 1) y) s)
        dx    = w * (sigmoid(x) (1 + (P - 1) y) - P y)
        dy    = w * ((P - 1) s - x)
    """

    @staticmethod
    def forward(ctx, x, y, weight, pos_weight, reduction):
        xp = array_module(x)
        softplus_neg = xp.maximum(-x, x.dtype.type(0)) + xp.log1p(xp.exp(-xp.abs(x)))
        pos = 1 if pos_weight is None else pos_weight
        loss = (1 - y) * x + (1 + (pos - 1) * y) * softplus_neg
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(x, y, weight, pos_weight, softplus_neg)
        ctx.reduction = reduction
        return _reduce_elements(loss.astype(x.dtype, copy=False), reduction)

    @staticmethod
    def backward(ctx, grad):
        x, y, weight, pos_weight, softplus_neg = ctx.saved_tensors
        _no_weight_gradient(ctx, 2)
        if ctx.needs_input_grad[3]:
            raise RuntimeError("the derivative for 'pos_weight' is not implemented")
        scale = grad if ctx.reduction != "mean" else grad / grad.dtype.type(x.size)
        if weight is not None:
            scale = scale * weight
        pos = 1 if pos_weight is None else pos_weight
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            sigmoid = 1 / (1 + array_module(x).exp(-x))
            grad_x = (scale * (sigmoid * (1 + (pos - 1) * y) - pos * y)).astype(x.dtype, copy=False)
        if ctx.needs_input_grad[1]:
            grad_y = (scale * ((pos - 1) * softplus_neg - x)).astype(y.dtype, copy=False)
        return grad_x, grad_y, None, None, None


def _reduce_elements(loss, reduction):
    xp = array_module(loss)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return xp.asarray(loss.sum())
    with quiet_float_errors(xp):
        return xp.asarray(loss.mean())


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Binary cross entropy of sigmoid(input) against targets in [0, 1], computed stably from logits.

    input and target have the same shape; weight broadcasts against it, and
    pos_weight (the weight of positive examples, one per class) broadcasts
    along the last dimension. Gradients flow to input and target.
    """
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    _check_same_shape("binary_cross_entropy_with_logits", input, target)
    for name, value in (("input", input), ("target", target)):
        if not dtypes.is_floating(value.dtype):
            raise TypeError(f"binary_cross_entropy_with_logits: {name} must be floating point, got {value.dtype}")
    return BinaryCrossEntropyWithLogits.apply(input, target, weight, pos_weight, reduction)


# --------------------------------------------------------------------------- mean squared error
def mse_loss(input, target, reduction="mean"):
    """(input - target)^2, averaged ("mean"), summed ("sum") or per element ("none").

    Built from differentiable elementwise ops, so gradients reach both input and target.
    """
    _check_reduction("mse_loss", reduction)
    _check_same_shape("mse_loss", input, target)
    difference = E.sub(input, target)
    squared = E.mul(difference, difference)
    if reduction == "none":
        return squared
    return R.sum(squared) if reduction == "sum" else R.mean(squared)


def _check_same_shape(name, input, target):
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(
            f"{name}: target of shape {tuple(target.shape)} must have the same shape as input of shape "
            f"{tuple(input.shape)}"
        )
