"""Draw the guide's pictures: python docs/guide/figures/make_figures.py (from the repository's root).

Needs matplotlib (``pip install 'minidl[docs]'``) and, for the autograd graph,
Graphviz's ``dot`` program; a picture whose tool is missing is skipped with a
note. Every picture is computed by minidl itself, so it shows what the code does:

- autograd_graph.png  (chapter 1): ``minidl.autograd.to_dot`` of (x * w + b).relu().sum()
- im2col.png          (chapter 3): which input pixel lands in which column
- pooling.png         (chapter 5): max pooling with indices, unpooling, nearest upsampling

The other pictures of the guide come from the examples: docs/transposed_conv.png
(examples/transposed_conv.py), docs/architectures.png (examples/architectures.py),
docs/receptive_field.png (examples/receptive_field.py).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # run from a checkout without installing

import minidl  # noqa: E402
import minidl.nn.functional as F  # noqa: E402
from minidl.autograd import graph  # noqa: E402
from minidl.nn.functional.conv import ConvGeometry, im2col  # noqa: E402


def figure(width, height):
    from matplotlib.figure import Figure  # no pyplot: nothing global, no display

    return Figure(figsize=(width, height), layout="constrained")


def autograd_graph_dot():
    """The DOT text of chapter 1's expression, after backward (so the leaves show their gradients)."""
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    w = minidl.tensor([3.0, -1.0], requires_grad=True)
    b = minidl.tensor(0.5, requires_grad=True)
    y = (x * w + b).relu().sum()
    y.backward(retain_graph=True)
    return graph.to_dot(y, names={"x": x, "w": w, "b": b, "y": y})


def draw_autograd_graph(path):
    return graph.render(autograd_graph_dot(), path)


def draw_im2col(path, side=4, kernel=3):
    """Left: a side x side image, each pixel numbered. Right: im2col's columns, each entry the number
    of the pixel it was copied from, one column per output pixel."""
    image = np.arange(side * side, dtype=np.float64).reshape(1, 1, side, side)
    out = side - kernel + 1
    geometry = ConvGeometry((kernel, kernel), (1, 1), (0, 0), (1, 1), 1, (side, side), (out, out))
    columns = im2col(image, geometry)[0, 0]  # (K, OH*OW)
    fig = figure(6.4, 3.6)
    left, right = fig.subplots(1, 2, width_ratios=[side, out * out + 1])
    for ax, values, title in ((left, image[0, 0], f"image {side}x{side} (pixel numbers)"),
                              (right, columns, f"im2col: {kernel * kernel} x {out * out}, one column\nper output pixel")):
        ax.imshow(values, cmap="tab20", vmin=0, vmax=19)
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=9)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    left.add_patch(_square(-0.5, -0.5, kernel))  # the first output pixel's window
    right.add_patch(_square(-0.5, -0.5, 1, kernel * kernel))
    fig.savefig(path, dpi=100)
    return fig


def _square(x, y, width, height=None):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), width, height or width, fill=False, edgecolor="black", linewidth=2.5)


def pooling_example():
    """A 4x4 plane, its 2x2 max pool with indices, the unpooled plane and the nearest-upsampled one."""
    x = minidl.tensor(np.array([[1, 5, 2, 0], [3, 2, 8, 1], [0, 1, 4, 6], [7, 2, 3, 3]], np.float32)[None, None])
    pooled, indices = F.max_pool2d(x, 2, return_indices=True)
    unpooled = F.max_unpool2d(pooled, indices, 2)
    upsampled = F.interpolate(pooled, scale_factor=2, mode="nearest")
    return [(x, "input 4x4"), (pooled, "max_pool2d 2x2"), (indices, "indices (h*W + w)"),
            (unpooled, "max_unpool2d: values back in place"), (upsampled, "nearest upsampling: copies")]


def draw_pooling(path):
    panels = pooling_example()
    fig = figure(11, 2.7)
    axes = fig.subplots(1, len(panels), width_ratios=[t.shape[-1] for t, _ in panels])
    for ax, (tensor, title) in zip(axes, panels):
        values = tensor.numpy()[0, 0]
        ax.imshow(values, cmap="Blues", vmin=0, vmax=15 if "indices" in title else 9)
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=11)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(path, dpi=100)
    return fig


PICTURES = {"autograd_graph.png": draw_autograd_graph, "im2col.png": draw_im2col, "pooling.png": draw_pooling}


def main(out=HERE):
    out = Path(out)
    for name, draw in PICTURES.items():
        if draw is draw_autograd_graph and shutil.which("dot") is None:
            print(f"skipped {name}: Graphviz's dot is not installed")
            continue
        draw(out / name)
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
