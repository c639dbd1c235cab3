"""The fast CPU kernels' own machinery (minidl/kernels/cpu): pieces, blocks, threads, scratch buffers.

Pieces and blocks cover their arrays exactly once; split products equal one product;
threads start, nest, fail, end and fork cleanly. Each fast kernel's results are held
against its reference, with tiny pieces and blocks on several threads, in test_kernels.py.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minidl
import minidl.nn.functional as F
from minidl.kernels import use_kernels
from minidl.kernels.cpu import conv, threads
from minidl.testing import conv_configs

from .helpers import assert_close

seeds = st.integers(0, 2**32 - 1)


@pytest.fixture(autouse=True)
def fast_kernels_and_the_thread_count_restored():
    before = minidl.get_num_threads()
    with use_kernels("fast"):  # these tests are about the fast kernels, whatever MINIDL_KERNELS says
        yield
    minidl.set_num_threads(before)


def rand(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(dtype)


def run_with_threads(count, function):
    minidl.set_num_threads(count)
    return function()


@given(n=st.integers(1, 40), bytes_per_image=st.integers(1, 1 << 26), thread_count=st.integers(1, 4))
def test_image_chunks_cover_the_batch_in_a_multiple_of_the_threads(n, bytes_per_image, thread_count):
    minidl.set_num_threads(thread_count)
    chunks = conv.image_chunks(np.empty((n, 1)), bytes_per_image)
    assert chunks[0].start == 0 and chunks[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:])), "chunks must be adjacent"
    sizes = [c.stop - c.start for c in chunks]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1, f"uneven chunks {sizes}"
    assert len(chunks) == n or len(chunks) % thread_count == 0, f"{len(chunks)} chunks for {thread_count} threads"
    if bytes_per_image <= conv.CHUNK_BYTES:
        assert max(sizes) * bytes_per_image <= conv.CHUNK_BYTES, "a chunk's columns exceed CHUNK_BYTES"


@given(config=conv_configs(max_batch=5, max_channels=6, max_kernel=4), budget=st.sampled_from([1, 64, 700, 1 << 22]),
       thread_count=st.integers(1, 3))
def test_conv_pieces_cover_every_output_pixel_once(config, budget, thread_count):
    from minidl.nn.functional.conv import _conv2d_geometry
    minidl.set_num_threads(thread_count)
    x = np.empty(config["x_shape"], np.float32)
    geometry = _conv2d_geometry(x.shape, config["w_shape"], None, config["stride"], config["padding"],
                                config["dilation"], config["groups"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv, "CHUNK_BYTES", budget)
        pieces = conv.conv_pieces(x, geometry)
    covered = np.zeros((x.shape[0], geometry.grid[0]), int)
    for images, rows in pieces:
        assert images.stop > images.start and rows.stop > rows.start, "empty piece"
        covered[images, rows] += 1
    assert (covered == 1).all(), f"pieces {pieces} cover some (image, row) {covered.min()}..{covered.max()} times"


def test_a_split_inside_a_split_runs_in_place():
    """Nested parallel_map calls run in the worker itself: waiting for the busy pool would hang."""
    minidl.set_num_threads(2)
    inner = lambda i: threads.parallel_map(lambda j: (i, j, threads._in_our_thread()), range(3))  # noqa: E731
    results = threads.parallel_map(inner, range(4))
    assert [[(i, j) for i, j, _ in row] for row in results] == [[(i, j) for j in range(3)] for i in range(4)]
    if threads._openblas.found:
        assert all(ours for row in results for _, _, ours in row), "the outer items should run in minidl's threads"


def test_one_image_conv_gives_the_numbers_of_one_thread():
    """A batch of one is one piece, run in the caller's thread, its product left to BLAS's own threads."""
    x_array, w_array = rand((1, 16, 40, 40), 0), rand((32, 16, 3, 3), 1)
    run = lambda: F.conv2d(minidl.tensor(x_array), minidl.tensor(w_array), padding=1).numpy()  # noqa: E731
    np.testing.assert_allclose(run_with_threads(2, run), run_with_threads(1, run), rtol=1e-5, atol=1e-5)


def test_parallel_map_keeps_order_and_raises_a_failing_items_error():
    minidl.set_num_threads(2)
    assert threads.parallel_map(lambda i: i * i, range(7)) == [0, 1, 4, 9, 16, 25, 36]

    def fail_on_three(i):
        if i == 3:
            raise KeyError("item three")
        return i

    with pytest.raises(KeyError, match="item three"):
        threads.parallel_map(fail_on_three, range(5))


@pytest.mark.skipif(not threads._openblas.found, reason="NumPy's BLAS is not an OpenBLAS minidl can reach")
def test_blas_runs_one_thread_inside_a_split_and_gets_its_own_count_back_after_it():
    own = threads._openblas.get()
    minidl.set_num_threads(2)
    inside = threads.parallel_map(lambda i: threads._openblas.get(), range(2))
    assert inside == [1, 1], "while minidl splits the work, BLAS must run one thread per call"
    assert threads._openblas.get() == own, "after the split, NumPy code outside minidl must have BLAS's threads back"
    with pytest.raises(KeyError):
        threads.parallel_map(lambda i: {}[i], range(2))
    assert threads._openblas.get() == own, "an exception in the split must give BLAS its count back too"


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2", None])
def test_set_num_threads_rejects_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match=f"set_num_threads: expected a positive int, got {bad!r}"):
        minidl.set_num_threads(bad)


@pytest.mark.parametrize("batch", [1, 3])
def test_large_conv_backward_in_float64_from_a_non_contiguous_input(batch):
    """Big enough for several pieces per image (bands of rows), from memory in another layout."""
    x_array = rand((batch, 40, 40, 24), 3, np.float64).transpose(0, 3, 1, 2)  # NHWC memory seen as NCHW
    w_array = rand((32, 24, 3, 3), 4, np.float64)

    def run():
        x, w = minidl.tensor(x_array, requires_grad=True), minidl.tensor(w_array, requires_grad=True)
        y = F.conv2d(x, w, padding=1)
        (y * y).sum().backward()
        return y.detach().numpy(), x.grad.numpy(), w.grad.numpy()

    for expected, actual in zip(run_with_threads(1, run), run_with_threads(2, run)):
        assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def test_a_finished_threads_scratch_buffer_is_freed():
    import gc
    import threading

    before = len(conv.scratch.buffers)
    x, w = minidl.tensor(rand((1, 8, 32, 32), 0)), minidl.tensor(rand((8, 8, 3, 3), 1))
    workers = [threading.Thread(target=F.conv2d, args=(x, w), kwargs={"padding": 1}) for _ in range(4)]
    for worker in workers:
        worker.start()
        worker.join()
    gc.collect()
    assert len(conv.scratch.buffers) == before, "the ended threads' buffers are still held"


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_can_still_run_split_convolutions():
    """The child inherits the pool object but not its threads: it must make a new pool, not wait forever."""
    import multiprocessing

    minidl.set_num_threads(2)
    x, w = minidl.tensor(rand((4, 8, 16, 16), 0)), minidl.tensor(rand((8, 8, 3, 3), 1))
    expected = F.conv2d(x, w, padding=1).numpy()  # the pool exists from here on
    child = multiprocessing.get_context("fork").Process(
        target=lambda: __import__("os")._exit(0 if np.allclose(F.conv2d(x, w, padding=1).numpy(), expected) else 1))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung on its first convolution")
    assert child.exitcode == 0


def test_set_num_threads_without_a_reachable_openblas_warns_and_stays_at_one(monkeypatch):
    class NoBLAS:
        found = False

    monkeypatch.setattr(threads, "_openblas", NoBLAS())
    monkeypatch.setattr(threads, "_threads", 1)
    with pytest.warns(UserWarning, match="not an OpenBLAS that minidl can reach"):
        minidl.set_num_threads(4)
    assert minidl.get_num_threads() == 1


# --------------------------------------------------------------------------- memory-bound ops in blocks
@given(shape=st.tuples(st.integers(0, 5), st.integers(1, 6), st.integers(1, 9), st.integers(1, 9)),
       budget=st.sampled_from([1, 64, 300, 1 << 22]))
def test_channel_blocks_cover_every_plane_once_as_contiguous_views(shape, budget):
    x = np.zeros(shape, np.float32)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threads, "BLOCK_BYTES", budget)
        blocks = threads.channel_blocks(x)
    plane = x[0, 0].nbytes if shape[0] else 0
    for block in blocks:
        view = x[block]
        view += 1
        assert view.flags.c_contiguous, f"block {block} of {shape} is not contiguous: the pooling scatters need it"
        if view.size and view.nbytes > max(budget, plane) and x.nbytes >= 2 * budget:
            pytest.fail(f"block {block} holds {view.nbytes} bytes, over the budget {budget}")
    assert (x == 1).all(), "some (image, channel) plane is in no block or in two"


def blocked_and_whole(function, thread_count, budget):
    """function() with BLOCK_BYTES = budget and thread_count threads, and with one block in one thread."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threads, "BLOCK_BYTES", budget)
        blocked = run_with_threads(thread_count, function)
    return blocked, run_with_threads(1, function)


@given(seed=seeds, thread_count=st.integers(2, 3), size=st.integers(1, 3000))
def test_elementwise_in_blocks_equals_one_call(seed, thread_count, size):
    a, b = rand((size,), seed), rand((size,), seed + 1)
    blocked, whole = blocked_and_whole(lambda: threads.elementwise(np.multiply, np.empty_like(a), a, b),
                                       thread_count, 64)
    np.testing.assert_array_equal(blocked, whole)
    np.testing.assert_array_equal(whole, a * b)


def test_elementwise_leaves_non_contiguous_arrays_whole():
    minidl.set_num_threads(2)
    a = rand((40, 30), 0).T  # Fortran order: a flat range of it is not a block of the result
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threads, "BLOCK_BYTES", 64)
        calls = []
        out = threads.elementwise(lambda x, y, out: calls.append(x.shape) or np.add(x, y, out=out), np.empty((30, 40), np.float32), a, 1)
    assert calls == [(30, 40)]
    np.testing.assert_array_equal(out, a + 1)
