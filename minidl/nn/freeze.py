"""Freezing part of a network: ``freeze(module)`` and ``unfreeze(module)``.

Transfer learning trains a new part (a decoder, an output layer) on top of a pretrained
part that should stay as it is. Freezing the pretrained part does two things:

1. ``requires_grad=False`` on its parameters. The engine then records no graph for it: an
   op whose inputs need no gradient leaves no node behind, so backward computes no weight
   gradients there, and the first trainable layer computes no gradient for its input
   (``ctx.needs_input_grad``). Backward stops at the frozen boundary; the optimiser skips
   parameters whose ``.grad`` is None.
2. Its BatchNorm layers stay in eval mode, even when ``model.train()`` is called on the
   whole model. Their running mean and variance describe the pretraining data, on which the
   frozen weights after them were trained; in training mode a BatchNorm normalises with the
   current batch's statistics and overwrites its running ones with them, so a few small
   batches of new data would shift every frozen layer's input away from what it learned.

    freeze(model.encoder)          # train only the rest
    model.train()                  # the encoder's BatchNorm layers stay in eval mode
    unfreeze(model.encoder)        # everything trains again (e.g. with a smaller lr)
"""
from __future__ import annotations

from .module import Module
from .modules.normalization import _BatchNorm


def _batch_norms(module):
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def freeze(module: Module) -> Module:
    """No gradients for ``module``'s parameters; its BatchNorm layers in eval mode until ``unfreeze``. Returns it."""
    if not isinstance(module, Module):
        raise TypeError(f"freeze expects an nn.Module, got {type(module).__name__}")
    module.requires_grad_(False)
    for norm in _batch_norms(module):
        norm._stays_in_eval = True
        norm.training = False
    return module


def unfreeze(module: Module) -> Module:
    """Undo ``freeze``: parameters require gradients and BatchNorm follows ``train()``/``eval()`` again.

    The BatchNorm layers take ``module``'s current mode (or eval, if ``module`` is itself a
    BatchNorm); the next ``train()`` or ``eval()`` sets them all. Returns ``module``.
    """
    if not isinstance(module, Module):
        raise TypeError(f"unfreeze expects an nn.Module, got {type(module).__name__}")
    module.requires_grad_(True)
    mode = module.training
    for norm in _batch_norms(module):
        norm._stays_in_eval = False
        norm.training = mode
    return module


def trainable_parameter_count(module: Module) -> int:
    """How many parameter values of ``module`` require a gradient (what training will change)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def is_frozen(module: Module) -> bool:
    """True when no parameter of ``module`` requires a gradient (and it has parameters)."""
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)
