"""``Upsample``: resize ``(N, C, H, W)`` feature maps with ``F.interpolate``."""
from __future__ import annotations

from .. import functional as F
from ..module import Module
from ._utils import check_input


class Upsample(Module):
    """Resize to ``size`` (an int or ``(H_out, W_out)``) or by ``scale_factor``.

    ``H_out = floor(H * scale_factor)``. ``mode``: ``"nearest"`` or ``"bilinear"``;
    ``align_corners`` (bilinear only) maps the corner pixels' centres onto each other;
    ``recompute_scale_factor=True`` samples with the ratio of the sizes instead of ``scale_factor``.
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None, recompute_scale_factor=None):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        self.size = size
        if isinstance(scale_factor, (tuple, list)):
            self.scale_factor = tuple(float(s) for s in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor else None
        self.mode, self.align_corners = mode, align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input):
        check_input(self, input, (4,), "(N, C, H, W)")
        return F.interpolate(input, size=self.size, scale_factor=self.scale_factor, mode=self.mode,
                             align_corners=self.align_corners, recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self):
        info = f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None else f"size={self.size!r}"
        return info + f", mode={self.mode!r}"
