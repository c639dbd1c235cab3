"""Switching graph recording on and off: ``no_grad``, ``enable_grad``, ``set_grad_enabled``.

While recording is off, ops compute their result and keep nothing for
backward: that is what evaluation and optimiser updates want.
"""
import functools
import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    """True when ops record the graph (the default)."""
    return getattr(_state, "enabled", True)


class set_grad_enabled:
    """Context manager (and decorator) that sets recording on or off, then restores it."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self.previous = is_grad_enabled()
        _state.enabled = self.mode  # takes effect at once, as torch.set_grad_enabled(False) does

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state.enabled = self.previous
        return False


class _GradModeContext:
    """Shared body of ``no_grad`` and ``enable_grad``: usable as ``with`` and as a decorator."""

    mode = True

    def __enter__(self):
        self.previous = is_grad_enabled()
        _state.enabled = self.mode
        return self

    def __exit__(self, *exc):
        _state.enabled = self.previous
        return False

    def __call__(self, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with type(self)():
                return function(*args, **kwargs)

        return wrapper


class no_grad(_GradModeContext):
    """Nothing computed inside is recorded for backward::

        with minidl.no_grad():
            prediction = model(images)

        @minidl.no_grad()
        def evaluate(model): ...
    """

    mode = False


class enable_grad(_GradModeContext):
    """Turns recording back on inside a ``no_grad`` block."""

    mode = True
