"""Transposed convolution, shown: the output-size formula next to minidl's output, and where each input pixel lands.

    python examples/transposed_conv.py                     # prints the table; writes runs/transposed_conv.png and .md

A transposed convolution *scatters*: every input pixel adds a copy of the kernel,
scaled by its value, onto the output, copies ``stride`` pixels apart. So along one axis::

    out = (in - 1) * stride - 2 * padding + kernel

(the last copy starts at (in-1)*stride and is ``kernel`` wide; ``padding`` crops
that many pixels off each side). Where copies overlap, their contributions add up.
With kernel 3 and stride 2, some output pixels receive one copy, some two, and
some (two along each axis) four: the checkerboard pattern that learned upsampling
can leave in its output. With kernel 4 and stride 2 (kernel a multiple of the
stride) every inner pixel receives the same number. The picture draws both.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import minidl  # noqa: E402
import minidl.nn.functional as F  # noqa: E402
from architectures import _font  # noqa: E402  (examples/architectures.py)

# (in, kernel, stride, padding) settings for the table
SETTINGS = [(4, 3, 1, 0), (4, 3, 2, 0), (4, 3, 2, 1), (4, 4, 2, 1), (4, 2, 2, 0), (5, 5, 3, 2), (7, 3, 2, 1), (15, 4, 2, 1)]
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34)]


def formula(size, kernel, stride, padding):
    return (size - 1) * stride - 2 * padding + kernel


def minidl_output_size(size, kernel, stride, padding):
    """Run F.conv_transpose2d on a (1, 1, size, size) input and read the output's side."""
    y = F.conv_transpose2d(minidl.ones(1, 1, size, size), minidl.ones(1, 1, kernel, kernel), stride=stride, padding=padding)
    return y.shape[-1]


def table(settings=SETTINGS):
    """A Markdown table: the formula next to minidl's output size, per setting."""
    lines = ["| in | kernel | stride | padding | (in-1)*stride - 2*padding + kernel | minidl output |",
             "|---:|---:|---:|---:|---:|---:|"]
    for size, kernel, stride, padding in settings:
        expected, actual = formula(size, kernel, stride, padding), minidl_output_size(size, kernel, stride, padding)
        assert expected == actual, (size, kernel, stride, padding)
        lines.append(f"| {size} | {kernel} | {stride} | {padding} | ({size}-1)*{stride} - 2*{padding} + {kernel} = "
                     f"{expected} | {actual} |")
    return "\n".join(lines)


# =========================================================================== the picture
def footprints(size, kernel, stride, padding):
    """(size*size, out, out) bool: the output pixels each input pixel writes to, found by running minidl.

    Input pixel p alone set to 1, kernel all ones: the output is 1 exactly on its copy of the kernel.
    """
    masks = []
    for p in range(size * size):
        x = np.zeros((1, 1, size, size), np.float32)
        x.flat[p] = 1.0
        y = F.conv_transpose2d(minidl.tensor(x), minidl.ones(1, 1, kernel, kernel), stride=stride, padding=padding)
        masks.append(y.numpy()[0, 0] > 0)
    return np.stack(masks)


def grid(draw, origin, cells, cell, fills, texts=None, outline=(60, 60, 60)):
    """A cells x cells grid of squares at ``origin``; fills[r][c] colours, optional texts[r][c]."""
    x0, y0 = origin
    for r in range(cells):
        for c in range(cells):
            box = [x0 + c * cell, y0 + r * cell, x0 + (c + 1) * cell, y0 + (r + 1) * cell]
            draw.rectangle(box, fill=fills[r][c], outline=outline)
            if texts is not None:
                ink = "white" if sum(fills[r][c]) < 360 else "black"  # light text on dark cells
                draw.text((box[0] + cell / 2 - 4, box[1] + cell / 2 - 9), str(texts[r][c]), fill=ink, font=_font(16))


def case(size, kernel, stride, padding, cell=34):
    """One row of the picture: input pixels, where each lands on the output, and how many land on each output pixel."""
    masks = footprints(size, kernel, stride, padding)
    out = masks.shape[1]
    counts = masks.sum(axis=0)
    # the count by minidl again, directly: all-ones input, all-ones kernel -> how many copies add up at each pixel
    direct = F.conv_transpose2d(minidl.ones(1, 1, size, size), minidl.ones(1, 1, kernel, kernel), stride=stride, padding=padding)
    assert np.array_equal(direct.numpy()[0, 0], counts)
    width = 30 + size * cell + 60 + 2 * (out * cell + 60)
    height = 70 + out * cell + 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    title = (f"kernel {kernel}, stride {stride}, padding {padding}:  out = ({size}-1)*{stride} - 2*{padding} + {kernel} = "
             f"{formula(size, kernel, stride, padding)}")
    draw.text((30, 8), title, fill="black", font=_font(17))
    top = 70
    colours = [COLOURS[p % len(COLOURS)] for p in range(size * size)]
    grid(draw, (30, top), size, cell, [[colours[r * size + c] for c in range(size)] for r in range(size)])
    draw.text((30, top - 24), f"input {size}x{size}", fill="black", font=_font(14))

    left = 30 + size * cell + 60  # each output pixel gets the mean colour of the input pixels that write to it
    mixed = np.zeros((out, out, 3))
    for mask, colour in zip(masks, colours):
        mixed[mask] += colour
    mixed = np.where(counts[..., None] > 0, mixed / np.maximum(counts, 1)[..., None], 255)
    grid(draw, (left, top), out, cell, [[tuple(int(v) for v in mixed[r, c]) for c in range(out)] for r in range(out)])
    for p, (mask, colour) in enumerate(zip(masks, colours)):  # each copy of the kernel, outlined, a little inset
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        inset = 2 + 2 * (p % 3)
        draw.rectangle([left + cols[0] * cell + inset, top + rows[0] * cell + inset,
                        left + (cols[-1] + 1) * cell - inset, top + (rows[-1] + 1) * cell - inset],
                       outline=tuple(int(0.6 * v) for v in colour), width=2)  # darker than the fills
    draw.text((left, top - 24), f"where each input pixel lands ({out}x{out})", fill="black", font=_font(14))

    left += out * cell + 60
    shades = {0: (255, 255, 255), 1: (235, 242, 250), 2: (160, 195, 230), 3: (100, 150, 205), 4: (50, 100, 170)}
    grid(draw, (left, top), out, cell, [[shades.get(int(n), (20, 60, 130)) for n in row] for row in counts], texts=counts)
    draw.text((left, top - 24), "copies added at each output pixel", fill="black", font=_font(14))
    return image


def picture(path):
    rows = [case(3, 3, 2, 0), case(3, 4, 2, 1)]
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    sheet.save(path, optimize=True)
    return sheet


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/transposed_conv.png", help="the PNG to write (the table goes next to it, .md)")
    args = parser.parse_args(argv)
    text = table()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    picture(out)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return text


if __name__ == "__main__":
    main()
