"""Loss layers: ``CrossEntropyLoss`` (classification and per-pixel segmentation) and ``MSELoss``.

``reduction``: ``"mean"`` (default), ``"sum"``, or ``"none"`` (one loss per element/sample).
"""
from __future__ import annotations

from .. import functional as F
from ..module import Module

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction


class CrossEntropyLoss(_Loss):
    """``-log softmax(input)[target]``, averaged over the non-ignored targets.

    input ``(N, C)`` logits with target ``(N,)`` class indices, or ``(N, C, H, W)`` with
    target ``(N, H, W)`` for segmentation. ``weight`` (``(C,)``): a per-class weight (the
    mean then divides by the summed weights of the targets). Targets equal to ``ignore_index``
    (e.g. void pixels) contribute nothing. ``label_smoothing`` mixes the one-hot target with
    the uniform distribution. PyTorch's deprecated ``size_average``/``reduce`` arguments are
    not accepted: pass ``ignore_index``, ``reduction`` and ``label_smoothing`` by keyword.
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        # a buffer, as in PyTorch: it moves with .to() and is saved in the state_dict
        self.register_buffer("weight", weight)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class MSELoss(_Loss):
    """Mean squared error ``(input - target)**2``; input and target must have the same shape."""

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)
