"""Segmentation metrics: a confusion matrix accumulated over a whole split, and what it tells.

    metrics = SegmentationMetrics(num_classes=23)
    with minidl.no_grad():
        for images, masks in val_loader:
            metrics.update(model(images), masks)      # logits (N, C, H, W) or labels (N, H, W)
    metrics.as_dict()   # {"pixel_accuracy": ..., "class_accuracy": ..., "mean_iou": ..., ...}

Everything comes from one C x C matrix ``confusion[t, p]``: how many pixels of true class t
were predicted as p. Void pixels (target == ignore_index, -1) are never counted.

  pixel accuracy      sum_c confusion[c, c] / sum of all entries  -- the tutorial's metric:
                      the share of non-void pixels that are right
  accuracy of c       confusion[c, c] / (pixels of true class c)  -- recall
  class accuracy      mean accuracy over the classes present in the targets
  IoU of c            confusion[c, c] / (true c + predicted c - both)
  mean IoU            mean IoU over the classes present in the targets OR the predictions:
                      a class nobody labelled and nobody predicted says nothing and is left
                      out; a class predicted but never labelled scores 0 and counts.

The counts are summed over all batches first and the ratios taken at the end, so a split's
figure does not depend on how it was cut into batches. (The tutorial's ``evaluate_model``
averages per-batch accuracies instead, which weighs a small last batch like a full one.)
"""
from __future__ import annotations

import numpy as np

from . import backend
from ._tensor import Tensor


def _array(x):
    """The NumPy or CuPy array behind a Tensor or array-like (no copy to the host)."""
    if isinstance(x, Tensor):
        return x.detach()._array
    return x if hasattr(x, "__cuda_array_interface__") else np.asarray(x)


def confusion_matrix(pred, target, num_classes, ignore_index=-1) -> np.ndarray:
    """int64 (C, C) NumPy array: entry [t, p] counts pixels of true class t predicted as p.

    pred, target: integer labels of the same shape (e.g. (N, H, W)), NumPy/CuPy arrays or Tensors.
    Pixels where ``target == ignore_index`` are skipped. Computed with one ``bincount`` over
    ``t * C + p`` on the arrays' device; only the small matrix comes back to the host.
    """
    pred, target = _array(pred), _array(target)
    if pred.shape != target.shape:
        raise ValueError(f"confusion_matrix: pred has shape {tuple(pred.shape)} but target has {tuple(target.shape)}")
    for name, values in (("pred", pred), ("target", target)):
        if values.dtype.kind not in "iub":
            raise TypeError(f"confusion_matrix: {name} must hold integer class labels, got dtype {values.dtype}")
    xp = backend.array_module(target)
    keep = target != ignore_index
    t, p = target[keep].astype(xp.int64), pred[keep].astype(xp.int64)
    for name, values in (("target", t), ("pred", p)):
        if values.size and (int(values.min()) < 0 or int(values.max()) >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)]
            raise ValueError(
                f"confusion_matrix: {name} has label {int(bad[0])} outside 0..{num_classes - 1}"
                + (f" (and it is not ignore_index={ignore_index})" if name == "target" else "")
            )
    counts = xp.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return backend.to_device(counts, "cpu").reshape(num_classes, num_classes).astype(np.int64)


def _ratio(numerator, denominator):
    """numerator / denominator, NaN where the denominator is 0 (an undefined score)."""
    out = np.full(np.shape(numerator), np.nan)
    np.divide(numerator, denominator, out=out, where=np.asarray(denominator) > 0)
    return out


class SegmentationMetrics:
    """Accumulates a confusion matrix over batches; reads off accuracy and IoU figures.

    num_classes: C. ignore_index: the void label (-1). class_names: optional names for ``str``.
    """

    def __init__(self, num_classes, ignore_index=-1, class_names=None):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        self.reset()

    def reset(self):
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred, target):
        """Add a batch. pred: logits/scores (N, C, H, W) or labels (N, H, W); target: labels (N, H, W)."""
        pred, target = _array(pred), _array(target)
        if pred.ndim == target.ndim + 1:  # scores: the predicted class is the best one along dim 1
            if pred.shape[1] != self.num_classes:
                raise ValueError(
                    f"SegmentationMetrics.update: scores have {pred.shape[1]} channels, expected "
                    f"num_classes={self.num_classes} (shape {tuple(pred.shape)})"
                )
            pred = pred.argmax(axis=1)
        elif pred.ndim != target.ndim:
            raise ValueError(
                f"SegmentationMetrics.update: expected scores (N, C, H, W) or labels (N, H, W) for targets "
                f"{tuple(target.shape)}, got pred of shape {tuple(pred.shape)}"
            )
        self.confusion += confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        return self

    # ------------------------------------------------------------------ figures
    def pixel_accuracy(self) -> float:
        """Correct non-void pixels / all non-void pixels (NaN before any pixel was seen)."""
        return float(_ratio(np.trace(self.confusion), self.confusion.sum()))

    def per_class_accuracy(self) -> np.ndarray:
        """(C,) recall of each class; NaN for classes absent from the targets."""
        return _ratio(np.diag(self.confusion), self.confusion.sum(axis=1))

    def class_accuracy(self) -> float:
        """Mean per-class accuracy over the classes present in the targets."""
        return _nanmean(self.per_class_accuracy())

    def per_class_iou(self) -> np.ndarray:
        """(C,) intersection over union; NaN for classes in neither targets nor predictions."""
        hits = np.diag(self.confusion)
        union = self.confusion.sum(axis=1) + self.confusion.sum(axis=0) - hits
        return _ratio(hits, union)

    def mean_iou(self) -> float:
        """Mean IoU over the classes present in the targets or the predictions."""
        return _nanmean(self.per_class_iou())

    def as_dict(self) -> dict:
        """All figures: three floats, and per-class lists (NaN where undefined)."""
        return {
            "pixel_accuracy": self.pixel_accuracy(),
            "class_accuracy": self.class_accuracy(),
            "mean_iou": self.mean_iou(),
            "per_class_accuracy": self.per_class_accuracy().tolist(),
            "per_class_iou": self.per_class_iou().tolist(),
        }

    def __str__(self):
        return (
            f"pixel accuracy {self.pixel_accuracy():.3f} | class accuracy {self.class_accuracy():.3f} "
            f"| mean IoU {self.mean_iou():.3f}"
        )

    def report(self) -> str:
        """A table: one line per class with its pixel count, accuracy and IoU, then the totals."""
        accuracy, iou, pixels = self.per_class_accuracy(), self.per_class_iou(), self.confusion.sum(axis=1)
        width = max(len(n) for n in self.class_names)
        lines = [f"{'class':<{width}}  {'pixels':>9}  {'acc':>6}  {'IoU':>6}"]
        for name, n, a, i in zip(self.class_names, pixels, accuracy, iou):
            lines.append(f"{name:<{width}}  {n:>9d}  {a:>6.3f}  {i:>6.3f}")
        return "\n".join(lines + [str(self)])


def _nanmean(values) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")
