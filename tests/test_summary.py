"""minidl.summary: the table's figures by hand, activation memory against what the graph really frees,
the peak against the operating system's count, and a model left as it was."""
import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.models import FCN, SegNet, SegNetSmall, UNet

ROOT = Path(__file__).resolve().parent.parent


def small_net():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 4, 3, padding=1))
    net[3].weight.requires_grad_(False)  # frozen weight, trainable bias
    return net


def test_every_figure_of_a_small_net_by_hand():
    s = minidl.summary(small_net(), (2, 3, 16, 16))
    assert [r.name for r in s.rows] == ["0", "1", "2", "3"]
    assert [r.type for r in s.rows] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d"]
    assert [r.output_shape for r in s.rows] == [(2, 8, 16, 16), (2, 8, 16, 16), (2, 8, 8, 8), (2, 4, 8, 8)]
    assert [(r.trainable, r.frozen) for r in s.rows] == [(3 * 8 * 9 + 8, 0), (0, 0), (0, 0), (4, 8 * 4 * 9)]
    assert (s.total_params, s.trainable_params) == (224 + 292, 224 + 4)
    # MACs: one dot product of C_in*3*3 per output value
    assert [r.macs for r in s.rows] == [2 * 8 * 16 * 16 * 27, 0, 0, 2 * 4 * 8 * 8 * 72]
    # Saved for backward: conv 0 keeps its input x (for its weight gradient); ReLU its output; max pooling
    # its int64 indices; conv 3 has a frozen weight, so it keeps no input (its weight is a parameter).
    assert [r.saved_bytes for r in s.rows] == [2 * 3 * 16 * 16 * 4, 2 * 8 * 16 * 16 * 4, 2 * 8 * 8 * 8 * 8, 0]
    assert s.activation_bytes == sum(r.saved_bytes for r in s.rows) and s.other_saved_bytes == 0
    # receptive fields: 3x3 conv, then a 2x2 pool (jump 2), then a 3x3 conv at jump 2 adds 2*2
    fields = [r.receptive_field for r in s.rows]
    assert [f.size for f in fields] == [(3, 3), (3, 3), (4, 4), (8, 8)]
    assert [f.jump for f in fields] == [(1, 1), (1, 1), (2, 2), (2, 2)]
    assert [f.start for f in fields] == [(-1, -1), (-1, -1), (-1, -1), (-3, -3)]
    assert s.receptive_field == (8, 8) and s.output_shape == (2, 4, 8, 8)
    assert s.peak_bytes > s.activation_bytes
    table = str(s)
    for text in ["Conv2d", "MaxPool2d", "(2, 4, 8, 8)", "224/0", "4/288", "8x8", "receptive field of the output: 8x8"]:
        assert text in table, text


def test_shared_modules_have_a_row_per_call_and_count_their_parameters_once():
    s = minidl.summary(UNet(23, widths=(8, 16, 32)), (1, 3, 32, 32))
    assert [r.name for r in s.rows].count("pool (again)") == 1  # one pool module, called twice
    assert sum(r.trainable + r.frozen for r in s.rows) == s.total_params
    assert sum(r.saved_bytes for r in s.rows) + s.other_saved_bytes == s.activation_bytes


def arrays_traced():
    """Bytes of NumPy arrays alive among those traced (NumPy reports to its own tracemalloc domain)."""
    numpy_only = tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)
    return sum(trace.size for trace in tracemalloc.take_snapshot().filter_traces([numpy_only]).traces)


@pytest.mark.parametrize("make", [
    lambda: SegNet(23, widths=(8, 16, 32)),  # max pooling's indices, shared with unpooling
    lambda: UNet(23, widths=(8, 16, 32)),    # concatenation
    lambda: FCN(23, widths=(8, 16, 32)),     # strided and transposed convs, added skips
], ids=["segnet", "unet", "fcn"])
def test_activation_bytes_are_the_arrays_the_graph_frees(make):
    """Run a forward, keep only its output array, drop the graph: exactly activation_bytes of arrays go."""
    model = make()
    shape = (1, 3, 32, 32)
    expected = minidl.summary(model, shape).activation_bytes
    gc.collect()
    tracemalloc.start()
    try:
        x = minidl.tensor(np.random.default_rng(1).standard_normal(shape).astype(np.float32))
        y = model(x)
        del x  # now only the graph holds the input (the first conv saved it)
        output = y._array  # noqa: F841  (kept: the output is not part of what the graph holds)
        with_graph = arrays_traced()
        del y
        gc.collect()
        freed = with_graph - arrays_traced()
    finally:
        tracemalloc.stop()
    print(f"{type(model).__name__}: summary says {expected:,} bytes kept for backward; dropping the graph freed {freed:,}")
    assert freed == expected


PEAK_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import minidl
    from minidl.models import SegNetSmall

    def status(key):  # bytes, from the kernel's count of this process's resident memory
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    model = SegNetSmall()
    x = minidl.tensor(np.random.default_rng(0).standard_normal((1, 3, 128, 128)).astype(np.float32))
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark VmHWM to the current resident size
    y = model(x)
    y.backward(minidl.ones_like(y))
    print(status("VmHWM") - before)
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc to reset the peak RSS")
def test_peak_bytes_agree_with_the_peak_resident_memory_of_a_fresh_process():
    """An independent measurement: the kernel's peak resident set size during one forward + backward.

    In a fresh process (so the conv's column buffer is allocated inside the step, as summary
    arranges too); MALLOC_MMAP_THRESHOLD_ makes glibc give every freed array back to the
    system at once, so resident memory follows live arrays (MINIDL_KEEP_FREED_MEMORY=0: that
    import minidl does not override it, see minidl/memory.py).
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MINIDL_KEEP_FREED_MEMORY="0", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], env=env, capture_output=True, text=True, check=True)
    resident_peak = int(result.stdout.split()[-1])
    peak = minidl.summary(SegNetSmall(), (1, 3, 128, 128)).peak_bytes
    print(f"summary peak {peak:,} bytes, peak resident growth {resident_peak:,} bytes")
    assert peak == pytest.approx(resident_peak, rel=0.10)


def test_the_model_is_left_as_it_was():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    x = minidl.randn(2, 3, 8, 8)
    model(x).sum().backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    running = model[1].running_mean.numpy().copy()
    minidl.summary(model, (2, 3, 8, 8))
    assert model.training
    for p, grad in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad.numpy(), grad)
    np.testing.assert_array_equal(model[1].running_mean.numpy(), running)


def test_summary_on_each_device(device):
    """On a GPU the saved arrays are CuPy arrays and the peak comes from CuPy's memory pool."""
    s = minidl.summary(small_net().to(device), (2, 3, 16, 16), device=device)
    assert s.activation_bytes == 2 * 3 * 16 * 16 * 4 + 2 * 8 * 16 * 16 * 4 + 2 * 8 * 8 * 8 * 8
    assert s.peak_bytes > s.activation_bytes and s.receptive_field == (8, 8)


def test_jumps_are_fractions_after_upsampling():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3, padding=1))
    fields = [r.receptive_field for r in minidl.summary(net, (1, 1, 16, 16)).rows]
    assert [f.jump[0] for f in fields] == [1, Fraction(1, 2), Fraction(1, 2)]
    assert [f.size[0] for f in fields] == [3, 3, 4]  # 3 upsampled pixels come from 2 input pixels


def test_a_linear_head_sees_what_its_features_see():
    """After global pooling and flattening there are no pixels left: the Linear layer's field is the whole window."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    fields = [r.receptive_field for r in minidl.summary(net, (1, 1, 16, 16)).rows]
    assert [f.size[0] for f in fields] == [3, 4, 4 + 7 * 2, 18, 18]  # global pooling of 8x8 at jump 2 adds 7*2
    assert fields[2].jump == (16, 16) and fields[4].jump is None
