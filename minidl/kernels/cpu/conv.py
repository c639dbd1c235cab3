"""Fast conv2d and conv_transpose2d: the reference's three products, in pieces, on several threads.

The reference (minidl/nn/functional/conv.py) makes the columns of the whole
batch at once: kh*kw times the input, 265 MB for 8 images of 32 channels at
240x240 with a 3x3 kernel, written to fresh memory and read back from main
memory by the matmul. Here the same products are computed a *piece* at a
time (``conv_pieces``): a few whole images, or a band of output rows of one
image, about ``CHUNK_BYTES`` of columns each, written into a reused per-thread
buffer (``_Scratch``) and still in the CPU's cache when the matmul reads them.
The pieces are shared among minidl's threads (``threads.parallel_map``).

Three more differences from the reference, none in the numbers it computes:

- im2col is one strided copy of all kernel offsets at once (``band_columns``),
  not one copy per offset;
- a 1x1 convolution with stride 1 multiplies the image itself (its columns);
- a stride-1 input gradient is computed as a convolution of dy with the
  flipped kernel (``flipped_geometry``), which writes its columns once where
  col2im adds them onto the image kh*kw times.

docs/performance.md has what each of these measured.
"""
from __future__ import annotations

import itertools
import threading
import weakref

import numpy as np

from .. import fast_kernel_for
from ...nn.functional.conv import (
    Conv2d, ConvTranspose2d, conv_output_size, crop_image, grouped, pad_image, per_group, window_slices,
)
from .threads import even_slices, get_num_threads, parallel_map

__all__ = ["FastConv2d", "FastConvTranspose2d", "scratch"]

CHUNK_BYTES = 4 << 20  # the columns one piece may make
FLIPPED_MIN_CHANNELS = 8  # fewer input channels per group: the flipped route's matmul is too thin to pay


# =========================================================================== scratch memory
class _Scratch:
    """One reusable buffer per thread for the column matrices, the biggest temporaries of a conv.

    A fresh NumPy array of many MB comes from new pages of the OS, and the
    first touch of each page (a page fault) costs about as much as writing
    it. Columns never outlive the call that made them (forward multiplies and
    drops them; backward rebuilds them), so ONE buffer per thread, grown to
    the largest size seen, serves every conv. The buffers sit in one dict, so
    ``drop()`` can free all of them from any thread (``minidl.summary`` does,
    before it measures); a thread's entry goes when the thread ends.

    Rules for callers: only a temporary that is dead before the next conv
    call may live here, and no view of it may be returned.
    """

    def __init__(self):
        self.buffers = {}  # key -> uint8 buffer; each thread touches only its own entry
        self.local = threading.local()  # this thread's key, and an object that dies with the thread
        self.keys = itertools.count()

    def _key(self):
        """This thread's key into ``buffers``; its entry is removed when the thread ends."""
        key = getattr(self.local, "key", None)
        if key is None:
            key = self.local.key = next(self.keys)
            self.local.owner = owner = _ThreadToken()  # freed with the thread's locals
            weakref.finalize(owner, self.buffers.pop, key, None)
        return key

    def empty(self, shape, dtype):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        key = self._key()
        buffer = self.buffers.get(key)
        if buffer is None or buffer.nbytes < nbytes:
            self.buffers.pop(key, None)  # let the old buffer go before the bigger one is made
            buffer = self.buffers[key] = np.empty(nbytes, dtype=np.uint8)
        return buffer[:nbytes].view(dtype).reshape(shape)

    def drop(self):
        """Free every thread's buffer (the next conv in each thread allocates a new one)."""
        self.buffers.clear()


class _ThreadToken:
    """Something to hold in a thread's locals whose end (with the thread) ``weakref.finalize`` can see."""


scratch = _Scratch()


# =========================================================================== pieces
def is_pointwise(geometry):
    """A 1x1 kernel, stride 1, no padding: the columns ARE the image (no copy needed).

    (The image must also be the grid's size: conv_transpose2d's output_padding
    can add rows that no column covers.)
    """
    return (geometry.kernel == (1, 1) and geometry.stride == (1, 1) and geometry.padding == (0, 0)
            and geometry.image == geometry.grid)


def image_chunks(x, bytes_per_image):
    """Slices of the batch axis of near-equal size, each about ``CHUNK_BYTES`` of columns or less.

    Their count is a multiple of the thread count where the batch has enough
    images, so that no thread waits for a last odd piece.
    """
    n = x.shape[0]
    thread_count = get_num_threads()
    needed = -(-n // max(1, CHUNK_BYTES // max(bytes_per_image, 1)))  # ceil: chunks that fit CHUNK_BYTES
    return even_slices(n, min(n, -(-needed // thread_count) * thread_count))


def conv_pieces(x, geometry):
    """(images, rows) slice pairs: the pieces a conv's columns are made in.

    Whole images (a few per piece) while one image's columns fit CHUNK_BYTES;
    otherwise bands of output rows of one image at a time, of near-equal height.
    """
    n, (oh, ow) = x.shape[0], geometry.grid
    (kh, kw), all_rows = geometry.kernel, slice(0, oh)
    row_bytes = x.shape[1] * kh * kw * ow * x.itemsize  # one output row's columns
    if is_pointwise(geometry) or oh * row_bytes <= CHUNK_BYTES:
        return [(images, all_rows) for images in image_chunks(x, oh * row_bytes)]
    bands = even_slices(oh, -(-oh // max(1, CHUNK_BYTES // row_bytes)))  # ceil: bands that fit CHUNK_BYTES
    return [(slice(i, i + 1), rows) for i in range(n) for rows in bands]


def _pixel_range(rows, width):
    """Output rows [r0, r1) as a slice of the flattened OH*OW pixels."""
    return slice(rows.start * width, rows.stop * width)


def padded_by_threads(x, geometry):
    """pad_image(x, padding, 0) for x (N, C, H, W), the images shared among the threads.

    A whole batch's copy (60 MB for 8x32x240x240) is too long to leave on one
    core while the pieces wait for it.
    """
    (ph, pw), (n, c, h, w) = geometry.padding, x.shape
    if (ph, pw) == (0, 0):
        return x
    padded = np.empty((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    parallel_map(lambda images: pad_image(x[images], geometry.padding, 0, out=padded[images]),
                 image_chunks(x, padded[0:1].nbytes))
    return padded


def band_columns(padded, geometry, rows):
    """padded (N, C, Hp, Wp) -> the columns (N, G, K, R*OW) of the R output rows ``rows``, in scratch memory.

    Equals the reference ``im2col`` restricted to those rows. All kh*kw shifted
    windows at once: a view of the padded image in the columns' own
    (N, C, kh, kw, R, OW) layout -- kernel offset (i, j) moves i*dh rows and
    j*dw columns, output pixel (r, q) r*sh rows and q*sw columns -- copied in
    ONE pass (the view is only read, never returned).
    """
    n, c = padded.shape[:2]
    (kh, kw), ow, groups = geometry.kernel, geometry.grid[1], geometry.groups
    if is_pointwise(geometry):  # 1x1 conv: each pixel's column is its channel vector already
        return per_group(padded, groups)[..., rows.start * ow : rows.stop * ow]
    shape = (n, c, kh, kw, rows.stop - rows.start, ow)
    columns = scratch.empty(shape, padded.dtype)
    (sh, sw), (dh, dw) = geometry.stride, geometry.dilation
    band = padded[:, :, rows.start * sh :]  # output row r reads from padded row r*sh on
    s_n, s_c, s_h, s_w = band.strides
    windows = np.lib.stride_tricks.as_strided(band, shape, (s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw))
    np.copyto(columns, windows)
    return columns.reshape(n, groups, c // groups * kh * kw, (rows.stop - rows.start) * ow)


def add_columns(columns, geometry, padded):
    """The reference ``col2im``'s sums, added onto a zeroed padded image of the caller's (N, C, Hp, Wp)."""
    n, c = padded.shape[:2]
    (kh, kw), (oh, ow) = geometry.kernel, geometry.grid
    columns = columns.reshape(n, c, kh, kw, oh, ow)
    for i, j, (rows, cols) in window_slices(geometry.kernel, geometry.stride, geometry.dilation, geometry.grid):
        padded[:, :, rows, cols] += columns[:, :, i, j]


# =========================================================================== the three products
def weight_times_columns(weight, x, geometry, bias=None):
    """Equals the reference ``weight_times_columns`` (y = W @ im2col(x) + b), a piece at a time.

    Each piece writes its own pixels of ``out``, so pieces may run at once;
    the bias is added to each piece's result while it is still in the cache.
    """
    (n, out_channels), groups = (x.shape[0], weight.shape[0]), geometry.groups
    out = np.empty((n, out_channels) + geometry.grid, dtype=x.dtype)
    out_pixels = per_group(out, groups)  # a view: out is contiguous
    weights = grouped(weight, groups)
    padded = padded_by_threads(x, geometry)

    def multiply(piece):
        images, rows = piece
        columns = band_columns(padded[images], geometry, rows)  # (n_piece, G, K, R*OW)
        result = np.matmul(weights, columns, out=out_pixels[images, :, :, _pixel_range(rows, geometry.grid[1])])
        if bias is not None:
            result += bias.reshape(groups, out_channels // groups, 1)

    parallel_map(multiply, conv_pieces(x, geometry))
    return out


def flipped_kernel(weight, groups):
    """weight (O, C/G, kh, kw) -> (C, O/G, kh, kw): in and out channels swapped, kernel turned 180 degrees.

    The kernel of the convolution that computes a stride-1 conv2d's input
    gradient (see ``input_gradient``). Swapping works per group.
    """
    out_channels, in_per_group, kh, kw = weight.shape
    swapped = weight.reshape(groups, out_channels // groups, in_per_group, kh, kw).swapaxes(1, 2)
    return swapped.reshape(groups * in_per_group, out_channels // groups, kh, kw)[:, :, ::-1, ::-1]


def flipped_geometry(geometry, in_per_group):
    """The geometry of the convolution that gives a stride-1 conv2d's input gradient, or None.

    dy (N, O, OH, OW) convolved with padding ``d*(k-1) - p`` (stride 1, same kernel and
    dilation) yields (N, C, H, W). None where that route does not apply or does not pay.
    """
    if geometry.stride != (1, 1) or is_pointwise(geometry) or in_per_group < FLIPPED_MIN_CHANNELS:
        return None
    padding = tuple(d * (k - 1) - p for d, k, p in zip(geometry.dilation, geometry.kernel, geometry.padding))
    if min(padding) < 0:
        return None
    covers_image = all(  # not when conv_transpose2d's output_padding adds rows no window reaches
        conv_output_size(size, k, 1, p, d) == target
        for size, k, p, d, target in zip(geometry.grid, geometry.kernel, padding, geometry.dilation, geometry.image)
    )
    return geometry._replace(padding=padding, image=geometry.grid, grid=geometry.image) if covers_image else None


def input_gradient(weight, grad_out, geometry):
    """Equals the reference ``input_gradient`` (dx = col2im(W^T @ dy)), a piece at a time.

    With stride 1 the same sum is itself a convolution: every input pixel
    collects ``dy`` from the outputs whose windows covered it, i.e. dy
    convolved with the kernel turned 180 degrees and its channels swapped,
    padded by ``d*(k-1) - p``. That route is taken whenever it applies.
    """
    as_conv = flipped_geometry(geometry, weight.shape[1])
    if as_conv is not None:
        return weight_times_columns(np.ascontiguousarray(flipped_kernel(weight, geometry.groups)), grad_out, as_conv)
    n, groups = grad_out.shape[0], geometry.groups
    grad_groups = per_group(grad_out, groups)  # (N, G, O/G, L)
    weight_t = grouped(weight, groups).swapaxes(1, 2)  # (G, K, O/G): a view, BLAS reads it transposed
    channels = weight_t.shape[1] * groups // (geometry.kernel[0] * geometry.kernel[1])
    pointwise = is_pointwise(geometry)  # 1x1: the column gradient IS the image gradient, nothing to add up
    padded = (np.empty if pointwise else np.zeros)((n, channels) + geometry.padded_image, dtype=grad_out.dtype)

    def scatter(chunk):  # each chunk writes its own images of ``padded``: chunks may run at once
        images = padded[chunk]
        shape = (images.shape[0], groups, weight_t.shape[1], grad_groups.shape[3])  # (n_chunk, G, K, L)
        if pointwise:
            np.matmul(weight_t, grad_groups[chunk], out=images.reshape(shape))
            return
        grad_columns = np.matmul(weight_t, grad_groups[chunk], out=scratch.empty(shape, grad_out.dtype))
        add_columns(grad_columns, geometry, images)

    bytes_per_image = weight_t.shape[1] * groups * grad_groups.shape[3] * grad_out.itemsize
    parallel_map(scatter, image_chunks(grad_out, bytes_per_image))
    return crop_image(padded, geometry.padding, geometry.image)


def weight_gradient(grad_out, x, weight_shape, geometry):
    """Equals the reference ``weight_gradient`` (dW = sum over the batch of dy @ im2col(x)^T), a piece at a time.

    Each piece's batched matmul gives a (n_piece, G, O/G, K) stack of
    per-image products -- weight-sized, small -- summed into the result.
    """
    groups = geometry.groups
    grad_pixels = per_group(grad_out, groups)  # (N, G, O/G, OH*OW)
    padded = padded_by_threads(x, geometry)

    def piece_product(piece):  # (G, O/G, K), this piece's share of dW
        images, rows = piece
        columns = band_columns(padded[images], geometry, rows)  # (n_piece, G, K, R*OW)
        grad = grad_pixels[images, :, :, _pixel_range(rows, geometry.grid[1])]  # (n_piece, G, O/G, R*OW)
        return np.matmul(grad, columns.swapaxes(2, 3)).sum(axis=0)

    total = np.zeros((groups, weight_shape[0] // groups, int(np.prod(weight_shape[1:]))), dtype=x.dtype)
    for part in parallel_map(piece_product, conv_pieces(x, geometry)):  # (no pieces for an empty batch)
        total += part
    return total.reshape(weight_shape)


# =========================================================================== the kernels
class FastProducts:
    """The three products above, in the places where the reference Functions look for theirs."""

    weight_times_columns = staticmethod(weight_times_columns)
    input_gradient = staticmethod(input_gradient)
    weight_gradient = staticmethod(weight_gradient)


@fast_kernel_for(Conv2d)
class FastConv2d(FastProducts, Conv2d):
    """Equals ``Conv2d``. Faster: columns in cache-sized pieces and reused buffers, on several threads."""


@fast_kernel_for(ConvTranspose2d)
class FastConvTranspose2d(FastProducts, ConvTranspose2d):
    """Equals ``ConvTranspose2d``. Faster: the same pieces and threads as ``FastConv2d``."""
