"""save/load: round trips, dtypes, atomic saving, refusing bad files and pickles, PyTorch weights."""
import io
import os
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import minidl
import minidl.nn as nn
import minidl.optim
from minidl.serialization import STRUCTURE_KEY, CheckpointError, load, save
from tests.helpers import assert_close, needs_torch, torch

DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]


def _tensor(dtype, shape=(2, 3)):
    return minidl.tensor((np.arange(np.prod(shape)).reshape(shape) % 5).astype(dtype))


def _assert_same(loaded, original):
    """Deep comparison, including types and dtypes."""
    assert type(loaded) is type(original) or (isinstance(original, dict) and isinstance(loaded, dict))
    if isinstance(original, minidl.Tensor):
        assert loaded.dtype == original.dtype and loaded.shape == original.shape
        assert loaded.device == minidl.device("cpu") and not loaded.requires_grad
        np.testing.assert_array_equal(loaded.numpy(), original.detach().cpu().numpy())
    elif isinstance(original, np.ndarray):
        assert loaded.dtype == original.dtype
        np.testing.assert_array_equal(loaded, original)
    elif isinstance(original, dict):
        assert list(loaded) == list(original)
        for key in original:
            _assert_same(loaded[key], original[key])
    elif isinstance(original, (list, tuple)):
        assert len(loaded) == len(original)
        for a, b in zip(loaded, original):
            _assert_same(a, b)
    elif isinstance(original, float) and np.isnan(original):
        assert np.isnan(loaded)
    else:
        assert loaded == original and type(loaded) is type(original)


def test_round_trip_nested_checkpoint(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    optimizer = minidl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(minidl.randn(5, 3)).sum().backward()
    optimizer.step()
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": 3,
        "history": [0.5, float("nan"), float("inf"), None, True, "text", (1, 2.0)],
        "tensors": {dtype: _tensor(dtype) for dtype in DTYPES},
        "scalar": minidl.tensor(2.5),
        "empty": minidl.zeros(0, 3),
        "array": np.arange(4, dtype=np.int16),
        "numpy_scalar": np.float32(1.5),
        7: "int key",
        "file": minidl.ones(1),  # names that np.savez(**kwargs) could not take
        STRUCTURE_KEY: minidl.ones(2),
    }
    save(checkpoint, tmp_path / "ckpt.npz")
    loaded = load(tmp_path / "ckpt.npz")
    _assert_same(loaded, checkpoint)
    assert isinstance(loaded["numpy_scalar"], np.float32)

    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    fresh.load_state_dict(loaded["model"])
    x = minidl.randn(2, 3)
    assert_close(fresh.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_state_dict_arrays_are_readable_with_numpy(tmp_path):
    state = nn.Conv2d(2, 3, 3).state_dict()
    save(state, tmp_path / "conv.pt")  # any extension: the content is an .npz
    with np.load(tmp_path / "conv.pt", allow_pickle=False) as archive:
        assert set(archive.files) == {"weight", "bias", STRUCTURE_KEY}
        np.testing.assert_array_equal(archive["weight"], state["weight"].numpy())


def test_plain_npz_loads_as_ordered_dict_of_tensors(tmp_path):
    np.savez(tmp_path / "plain.npz", b=np.ones(2, np.float32), a=np.arange(3))
    loaded = load(tmp_path / "plain.npz")
    assert isinstance(loaded, OrderedDict) and list(loaded) == ["b", "a"]
    assert isinstance(loaded["a"], minidl.Tensor) and loaded["a"].dtype == minidl.int64


def test_file_objects_and_map_location(device):
    buffer = io.BytesIO()
    save({"w": minidl.randn(2, 2), "n": 1}, buffer)
    buffer.seek(0)
    loaded = load(buffer, map_location=device)
    assert loaded["w"].device == minidl.device(device) and loaded["n"] == 1


def test_unsupported_objects_raise_with_their_path(tmp_path):
    with pytest.raises(TypeError, match=r"function.*\['a'\]\[1\]"):
        save({"a": [1, print]}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="object arrays"):
        save(np.array([{}], dtype=object), tmp_path / "x.npz")
    with pytest.raises(TypeError, match="dict keys"):
        save({(1, 2): 3}, tmp_path / "x.npz")
    assert not os.listdir(tmp_path)  # nothing written, no temporary files left


def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save({"weights": minidl.ones(1000), "epoch": 1}, path)
    original = path.read_bytes()

    real_write = np.lib.format.write_array
    calls = []

    def failing_write(*args, **kwargs):  # write one array, then "crash" in the middle of the archive
        calls.append(1)
        if len(calls) > 1:
            raise OSError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save({"weights": minidl.zeros(1000), "more": minidl.zeros(10), "epoch": 2}, path)
    monkeypatch.undo()

    assert len(calls) == 2
    assert path.read_bytes() == original
    assert load(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # the temporary file was removed


def test_save_replaces_atomically_and_keeps_permissions(tmp_path):
    path = tmp_path / "ckpt.npz"
    save({"epoch": 1}, path)
    save({"epoch": 2}, path)
    assert load(path)["epoch"] == 2
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


def _saved_bytes(tmp_path):
    path = tmp_path / "good.npz"
    save({"weight": minidl.randn(64, 64), "epoch": 4}, path)
    return path.read_bytes()


def test_truncated_file_raises_clear_error(tmp_path):
    data = _saved_bytes(tmp_path)
    for cut in (len(data) // 2, len(data) - 10, 30):
        path = tmp_path / "truncated.npz"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated.npz"):
            load(path)


def test_corrupt_file_raises_clear_error(tmp_path):
    data = bytearray(_saved_bytes(tmp_path))
    middle = len(data) // 2  # inside the weight array: the CRC check catches it
    data[middle:middle + 16] = b"\xff" * 16
    path = tmp_path / "corrupt.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt.npz.*corrupt"):
        load(path)


def test_corrupt_structure_record_raises(tmp_path):
    path = tmp_path / "bad_record.npz"
    np.savez(path, **{STRUCTURE_KEY: np.frombuffer(b'{"format": "minidl-checkpoint", "root": {"type": "tensor", '
                                                    b'"array": "missing"}}', dtype=np.uint8)})
    with pytest.raises(CheckpointError, match="bad_record.npz.*does not match"):
        load(path)
    np.savez(path, **{STRUCTURE_KEY: np.array([255, 0, 7], dtype=np.uint8)})
    with pytest.raises(CheckpointError, match="structure record is corrupt"):
        load(path)


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"hello, this is not a checkpoint", "starts like none of"),
    (b"\x80\x04\x95 pickled bytes", "pickle"),
])
def test_foreign_files_raise_clear_errors(tmp_path, content, message):
    path = tmp_path / "foreign.bin"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        load(path)
    assert "foreign.bin" in str(info.value)


def test_npy_and_missing_files(tmp_path):
    np.save(tmp_path / "single.npy", np.ones(3))
    with pytest.raises(CheckpointError, match="single .npy"):
        load(tmp_path / "single.npy")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")


_UNPICKLED = []


def _record_unpickling():
    _UNPICKLED.append(True)
    return "payload ran"


class _Payload:
    """Unpickling this calls ``_record_unpickling``: a stand-in for malicious code."""

    def __reduce__(self):
        return (_record_unpickling, ())


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:  # a valid minidl record pointing at a pickled object array
        with archive.open("w.npy", "w") as member:
            np.lib.format.write_array(member, np.array([_Payload()], dtype=object), allow_pickle=True)
        record = b'{"format": "minidl-checkpoint", "version": 1, "root": {"type": "tensor", "array": "w"}}'
        with archive.open(STRUCTURE_KEY + ".npy", "w") as member:
            np.lib.format.write_array(member, np.frombuffer(record, dtype=np.uint8))
    with pytest.raises(CheckpointError, match="evil.npz.*pickled"):
        load(path)
    assert _UNPICKLED == []


@needs_torch
def test_torch_save_file_loads_directly(tmp_path):
    path = tmp_path / "model.pth"  # (tests/test_weight_files.py covers PyTorch and safetensors files in depth)
    theirs = torch.nn.Linear(2, 2)
    torch.save(theirs.state_dict(), path)
    ours = nn.Linear(2, 2)
    ours.load_state_dict(load(path))
    assert_close(ours.weight, theirs.weight, rtol=0, atol=0)


@needs_torch
@pytest.mark.parametrize("via", ["np.savez", "minidl.save"])
def test_pytorch_state_dict_converted_with_numpy_gives_same_outputs(tmp_path, via):
    def build(lib):
        n = lib.nn
        return n.Sequential(n.Conv2d(3, 6, 3, padding=1), n.BatchNorm2d(6), n.ReLU(), n.MaxPool2d(2),
                            n.Conv2d(6, 4, 3), n.BatchNorm2d(4), n.ReLU(), n.Flatten(), n.Linear(4 * 2 * 2, 5))

    torch.manual_seed(0)
    theirs = build(torch)
    with torch.no_grad():  # non-trivial running statistics
        theirs.train()(torch.randn(8, 3, 8, 8))
    theirs.eval()

    # converting by hand still works (minidl.load also reads torch.save files directly)
    arrays = {k: v.numpy() for k, v in theirs.state_dict().items()}
    path = tmp_path / "weights.npz"
    if via == "np.savez":
        np.savez(path, **arrays)
    else:
        save(arrays, path)
    ours = build(minidl)
    ours.load_state_dict(load(path))
    ours.eval()

    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.tensor(x))
    assert_close(ours(minidl.tensor(x)), expected, rtol=1e-5, atol=1e-5)
    assert ours[1].num_batches_tracked.item() == 1
