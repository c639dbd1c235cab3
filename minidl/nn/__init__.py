"""``minidl.nn``: modules (layers with parameters), losses and initialisation."""
from . import functional
