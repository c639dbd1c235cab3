"""``save`` and ``load``: checkpoints and weight files, read without ever running code from them.

``minidl.load(f)`` reads, detecting the format from the file's first bytes (``detect.py``):

- minidl's own ``.npz`` checkpoints (``npz.py``), what ``minidl.save`` writes by default;
- PyTorch files -- ``torch.save(model.state_dict(), path)`` -- in the zip format PyTorch uses
  since 1.6 (``torch_zip.py``; torchvision's published ``.pth`` weights) and in the older
  legacy format (``torch_legacy.py``). Their pickle is read by a restricted unpickler that
  admits only what a state_dict needs (``torch_pickle.py``);
- safetensors files (``safetensors.py``), written by ``minidl.save(..., format="safetensors")``.

Neither torch nor safetensors is needed. Tensors come back on the CPU (or ``map_location``);
bfloat16 becomes float32 (``dtype_codes.py``). Every failure -- a truncated file, a foreign
one, a pickle asking for code, a dtype or shape minidl cannot map -- is a ``CheckpointError``
(a ValueError) naming the file.

Loading is bounded by the file's size, whatever the file says (``limits.py`` lists the bounds):
pickles are scanned before they run (``pickle_scan.py``), zip members may not overlap and
compressed ones may not unpack past a budget (``zip_archive.py``), no tensor is larger than the
storage it views, and shared objects are built once (``torch_pickle.py``). What a state_dict
never holds -- code, str/complex/datetime arrays, tensors as dict keys -- is refused.

    minidl.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}, "ckpt.npz")
    checkpoint = minidl.load("ckpt.npz")
    model.load_state_dict(checkpoint["model"])

    model.load_state_dict(minidl.load("resnet18-f37072fd.pth"))       # torchvision's file, unchanged
    minidl.save(model.state_dict(), "model.safetensors", format="safetensors")
    # in PyTorch: model.load_state_dict(safetensors.torch.load_file("model.safetensors"))

Saving to a path is atomic (``files.py``): a crash while saving leaves the previous file intact,
and the next save removes what a killed one left behind; re-saving keeps the file's mode, and a
symlink is written through.
"""
from __future__ import annotations

from .. import backend
from . import npz, safetensors, torch_legacy, torch_zip
from .detect import NPZ, SAFETENSORS, TORCH_LEGACY, TORCH_ZIP, detect_format
from .errors import CheckpointError
from .files import describe, open_for_reading, open_for_writing
from .npz import STRUCTURE_KEY  # noqa: F401  (importable from here, as before)

__all__ = ["save", "load", "CheckpointError"]

_WRITERS = {"npz": npz, "safetensors": safetensors}
_READERS = {NPZ: npz.read, TORCH_ZIP: torch_zip.read, TORCH_LEGACY: torch_legacy.read, SAFETENSORS: safetensors.read}


def save(obj, f, format="npz"):
    """Write ``obj`` to ``f`` (a path, written atomically, or a binary file object).

    ``format="npz"`` (default): state_dicts, nested dicts/lists/tuples of tensors, arrays, numbers,
    strings and None -- a whole training checkpoint. ``format="safetensors"``: a flat dict
    name -> tensor, readable by PyTorch's ``safetensors`` package. The format never follows
    the file's name. Anything the format can't hold raises TypeError before the file is touched.
    """
    if format not in _WRITERS:
        raise ValueError(f"minidl.save: format must be one of {sorted(_WRITERS)}, got {format!r}")
    writer = _WRITERS[format]
    encoded = writer.encode(obj)
    with open_for_writing(f) as stream:
        writer.write(encoded, stream)


def load(f, map_location=None):
    """Read ``f`` (a path, or a binary file object at the start of the file) in whichever format it is.

    Returns what was saved: for weight files an OrderedDict name -> Tensor. Tensors land on
    ``map_location`` (default: the CPU). Raises CheckpointError naming the file when it can't
    be read safely, FileNotFoundError when it does not exist.
    """
    device = backend.Device("cpu" if map_location is None else map_location)
    name = describe(f)
    with open_for_reading(f) as stream:
        return _READERS[detect_format(stream, name)](stream, name, device)
