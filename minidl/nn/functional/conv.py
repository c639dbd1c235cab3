"""2-D convolution and transposed convolution, both built on ONE ``im2col``/``col2im`` pair.

The idea: a convolution is a matrix product in disguise
-----------------------------------------------------------
Each output pixel of ``conv2d`` is a dot product between the weight of one
output channel, flattened to ``K = C/groups * kh * kw`` numbers, and the
``K`` input values under the kernel at that pixel. ``im2col`` ("image to
columns") copies, for every output pixel, those ``K`` values into one column
of a matrix. Then the whole convolution is ONE matrix product::

    weight (O, K)  @  columns (K, OH*OW)  =  output (O, OH*OW)      (per image)

which runs in BLAS at close to the machine's peak. ``col2im`` is the exact
adjoint (transpose) of ``im2col``: it adds every column entry back onto the
pixel it was copied from, summing where kernel windows overlap.

The three products of a convolution layer then read::

    forward        y      = W   @ im2col(x)
    input grad     dx     = col2im(W^T @ dy)
    weight grad    dW     = dy  @ im2col(x)^T          (summed over the batch)

and ``conv_transpose2d`` is the input-gradient line, run forward (see its
docstring for why).

Layouts (N batch, C input channels, O output channels, G groups)
-----------------------------------------------------------------
- ``x``       (N, C, H, W)
- ``weight``  (O, C/G, kh, kw)           viewed as (G, O/G, K),  K = C/G * kh * kw
- columns     (N, G, K, OH*OW)           so ``weight @ columns`` is a *batched* matmul
                                         over (N, G): no Python loop over the batch or
                                         the groups, and groups == channels (depthwise)
                                         is one call too.
- ``y``       (N, O, OH, OW)             the matmul result (N, G, O/G, OH*OW) reshaped
                                         without a copy.

Output size of conv2d, per spatial axis::

    out = floor((in + 2*padding - dilation*(kernel-1) - 1) / stride) + 1
"""
from __future__ import annotations

import itertools
import threading
import weakref
from typing import NamedTuple

import numpy as np

from ...autograd.function import Function
from ...backend import array_module
from ...kernels.cpu import threads
from ...kernels.cpu.threads import even_slices, get_num_threads, parallel_map

__all__ = ["conv2d", "conv_transpose2d"]


# =========================================================================== arguments
def _pair(value, name, op):
    """An int or a pair of ints -> (for height, for width)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


def _positive_pair(value, name, op):
    pair = _pair(value, name, op)
    if min(pair) <= 0:
        raise ValueError(f"{op}: {name} must be positive, got {pair}")
    return pair


def _non_negative_pair(value, name, op):
    pair = _pair(value, name, op)
    if min(pair) < 0:
        raise ValueError(f"{op}: {name} must be non-negative, got {pair}")
    return pair


def _check_4d(x, op, layout="(N, C, H, W)", name="input"):
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D {name} {layout}, got shape {tuple(x.shape)}")


def _check_same_dtype(op, **tensors):
    present = {name: t for name, t in tensors.items() if t is not None}
    dtypes = {t.dtype for t in present.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{name} {t.dtype}" for name, t in present.items())
        raise RuntimeError(f"{op}: expected input, weight and bias of the same dtype, got {listing}")


def _conv_output_size(size, kernel, stride, padding, dilation):
    """floor((in + 2p - d(k-1) - 1) / s) + 1, the number of kernel positions along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# =========================================================================== geometry
class ConvGeometry(NamedTuple):
    """Everything ``im2col``/``col2im`` need to know about one convolution.

    ``image`` is the spatial size (H, W) of conv2d's *input* and ``grid`` the
    size (OH, OW) of its *output*. Both are stored, not recomputed: for
    conv_transpose2d the grid is the given input and the image may be a
    little larger than the formula's inverse (output_padding).
    """

    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    image: tuple
    grid: tuple

    @property
    def padded_image(self):
        return tuple(size + 2 * pad for size, pad in zip(self.image, self.padding))

    @property
    def is_pointwise(self):
        """A 1x1 kernel, stride 1, no padding: the columns ARE the image (no copy needed).

        (The image must also be the grid's size: conv_transpose2d's output_padding
        can add rows that no column covers.)
        """
        return self.kernel == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0) and self.image == self.grid


def window_slices(kernel, stride, dilation, grid):
    """For each kernel offset (i, j): the slices of a padded image that it reads.

    The kernel entry at (i, j) meets, at output pixel (oh, ow), the padded-image
    pixel (oh*stride + i*dilation, ow*stride + j*dilation). Over all output
    pixels those form a strided sub-grid: one basic slice per axis, i.e. a
    *view*, no copy. Looping over the kh*kw offsets (9 for a 3x3 kernel) is the
    only Python loop of im2col, col2im and the pooling ops.

    Yields (i, j, (row_slice, col_slice)).
    """
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, grid
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
        for j in range(kw):
            yield i, j, (rows, slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))


def pad_image(x, padding, fill, size=None, out=None):
    """x (N, C, H, W) -> (N, C, H + 2*ph, W + 2*pw) with ``fill`` around it (or larger: ``size``).

    Returns ``x`` itself when nothing is added, else a new array (or ``out``,
    filled). Only the border strips are filled, not the whole buffer first:
    one pass over memory instead of two.
    """
    (ph, pw), (n, c, h, w) = padding, x.shape
    total_h, total_w = size if size is not None else (h + 2 * ph, w + 2 * pw)
    if (total_h, total_w) == (h, w):
        return x
    if out is None:
        out = array_module(x).empty((n, c, total_h, total_w), dtype=x.dtype)
    out[:, :, :ph, :] = fill
    out[:, :, ph + h :, :] = fill
    out[:, :, ph : ph + h, :pw] = fill
    out[:, :, ph : ph + h, pw + w :] = fill
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def crop_image(padded, padding, size):
    """The inverse of ``pad_image``: the (H, W) interior of a padded (N, C, Hp, Wp) array (a view)."""
    (ph, pw), (h, w) = padding, size
    return padded[:, :, ph : ph + h, pw : pw + w]


# =========================================================================== scratch memory
class _Scratch:
    """One reusable CPU buffer per thread for the column matrices, the biggest temporaries of a conv.

    Why: a fresh 265 MB NumPy array comes from new pages of the OS, and the
    first touch of each page (a page fault) costs about as much as writing
    it; im2col into a fresh buffer measured 90 ms, into a reused one 48 ms
    (see /work/shared/PERFORMANCE_FACTS.md). Columns never outlive the call
    that made them (forward multiplies and drops them; backward rebuilds
    them), so ONE buffer per thread, grown to the largest size seen, serves
    every conv. The buffers sit in one dict, so ``drop()`` can free all of
    them from any thread (``minidl.summary`` does, before it measures); a
    thread's entry goes when the thread ends. With T threads up to T buffers
    live at once: about CHUNK_BYTES each, except on the col2im route (strided
    and transposed convs), whose pieces are whole images.

    Rules for callers: only a temporary that is dead before the next conv
    call may live here, and no view of it may be returned. On a GPU, CuPy's
    memory pool already recycles blocks, so CuPy arrays are simply allocated.
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

    def empty(self, xp, shape, dtype):
        if xp is not np:
            return xp.empty(shape, dtype=dtype)
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


_scratch = _Scratch()


# =========================================================================== im2col / col2im
def im2col(x, geometry, scratch=False):
    """x (N, C, H, W) -> columns (N, G, K, OH*OW), K = C/G * kh * kw.

    Column (n, g, :, p) holds the input values that the group-g kernels see at
    output pixel p, ordered (channel, i, j) -- the order of a weight
    (O, C/G, kh, kw) flattened per output channel, so ``weight @ columns``
    lines up. ``scratch=True`` writes into the shared scratch buffer (see
    ``_Scratch``): the caller must be done with the columns before the next
    convolution runs.
    """
    padded = pad_image(x, geometry.padding, 0)
    return band_columns(padded, geometry, slice(0, geometry.grid[0]), scratch)


def band_columns(padded, geometry, rows, scratch=False):
    """padded (N, C, Hp, Wp) -> the columns (N, G, K, R*OW) of the R output rows ``rows`` only.

    A band of rows is how a large image is cut into pieces of cache size (see
    ``conv_pieces``); ``rows = slice(0, OH)`` gives all of im2col's columns.
    """
    n, c = padded.shape[:2]
    (kh, kw), ow, groups = geometry.kernel, geometry.grid[1], geometry.groups
    if geometry.is_pointwise:  # 1x1 conv: each pixel's column is its channel vector already
        return _per_group(padded, groups)[..., rows.start * ow : rows.stop * ow]
    # Preallocated and written once. The layout (N, C, kh, kw, R, OW) reshapes to
    # (N, G, K, R*OW) as a view: the matmul operands are contiguous.
    shape, xp = (n, c, kh, kw, rows.stop - rows.start, ow), array_module(padded)
    columns = _scratch.empty(xp, shape, padded.dtype) if scratch else xp.empty(shape, dtype=padded.dtype)
    # All kh*kw shifted windows at once: a view of the padded image in the columns' own
    # (N, C, kh, kw, R, OW) layout -- kernel offset (i, j) moves i*dh rows and j*dw columns,
    # output pixel (r, q) r*sh rows and q*sw columns -- copied in ONE pass (the view is only
    # read, never returned). Measured against one slice copy per kernel offset: the copy 10%
    # faster at 8x16x64x64, 34% at 128x128; training steps (alternated) unet_small b8@64
    # 283 -> 272 ms, SegNetSmall b4@128 1161 -> 1142 ms.
    (sh, sw), (dh, dw) = geometry.stride, geometry.dilation
    band = padded[:, :, rows.start * sh :]  # output row r reads from padded row r*sh on
    s_n, s_c, s_h, s_w = band.strides
    windows = xp.lib.stride_tricks.as_strided(band, shape, (s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw))
    xp.copyto(columns, windows)
    return columns.reshape(n, groups, c // groups * kh * kw, (rows.stop - rows.start) * ow)


def col2im(columns, geometry, padded=None):
    """columns (N, G, K, OH*OW) -> image (N, C, H, W): the adjoint of ``im2col``.

    Every column entry is *added* onto the pixel ``im2col`` copied it from;
    where kernel windows overlap (stride < kernel) a pixel receives several
    contributions -- exactly the sum the chain rule asks for. The sums
    accumulate in a zeroed padded image (N, C, Hp, Wp), made here or given as
    ``padded`` (then the columns are added onto it); the result is its interior.
    """
    n, groups, k = columns.shape[:3]
    (kh, kw), (oh, ow) = geometry.kernel, geometry.grid
    c = groups * k // (kh * kw)
    if geometry.is_pointwise and padded is None:
        return columns.reshape(n, c, oh, ow)
    columns = columns.reshape(n, c, kh, kw, oh, ow)
    if padded is None:
        padded = array_module(columns).zeros((n, c) + geometry.padded_image, dtype=columns.dtype)
    for i, j, (rows, cols) in window_slices(geometry.kernel, geometry.stride, geometry.dilation, geometry.grid):
        padded[:, :, rows, cols] += columns[:, :, i, j]
    return crop_image(padded, geometry.padding, geometry.image)


# =========================================================================== the three products
# Why pieces: the columns of a whole batch are kh*kw times the input -- 265 MB for 8 images of
# 32 channels at 240x240 with a 3x3 kernel. Made a piece at a time, into a scratch buffer, they
# need at most about CHUNK_BYTES however large the batch, and a piece that small is more likely
# to be still in the CPU's cache when the matmul reads it back. Measured with two threads: a
# prototype made the forward of that layer in 4 MB bands of 16 rows 1.47x faster than in 32 MB
# whole images (133 vs 196 ms); as built here, the three products of 4x32x128x128 got about
# 20% faster, the larger layers 5-15% (noisy), whole training steps the same to a few percent
# faster, with a lower peak memory. Small images are grouped, a few per piece. The pieces are also what
# ``parallel_map`` hands to the CPU's threads (see minidl/threads.py): whole images are grouped
# into a multiple of the thread count where the batch has enough images, so that no thread
# waits for a last odd piece. A piece that is all there is (one small image) runs in the
# caller's thread, and ``threads.matmul`` shares its product's columns among the threads
# instead. On a GPU the whole batch is one piece: it wants big launches.
CHUNK_BYTES = 4 << 20


def image_chunks(x, bytes_per_image):
    """Slices of the batch axis of near-equal size, each about ``CHUNK_BYTES`` of columns or less."""
    n = x.shape[0]
    if array_module(x) is not np:
        return even_slices(n, 1)
    thread_count = get_num_threads()
    needed = -(-n // max(1, CHUNK_BYTES // max(bytes_per_image, 1)))  # ceil: chunks that fit CHUNK_BYTES
    return even_slices(n, min(n, -(-needed // thread_count) * thread_count))  # a multiple of the threads


def conv_pieces(x, geometry):
    """(images, rows) slice pairs: the pieces a conv's columns are made in (see CHUNK_BYTES above).

    Whole images (a few per piece) while one image's columns fit CHUNK_BYTES;
    otherwise bands of output rows of one image at a time, of near-equal height.
    """
    n, (oh, ow) = x.shape[0], geometry.grid
    (kh, kw), all_rows = geometry.kernel, slice(0, oh)
    row_bytes = x.shape[1] * kh * kw * ow * x.itemsize  # one output row's columns
    if array_module(x) is not np or geometry.is_pointwise or oh * row_bytes <= CHUNK_BYTES:
        return [(images, all_rows) for images in image_chunks(x, oh * row_bytes)]
    bands = even_slices(oh, -(-oh // max(1, CHUNK_BYTES // row_bytes)))  # ceil: bands that fit CHUNK_BYTES
    return [(slice(i, i + 1), rows) for i in range(n) for rows in bands]


def _padded_by_threads(x, geometry):
    """x (N, C, H, W) -> (N, C, H + 2*ph, W + 2*pw): pad_image(x, padding, 0), the images shared among the threads.

    A whole batch's copy (60 MB for 8x32x240x240) is too long to leave on one
    core while the pieces wait for it.
    """
    (ph, pw), (n, c, h, w) = geometry.padding, x.shape
    if (ph, pw) == (0, 0):
        return x
    padded = array_module(x).empty((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    parallel_map(lambda images: pad_image(x[images], geometry.padding, 0, out=padded[images]),
                 image_chunks(x, padded[0:1].nbytes))
    return padded


def _per_group(images, groups):
    """images (N, C, H, W) -> (N, G, C/G, H*W): each group's channels, pixels flattened (a view when contiguous)."""
    n, c, h, w = images.shape
    return images.reshape(n, groups, c // groups, h * w)


def _grouped(weight, groups):
    """weight (O, C/G, kh, kw) -> (G, O/G, K): one weight matrix per group (a view)."""
    return weight.reshape(groups, weight.shape[0] // groups, -1)


def _pixel_range(rows, width):
    """Output rows [r0, r1) as a slice of the flattened OH*OW pixels."""
    return slice(rows.start * width, rows.stop * width)


def columns_times_weight(weight, x, geometry, bias=None):
    """conv2d's forward product: y = W @ im2col(x) (+ bias), a piece at a time.

    weight (O, C/G, kh, kw), x (N, C, H, W), bias (O,) or None -> y (N, O, OH, OW).
    ``matmul`` broadcasts the (G, O/G, K) weights over the piece's images and
    calls BLAS once per (image, group) from C. The bias is added to each
    piece's result while it is still in the cache: a pass over the whole
    output afterwards cost about 2 ms per conv of 8x32x240x240.
    """
    xp, (n, out_channels), groups = array_module(x), (x.shape[0], weight.shape[0]), geometry.groups
    out = xp.empty((n, out_channels) + geometry.grid, dtype=x.dtype)
    out_pixels = _per_group(out, groups)  # a view: out is contiguous
    weights = _grouped(weight, groups)
    padded = _padded_by_threads(x, geometry)

    def multiply(piece):  # each piece writes its own pixels of ``out``: pieces may run at once
        images, rows = piece
        columns = band_columns(padded[images], geometry, rows, scratch=True)  # (n_piece, G, K, R*OW)
        result = threads.matmul(weights, columns, out=out_pixels[images, :, :, _pixel_range(rows, geometry.grid[1])])
        if bias is not None:
            result += bias.reshape(groups, out_channels // groups, 1)

    parallel_map(multiply, conv_pieces(x, geometry))
    return out


FLIPPED_MIN_CHANNELS = 8  # measured: 3 input channels took 2x longer flipped; 16 and up were faster


def flipped_kernel(weight, groups):
    """weight (O, C/G, kh, kw) -> (C, O/G, kh, kw): in and out channels swapped, kernel turned 180 degrees.

    The kernel of the convolution that computes a stride-1 conv2d's input
    gradient (see ``image_gradient``). Swapping works per group.
    """
    out_channels, in_per_group, kh, kw = weight.shape
    swapped = weight.reshape(groups, out_channels // groups, in_per_group, kh, kw).swapaxes(1, 2)
    return swapped.reshape(groups * in_per_group, out_channels // groups, kh, kw)[:, :, ::-1, ::-1]


def flipped_geometry(geometry, in_per_group):
    """The geometry of the convolution that gives a stride-1 conv2d's input gradient, or None.

    dy (N, O, OH, OW) convolved with padding ``d*(k-1) - p`` (stride 1, same kernel and
    dilation) yields (N, C, H, W). None where that route does not apply or does not pay.
    """
    if geometry.stride != (1, 1) or geometry.is_pointwise:
        return None
    # The flipped convolution's matmul has C/G output rows: with very few input channels (an RGB
    # image) BLAS runs it far below peak, and col2im's K-row product is the better one.
    if in_per_group < FLIPPED_MIN_CHANNELS:
        return None
    padding = tuple(d * (k - 1) - p for d, k, p in zip(geometry.dilation, geometry.kernel, geometry.padding))
    if min(padding) < 0:
        return None
    covers_image = all(  # not when conv_transpose2d's output_padding adds rows no window reaches
        _conv_output_size(size, k, 1, p, d) == target
        for size, k, p, d, target in zip(geometry.grid, geometry.kernel, padding, geometry.dilation, geometry.image)
    )
    return geometry._replace(padding=padding, image=geometry.grid, grid=geometry.image) if covers_image else None


def image_gradient(weight, grad_out, geometry):
    """conv2d's input gradient: dx = col2im(W^T @ dy).

    weight (O, C/G, kh, kw), grad_out (N, O, OH, OW) -> dx (N, C, H, W).

    With stride 1 the same sum is itself a convolution: every input pixel
    collects ``dy`` from the outputs whose windows covered it, i.e. dy
    convolved with the kernel turned 180 degrees and its channels swapped,
    padded by ``d*(k-1) - p``. That route writes columns once and reads them
    once (im2col), where ``col2im`` adds them onto the image kh*kw times, so it
    is taken whenever the padding allows it and there are enough input channels.
    """
    xp = array_module(grad_out)
    as_conv = flipped_geometry(geometry, weight.shape[1])
    if as_conv is not None:
        kernel = xp.ascontiguousarray(flipped_kernel(weight, geometry.groups))
        return columns_times_weight(kernel, grad_out, as_conv)
    n, groups = grad_out.shape[0], geometry.groups
    grad_groups = _per_group(grad_out, groups)  # (N, G, O/G, L)
    weight_t = _grouped(weight, groups).swapaxes(1, 2)  # (G, K, O/G): a view, BLAS reads it transposed
    channels = weight_t.shape[1] * groups // (geometry.kernel[0] * geometry.kernel[1])
    pointwise = geometry.is_pointwise  # 1x1: the column gradient IS the image gradient, nothing to add up
    padded = (xp.empty if pointwise else xp.zeros)((n, channels) + geometry.padded_image, dtype=grad_out.dtype)

    def scatter(chunk):  # each chunk writes its own images of ``padded``: chunks may run at once
        images = padded[chunk]
        shape = (images.shape[0], groups, weight_t.shape[1], grad_groups.shape[3])  # (n_chunk, G, K, L)
        if pointwise:
            threads.matmul(weight_t, grad_groups[chunk], out=images.reshape(shape))
            return
        # The column gradient is a big temporary that col2im consumes at once: scratch memory.
        grad_columns = threads.matmul(weight_t, grad_groups[chunk], out=_scratch.empty(xp, shape, grad_out.dtype))
        col2im(grad_columns, geometry, images)

    bytes_per_image = weight_t.shape[1] * groups * grad_groups.shape[3] * grad_out.itemsize
    parallel_map(scatter, image_chunks(grad_out, bytes_per_image))
    return crop_image(padded, geometry.padding, geometry.image)


def weight_gradient(grad_out, x, weight_shape, geometry):
    """conv2d's weight gradient: dW = sum over the batch of dy @ im2col(x)^T, a piece at a time.

    grad_out (N, O, OH, OW), x (N, C, H, W) -> dW (O, C/G, kh, kw).
    Each piece's batched matmul gives a (n_piece, G, O/G, K) stack of
    per-image products -- weight-sized, small -- summed into the result.
    """
    groups = geometry.groups
    grad_pixels = _per_group(grad_out, groups)  # (N, G, O/G, OH*OW)
    padded = _padded_by_threads(x, geometry)

    def piece_product(piece):  # (G, O/G, K), this piece's share of dW
        images, rows = piece
        columns = band_columns(padded[images], geometry, rows, scratch=True)  # (n_piece, G, K, R*OW)
        grad = grad_pixels[images, :, :, _pixel_range(rows, geometry.grid[1])]  # (n_piece, G, O/G, R*OW)
        return threads.matmul(grad, columns.swapaxes(2, 3)).sum(axis=0)

    total = array_module(x).zeros((groups, weight_shape[0] // groups, int(np.prod(weight_shape[1:]))), dtype=x.dtype)
    for part in parallel_map(piece_product, conv_pieces(x, geometry)):  # (no pieces for an empty batch)
        total += part
    return total.reshape(weight_shape)


def _bias_gradient(grad_out):
    """A bias is added to every pixel of every image: its gradient sums over N, H and W."""
    return grad_out.sum(axis=(0, 2, 3))


def _add_bias(out, bias):
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)  # in place: the matmul result is ours to change
    return out


# =========================================================================== conv2d
class Conv2d(Function):
    """y = conv2d(x, W) + b  via  y = W @ im2col(x).

    Saves ``x`` (not the columns, which are kh*kw times larger) and rebuilds
    the columns in backward when the weight gradient needs them: one extra
    copy (~50 ms of ~450 at 8x64x120x120) buys a graph that holds 9x less
    memory for a 3x3 kernel -- all layers' columns at once would not fit.
    The columns live in the shared scratch buffer (see ``_Scratch``), a few
    images at a time (see ``CHUNK_BYTES``), and none is kept once used.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, geometry):
        need_x, need_weight = ctx.needs_input_grad[:2]
        ctx.geometry = geometry
        ctx.save_for_backward(x if need_weight else None, weight if need_x else None)
        ctx.weight_shape = weight.shape
        return columns_times_weight(weight, x, geometry, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        geometry = ctx.geometry
        grad_weight = weight_gradient(grad, x, ctx.weight_shape, geometry) if need_weight else None
        grad_x = image_gradient(weight, grad, geometry) if need_x else None
        grad_bias = _bias_gradient(grad) if need_bias else None
        return grad_x, grad_weight, grad_bias, None


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in every deep-learning library).

    Shapes:
        x       (N, C, H, W)
        weight  (O, C/groups, kh, kw)
        bias    (O,) or None
        result  (N, O, OH, OW),  OH = floor((H + 2*padding - dilation*(kh-1) - 1) / stride) + 1
                                 (and the same for OW)

    ``stride``, ``padding`` and ``dilation`` are ints or (height, width) pairs.
    With ``groups`` = G, the channels split into G independent groups (G == C
    is a depthwise convolution).
    """
    op = "conv2d"
    _check_4d(x, op)
    _check_4d(weight, op, "(out_channels, in_channels/groups, kh, kw)", "weight")
    _check_same_dtype(op, input=x, weight=weight, bias=bias)
    geometry = _conv2d_geometry(x.shape, weight.shape, bias, stride, padding, dilation, groups)
    return Conv2d.apply(x, weight, bias, geometry)


def _check_groups(groups, op):
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups <= 0:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    return int(groups)


def _check_bias(bias, channels, op):
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ValueError(f"{op}: bias must have shape ({channels},) (one per output channel), got {tuple(bias.shape)}")


def _conv2d_geometry(x_shape, w_shape, bias, stride, padding, dilation, groups):
    op = "conv2d"
    stride, dilation = _positive_pair(stride, "stride", op), _positive_pair(dilation, "dilation", op)
    padding, groups = _non_negative_pair(padding, "padding", op), _check_groups(groups, op)
    n, c, h, w = x_shape
    out_channels, in_per_group, kh, kw = w_shape
    if min(kh, kw) <= 0:
        raise ValueError(f"{op}: kernel size must be positive, got weight of shape {tuple(w_shape)}")
    if c != in_per_group * groups:
        raise ValueError(
            f"{op}: input of shape {tuple(x_shape)} has {c} channels, but weight of shape {tuple(w_shape)} "
            f"with groups={groups} expects {in_per_group * groups} (= weight.shape[1] * groups)"
        )
    if out_channels % groups:
        raise ValueError(f"{op}: weight of shape {tuple(w_shape)} has {out_channels} output channels, not divisible by groups={groups}")
    _check_bias(bias, out_channels, op)
    grid = tuple(_conv_output_size(s, k, st, p, d) for s, k, st, p, d in zip((h, w), (kh, kw), stride, padding, dilation))
    if min(grid) < 1:
        raise ValueError(
            f"{op}: output size {grid} is too small: input {tuple(x_shape)} with padding {padding} is smaller than "
            f"the dilated kernel {tuple((k - 1) * d + 1 for k, d in zip((kh, kw), dilation))}"
        )
    return ConvGeometry((kh, kw), stride, padding, dilation, groups, (h, w), grid)


# =========================================================================== conv_transpose2d
class ConvTranspose2d(Function):
    """y = conv_transpose2d(x, W) + b  =  col2im(W^T @ x) + b: conv2d's input gradient, run forward.

    Its backward therefore runs conv2d *forward* products:
        dx = W @ im2col(dy)                  (conv2d of dy: conv2d's forward)
        dW = x @ im2col(dy)^T                (conv2d's weight gradient, with x in the role of dy)
    Each builds its own chunks of ``im2col(dy)``: rebuilding a chunk that is
    still in the cache is cheaper than keeping all of them in memory.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, geometry):
        need_x, need_weight = ctx.needs_input_grad[:2]
        ctx.geometry = geometry
        ctx.weight_shape = weight.shape
        ctx.save_for_backward(x if need_weight else None, weight if need_x else None)
        return _add_bias(image_gradient(weight, x, geometry), bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        geometry = ctx.geometry
        grad_x = columns_times_weight(weight, grad, geometry) if need_x else None
        grad_weight = weight_gradient(x, grad, ctx.weight_shape, geometry) if need_weight else None
        grad_bias = _bias_gradient(grad) if need_bias else None
        return grad_x, grad_weight, grad_bias, None


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution (a.k.a. "deconvolution", fractionally strided convolution).

    Shapes:
        x       (N, C_in, H, W)
        weight  (C_in, C_out/groups, kh, kw)      -- note: in-channels first
        bias    (C_out,) or None
        result  (N, C_out, OH, OW),
                OH = (H-1)*stride - 2*padding + dilation*(kh-1) + output_padding + 1
                (= (H-1)*stride - 2*padding + kh, the textbook formula, with no dilation
                and no output_padding; the same for OW)

    Why its forward IS conv2d's input gradient
    ------------------------------------------
    Take a conv2d ``y = conv2d(z, W)`` whose weight is this op's ``weight``
    (so (out=C_in, in/groups=C_out/groups, kh, kw)) and whose input z has
    C_out channels of size (OH, OW); its output then has C_in channels of
    size (H, W) -- this op's input shape. conv2d is linear in z: ``y = A z``
    for a big sparse matrix A. Its input gradient is ``dz = A^T dy``. The
    transposed convolution is *defined* as ``x -> A^T x``: each input pixel
    spreads (scatters) its value, weighted by the kernel, over a kh x kw patch
    of the output, patches ``stride`` apart. In code that is exactly
    ``col2im(W^T @ x)``, the function conv2d's backward already uses for dz.

    Because ``A^T``'s adjoint is ``A`` again, this op's backward is conv2d's
    forward (dx = conv2d(dy, W)) and conv2d's weight gradient.
    ``output_padding`` (< stride or dilation) picks among the several output
    sizes that a strided conv2d maps to the same input size; the extra
    rows/columns at the bottom/right receive no kernel contribution but a bias.
    """
    op = "conv_transpose2d"
    _check_4d(x, op)
    _check_4d(weight, op, "(in_channels, out_channels/groups, kh, kw)", "weight")
    _check_same_dtype(op, input=x, weight=weight, bias=bias)
    geometry = _conv_transpose2d_geometry(x.shape, weight.shape, bias, stride, padding, output_padding, groups, dilation)
    return ConvTranspose2d.apply(x, weight, bias, geometry)


def _conv_transpose2d_geometry(x_shape, w_shape, bias, stride, padding, output_padding, groups, dilation):
    op = "conv_transpose2d"
    stride, dilation = _positive_pair(stride, "stride", op), _positive_pair(dilation, "dilation", op)
    padding = _non_negative_pair(padding, "padding", op)
    output_padding = _non_negative_pair(output_padding, "output_padding", op)
    groups = _check_groups(groups, op)
    n, c_in, h, w = x_shape
    w_in, out_per_group, kh, kw = w_shape
    if min(kh, kw) <= 0:
        raise ValueError(f"{op}: kernel size must be positive, got weight of shape {tuple(w_shape)}")
    if c_in != w_in:
        raise ValueError(
            f"{op}: input of shape {tuple(x_shape)} has {c_in} channels, but weight of shape {tuple(w_shape)} "
            f"expects {w_in} (= weight.shape[0], the in-channels of a transposed convolution)"
        )
    if c_in % groups:
        raise ValueError(f"{op}: input channels {c_in} (input shape {tuple(x_shape)}) are not divisible by groups={groups}")
    for extra, s, d in zip(output_padding, stride, dilation):
        if extra >= max(s, d):
            raise ValueError(
                f"{op}: output_padding {output_padding} must be smaller than stride {stride} or dilation {dilation}"
            )
    _check_bias(bias, out_per_group * groups, op)
    image = tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + extra + 1
        for size, s, p, d, k, extra in zip((h, w), stride, padding, dilation, (kh, kw), output_padding)
    )
    if min(image) < 1:
        raise ValueError(f"{op}: output size {image} is too small for input {tuple(x_shape)}, weight {tuple(w_shape)}, padding {padding}")
    return ConvGeometry((kh, kw), stride, padding, dilation, groups, image, (h, w))
