"""``minidl.optim``: optimisers that update a model's parameters from their gradients.

    optimizer = minidl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for images, labels in loader:
        optimizer.zero_grad()
        loss_fn(model(images), labels).backward()
        optimizer.step()
"""
from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
