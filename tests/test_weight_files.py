"""minidl.load of PyTorch and safetensors weight files, minidl.save(format="safetensors").

Format detection from bytes, every dtype, views into shared storages, every kind of broken
file (each error names the file), malicious pickles (nothing runs), key and shape mismatches.
Files are made three ways: by hand (tests/torch_format.py, no torch needed), by minidl
itself, and -- where installed -- by torch.save and the safetensors package.
"""
import io
import json
import os
import pickle
import subprocess
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import minidl
import minidl.nn as nn
from minidl.models import mobilenet_v3_small, resnet18
from minidl.serialization import CheckpointError, load, save
from tests import torch_format as tf
from tests.helpers import needs_torch, torch

try:
    import safetensors.numpy as st_numpy
except ImportError:
    st_numpy = None

# dtype -> (torch storage class, safetensors code)
CODES = {
    "float32": ("FloatStorage", "F32"), "float16": ("HalfStorage", "F16"), "float64": ("DoubleStorage", "F64"),
    "int64": ("LongStorage", "I64"), "int32": ("IntStorage", "I32"), "int16": ("ShortStorage", "I16"),
    "int8": ("CharStorage", "I8"), "uint8": ("ByteStorage", "U8"), "bool": ("BoolStorage", "BOOL"),
}


def _arrays():
    """One array per dtype minidl maps, with awkward shapes (0-d, empty, odd sizes)."""
    rng = np.random.default_rng(0)
    arrays = OrderedDict((dtype, (rng.standard_normal((3, 5)) * 50).astype(dtype)) for dtype in CODES)
    arrays["bool"] = rng.random((2, 3)) > 0.5
    arrays["scalar"] = np.array(2.5, dtype=np.float32)
    arrays["empty"] = np.zeros((0, 4), dtype=np.float32)
    return arrays


def _hand_made(arrays, legacy=False):
    """A PyTorch file (zip or legacy) of ``arrays``, written without torch."""
    entries, storages = OrderedDict(), OrderedDict()
    for index, (name, array) in enumerate(arrays.items()):
        entries[name] = tf.contiguous(str(index), array, CODES[array.dtype.name][0])
        storages[str(index)] = np.ascontiguousarray(array).tobytes()
    pickle_bytes = tf.state_dict_pickle(entries)
    if legacy:
        return tf.torch_legacy(pickle_bytes, storages, {str(i): a.size for i, a in enumerate(arrays.values())})
    return tf.torch_zip(pickle_bytes, storages)


def _assert_loaded(loaded, arrays):
    assert list(loaded) == list(arrays)
    for name, array in arrays.items():
        assert isinstance(loaded[name], minidl.Tensor)
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name].numpy(), array)


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _raises(path, match):
    """load(path) raises CheckpointError matching ``match``, and the message names the file."""
    with pytest.raises(CheckpointError, match=match) as info:
        load(path)
    assert os.path.basename(path) in str(info.value)
    return info.value


# =========================================================================== formats and detection
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_hand_made_pytorch_files_load_every_dtype(tmp_path, legacy):
    arrays = _arrays()
    _assert_loaded(load(_write(tmp_path, "w.pth", _hand_made(arrays, legacy))), arrays)


def test_format_is_detected_from_bytes_not_names(tmp_path):
    arrays = _arrays()
    state = OrderedDict((k, minidl.tensor(v)) for k, v in arrays.items())
    files = {
        "torch_zip.safetensors": _hand_made(arrays),
        "torch_legacy.npz": _hand_made(arrays, legacy=True),
    }
    for name, content in files.items():
        _write(tmp_path, name, content)
    save(state, tmp_path / "safetensors.pth", format="safetensors")
    save(state, tmp_path / "npz.safetensors")
    for name in [*files, "safetensors.pth", "npz.safetensors"]:
        _assert_loaded(load(tmp_path / name), arrays)
        with open(tmp_path / name, "rb") as stream:  # file objects too
            _assert_loaded(load(stream), arrays)
        _assert_loaded(load(io.BytesIO((tmp_path / name).read_bytes())), arrays)


def test_bfloat16_loads_as_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 2.0**-100, np.inf, -0.0], dtype=np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()  # exact: these values fit in 8 mantissa bits
    zip_bytes = tf.torch_zip(tf.state_dict_pickle({"b": tf.tensor("0", 6, 0, [2, 3], [3, 1], "BFloat16Storage")}),
                             {"0": raw})
    header = json.dumps({"b": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}}).encode()
    for path in (_write(tmp_path, "bf16.pth", zip_bytes),
                 _write(tmp_path, "bf16.safetensors", len(header).to_bytes(8, "little") + header + raw)):
        loaded = load(path)["b"]
        assert loaded.dtype == minidl.float32
        np.testing.assert_array_equal(loaded.numpy(), values.reshape(2, 3))


def test_safetensors_whose_first_byte_looks_like_a_pickle(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode().ljust(128)
    content = len(header).to_bytes(8, "little") + header + np.float32([1, 2]).tobytes()
    assert content[:1] == b"\x80"  # a header of 128 bytes starts the file with pickle's PROTO byte
    np.testing.assert_array_equal(load(_write(tmp_path, "w.safetensors", content))["w"].numpy(), [1, 2])


def test_big_endian_pytorch_zip(tmp_path):
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    content = tf.torch_zip(tf.state_dict_pickle({"w": tf.contiguous("0", array, "FloatStorage")}),
                           {"0": array.astype(">f4").tobytes()}, byteorder=b"big")
    np.testing.assert_array_equal(load(_write(tmp_path, "big.pth", content))["w"].numpy(), array)


def test_views_into_a_shared_storage(tmp_path):
    """Offsets, strides (transposes, steps, broadcasting zeros) into one storage, each tensor its own copy."""
    base = np.arange(24, dtype=np.float32)
    views = OrderedDict([  # name -> (offset, size, stride) and the NumPy equivalent
        ("middle", (2, (2, 4), (4, 1), base[2:10].reshape(2, 4))),
        ("every_other_column", (1, (4, 3), (6, 2), base.reshape(4, 6)[:, 1::2])),
        ("transposed", (0, (6, 4), (1, 6), base.reshape(4, 6).T)),
        ("element", (5, (), (), base[5])),
        ("broadcast", (3, (2, 3), (0, 1), np.broadcast_to(base[3:6], (2, 3)))),
        ("empty", (24, (0, 5), (5, 1), np.zeros((0, 5), np.float32))),
    ])
    entries = OrderedDict((name, tf.tensor("0", 24, o, s, st)) for name, (o, s, st, _) in views.items())
    content = tf.torch_zip(tf.state_dict_pickle(entries), {"0": base.tobytes()})
    loaded = load(_write(tmp_path, "views.pth", content))
    for name, (*_, expected) in views.items():
        np.testing.assert_array_equal(loaded[name].numpy(), expected)
    loaded["middle"]._array[...] = -1  # copies: no tensor writes into another
    assert loaded["element"].item() == 5


def test_nested_objects_and_parameters(tmp_path):
    """A checkpoint dict holding a state_dict, numbers and strings; nn.Parameters load as tensors."""
    weight = tf.call(tf.global_("torch._utils", "_rebuild_parameter"), tf.tensor("0", 2, 0, [2], [1]), tf.data(True),
                     tf.call(tf.global_("collections", "OrderedDict")))
    inner = tf.state_dict_pickle({"weight": weight})[2:-1]  # without PROTO and STOP
    body = tf.data("model") + inner + tf.data("epoch") + tf.data(7) + tf.data("name") + tf.data("run-1")
    pickle_bytes = pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK + body + pickle.SETITEMS + pickle.STOP
    loaded = load(_write(tmp_path, "ckpt.pth", tf.torch_zip(pickle_bytes, {"0": np.ones(2, np.float32).tobytes()})))
    assert loaded["epoch"] == 7 and loaded["name"] == "run-1"
    assert isinstance(loaded["model"], OrderedDict) and not loaded["model"]["weight"].requires_grad
    np.testing.assert_array_equal(loaded["model"]["weight"].numpy(), [1, 1])


def test_map_location(tmp_path, device):
    loaded = load(_write(tmp_path, "w.pth", _hand_made({"w": np.ones(3, np.float32)})), map_location=device)
    assert loaded["w"].device == minidl.device(device)


# =========================================================================== broken files
def test_truncated_files_of_every_format(tmp_path):
    arrays = {"weight": np.arange(4096, dtype=np.float32), "bias": np.ones(3, np.float32)}
    save(OrderedDict((k, minidl.tensor(v)) for k, v in arrays.items()), tmp_path / "s", format="safetensors")
    contents = {"zip": _hand_made(arrays), "legacy": _hand_made(arrays, legacy=True),
                "safetensors": (tmp_path / "s").read_bytes()}
    for kind, content in contents.items():
        for cut in (len(content) - 1, len(content) // 2, 40, 9):
            path = _write(tmp_path, f"cut_{kind}_{cut}.bin", content[:cut])
            _raises(path, "truncated|corrupt|past the end|not a PyTorch")


@pytest.mark.parametrize("content,match", [
    (b"", "is empty"),
    (b"GIF89a, a picture and not weights", "starts like none of"),
    (b"\x80\x02K\x07.", "Python pickle but not a PyTorch checkpoint"),           # a pickle of 7
    (b"\x80\x04\x95 pickled bytes", "Python pickle but not a PyTorch checkpoint"),  # not even a valid pickle
    (b"\x93NUMPY\x01\x00", "single .npy"),
])
def test_wrong_magic(tmp_path, content, match):
    _raises(_write(tmp_path, "foreign.bin", content), match)


def test_zip_that_is_neither_npz_nor_pytorch(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "hello")
    _raises(_write(tmp_path, "other.zip", buffer.getvalue()), "not an .npz: 'hello.txt' is not a .npy array")


def _safetensors(header, data=b"", length=None):
    text = json.dumps(header).encode() if isinstance(header, dict) else header
    return (len(text) if length is None else length).to_bytes(8, "little") + text + data


F32_2x2 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}


@pytest.mark.parametrize("content,match", [
    (_safetensors({"w": F32_2x2}, bytes(16), length=10**6), "header length 1000000 runs past the end"),
    (_safetensors({"w": F32_2x2}, bytes(16), length=2**64 - 1), "runs past the end"),
    (_safetensors(b"{not json", length=None), "corrupt"),
    (_safetensors({"w": {"dtype": "F32", "shape": [2, 2]}}, bytes(16)), "'w' needs dtype, shape and data_offsets"),
    (_safetensors({"w": {**F32_2x2, "dtype": "F8_E4M3"}}, bytes(16)), "'w' has dtype 'F8_E4M3', which minidl cannot map"),
    (_safetensors({"w": {**F32_2x2, "dtype": "C64"}}, bytes(16)), "cannot map"),
    (_safetensors({"w": {**F32_2x2, "dtype": "U16"}}, bytes(16)), "cannot map"),
    (_safetensors({"w": {**F32_2x2, "shape": [2, 3]}}, bytes(16)), r"'w' of shape \(2, 3\) and dtype F32 needs 24 bytes"),
    (_safetensors({"w": {**F32_2x2, "shape": [2, -2]}}, bytes(16)), "malformed shape"),
    (_safetensors({"w": {**F32_2x2, "data_offsets": [16, 0]}}, bytes(16)), "malformed data_offsets"),
    (_safetensors({"w": {**F32_2x2, "data_offsets": [0, 32]}}, bytes(16)), "spans bytes .0, 32. of a 16-byte"),
    (_safetensors({"w": F32_2x2, "v": {**F32_2x2, "data_offsets": [8, 24]}}, bytes(24)), "overlaps tensor 'w'"),
    (_safetensors({"w": {**F32_2x2, "data_offsets": [8, 24]}}, bytes(24)), "hole"),
    (_safetensors({"w": F32_2x2}, bytes(20)), "4 bytes after the last tensor"),
    (_safetensors({"w": F32_2x2, "__metadata__": {"n": 1}}, bytes(16)), "__metadata__ must map strings"),
])
def test_broken_safetensors_files(tmp_path, content, match):
    _raises(_write(tmp_path, "broken.safetensors", content), match)


def _zip_with(entries, storages, **kwargs):
    return tf.torch_zip(tf.state_dict_pickle(entries), storages, **kwargs)


@pytest.mark.parametrize("content,match", [
    # a dtype minidl can't map
    (_zip_with({"z": tf.tensor("0", 2, 0, [2], [1], "ComplexFloatStorage")}, {"0": bytes(16)}),
     "torch.ComplexFloatStorage, which minidl cannot map"),
    # the storage's byte count does not match its element count
    (_zip_with({"w": tf.tensor("0", 6, 0, [2, 3], [3, 1])}, {"0": bytes(20)}), "holds 20 bytes, but its 6 float32 elements need 24"),
    # a view reaching past the storage (as_strided would read foreign memory)
    (_zip_with({"w": tf.tensor("0", 6, 2, [2, 3], [3, 1])}, {"0": bytes(24)}), "'w' of shape .* reaches element 7 of storage '0'"),
    (_zip_with({"w": tf.tensor("0", 6, 0, [2, 3], [-3, 1])}, {"0": bytes(24)}), "malformed shape"),
    (_zip_with({"w": tf.tensor("0", 6, 0, [2, 3], [3, 1])}, {}), "storage '0' .* is missing"),
    (_zip_with({"w": tf.tensor("0", 6, 0, [2, 3], [3, 1])}, {"0": bytes(24)}, byteorder=b"middle"), "unknown byte order"),
    # compressed members could unpack to far more than the file holds
    (_zip_with({"w": tf.tensor("0", 6, 0, [2, 3], [3, 1])}, {"0": bytes(24)}, compression=zipfile.ZIP_DEFLATED),
     r"member 'archive/data.pkl' is compressed \(deflated\); this format's members are stored"),
])
def test_broken_pytorch_files(tmp_path, content, match):
    _raises(_write(tmp_path, "broken.pth", content), match)


def test_bare_storage_is_refused(tmp_path):
    content = tf.torch_zip(tf.state_dict_pickle({"s": tf.storage_id("0", 2)}), {"0": bytes(8)})
    _raises(_write(tmp_path, "storage.pth", content), "holds a bare storage at s")


def test_legacy_file_with_wrong_storage_count(tmp_path):
    array = np.ones(4, np.float32)
    pickle_bytes = tf.state_dict_pickle({"w": tf.contiguous("0", array, "FloatStorage")})
    content = tf.torch_legacy(pickle_bytes, {"0": array.tobytes()}, {"0": 5})
    _raises(_write(tmp_path, "legacy.pt", content), "holds 5 elements, its tensors say 4")


# =========================================================================== malicious pickles
class _Reduce:
    """Pickles as ``function(*args)``: what an attacker's object does in __reduce__."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _payloads(marker):
    """Pickles that would create ``marker`` if unpickled with plain pickle.load."""
    touch = f"open({str(marker)!r}, 'w').close()"
    getattr_chain = tf.call(  # getattr(__import__('os'), 'system')('touch marker')
        tf.call(tf.global_("builtins", "getattr"), tf.call(tf.global_("builtins", "__import__"), tf.data("os")),
                tf.data("system")),
        tf.data(f"touch {marker}"))
    return {
        "os.system": pickle.dumps(_Reduce(os.system, f"touch {marker}"), protocol=2),
        "eval": pickle.dumps(_Reduce(eval, touch), protocol=2),
        "exec": pickle.dumps(_Reduce(exec, touch), protocol=4),
        "subprocess": pickle.dumps(_Reduce(subprocess.call, ["touch", str(marker)]), protocol=2),
        "getattr chain": pickle.PROTO + b"\x02" + getattr_chain + pickle.STOP,
        "dotted name": pickle.PROTO + b"\x02" + tf.call(tf.global_("torch._utils", "_rebuild_tensor_v2.__globals__"))
        + pickle.STOP,
        # hidden where a state_dict holds harmless values: a tensor's hooks argument
        "inside a tensor": tf.state_dict_pickle({"w": tf.call(
            tf.global_("torch._utils", "_rebuild_tensor_v2"), tf.storage_id("0", 1), tf.data(0), tf.data((1,)),
            tf.data((1,)), tf.data(False), tf.call(tf.global_("posix", "system"), tf.data(f"touch {marker}")))}),
    }


REFUSED = r"asks for the Python object ([\w.]+), which minidl refuses"


@pytest.mark.parametrize("container", ["zip", "legacy", "legacy first pickle"])
def test_malicious_pickles_raise_and_run_nothing(tmp_path, container):
    marker = tmp_path / "marker"
    # sanity: the payloads do run under plain pickle (done once, for the simplest one)
    if container == "zip":
        pickle.loads(_payloads(marker)["eval"])
        assert marker.exists()
        marker.unlink()
    for name, payload in _payloads(marker).items():
        if container == "zip":
            content = tf.torch_zip(payload, {"0": bytes(4)})
        elif container == "legacy":
            content = tf.torch_legacy(payload, {}, {})
        else:
            content = payload
        path = _write(tmp_path, f"evil_{name.replace(' ', '_')}.pth", content)
        error = _raises(path, REFUSED)
        assert not marker.exists(), name
        refused = str(error)
        assert any(word in refused for word in ("system", "eval", "exec", "subprocess", "getattr", "__globals__")), refused


@needs_torch
def test_malicious_object_in_a_real_torch_save_file(tmp_path):
    marker = tmp_path / "marker"
    torch.save({"weight": torch.ones(2), "payload": _Reduce(os.system, f"touch {marker}")}, tmp_path / "evil.pth")
    _raises(tmp_path / "evil.pth", r"posix\.system|os\.system|nt\.system")
    assert not marker.exists()


# =========================================================================== with torch.save
@needs_torch
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_torch_save_dtypes_and_views(tmp_path, legacy):
    base = torch.arange(24, dtype=torch.float32)
    state = OrderedDict([
        ("float32", torch.randn(3, 4)), ("float16", torch.randn(5).half()), ("float64", torch.randn(2, 2).double()),
        ("bfloat16", torch.tensor([1.0, -2.5, 3.140625]).bfloat16()),
        ("int64", torch.tensor(7)), ("uint8", torch.arange(250, 256, dtype=torch.uint8)), ("bool", torch.tensor([True, False])),
        ("int8", torch.tensor([-128, 127], dtype=torch.int8)),
        ("view", base[2:10].view(2, 4)), ("strided", base.view(4, 6)[:, 1::2]), ("transposed", base.view(4, 6).t()),
        ("element", base[5]),
    ])
    path = tmp_path / "state.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    loaded = load(path)
    assert list(loaded) == list(state)
    for key, value in state.items():
        expected = value.float().numpy() if value.dtype == torch.bfloat16 else value.numpy()
        assert loaded[key].dtype == expected.dtype, key
        np.testing.assert_array_equal(loaded[key].numpy(), expected)


@needs_torch
def test_torch_dtype_minidl_cannot_map(tmp_path):
    torch.save({"z": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "complex.pth")
    _raises(tmp_path / "complex.pth", "ComplexFloatStorage, which minidl cannot map")


@needs_torch
def test_torch_module_state_dict_loads_into_minidl(tmp_path):
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    torch.save(theirs.state_dict(), tmp_path / "m.pth")
    ours = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ours.load_state_dict(load(tmp_path / "m.pth"))
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key].numpy(), value.numpy())


# =========================================================================== safetensors writing
def test_safetensors_round_trip_and_layout(tmp_path):
    arrays = _arrays()
    state = OrderedDict((k, minidl.tensor(v)) for k, v in arrays.items())
    state["transposed"] = minidl.tensor(np.arange(6, dtype=np.float32).reshape(2, 3)).T  # not contiguous
    arrays["transposed"] = np.arange(6, dtype=np.float32).reshape(2, 3).T
    path = tmp_path / "w.safetensors"
    save(state, path, format="safetensors")
    _assert_loaded(load(path), arrays)

    # the bytes, checked against the format's specification by hand
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + length])
    assert raw[8:9] == b"{" and (8 + length) % 8 == 0, "header padded so the data starts 8-byte aligned"
    assert list(header) == list(arrays), "the caller's key order"
    buffer = raw[8 + length:]
    spans = sorted(info["data_offsets"] for info in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(buffer)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), "no holes, no overlaps"
    codes = {dtype: code for dtype, (_, code) in CODES.items()}
    for key, array in arrays.items():
        info = header[key]
        assert info["dtype"] == codes[array.dtype.name] and info["shape"] == list(array.shape)
        begin, end = info["data_offsets"]
        assert begin % array.dtype.itemsize == 0, "every tensor aligned to its itemsize"
        assert buffer[begin:end] == np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def test_safetensors_save_refuses_what_it_cannot_hold(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match="flat dict"):
        save([minidl.ones(2)], path, format="safetensors")
    with pytest.raises(TypeError, match="'nested' is a dict"):
        save({"nested": {"w": minidl.ones(2)}}, path, format="safetensors")
    with pytest.raises(TypeError, match="keys must be strings"):
        save({3: minidl.ones(2)}, path, format="safetensors")
    with pytest.raises(TypeError, match="'u' has dtype uint16"):
        save({"u": np.zeros(2, np.uint16)}, path, format="safetensors")
    with pytest.raises(ValueError, match="format must be one of"):
        save({"w": minidl.ones(2)}, path, format="pickle")
    assert not os.listdir(tmp_path)


@pytest.mark.skipif(st_numpy is None, reason="the safetensors package is not installed")
def test_safetensors_package_reads_ours_and_we_read_its(tmp_path):
    arrays = _arrays()
    save(OrderedDict((k, minidl.tensor(v)) for k, v in arrays.items()), tmp_path / "ours.safetensors",
         format="safetensors")
    theirs = st_numpy.load_file(str(tmp_path / "ours.safetensors"))
    for key, array in arrays.items():
        assert theirs[key].dtype == array.dtype
        np.testing.assert_array_equal(theirs[key], array)
    st_numpy.save_file({k: np.asarray(v, order="C") for k, v in arrays.items()}, str(tmp_path / "theirs.safetensors"),
                       metadata={"format": "np"})
    loaded = load(tmp_path / "theirs.safetensors")
    for key, array in arrays.items():
        np.testing.assert_array_equal(loaded[key].numpy(), array)


@needs_torch
@pytest.mark.skipif(st_numpy is None, reason="the safetensors package is not installed")
def test_minidl_weights_load_in_pytorch_through_safetensors(tmp_path):
    import safetensors.torch

    ours = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    ours[1].running_mean.normal_()
    save(ours.state_dict(), tmp_path / "model.safetensors", format="safetensors")
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                 torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 2))
    theirs.load_state_dict(safetensors.torch.load_file(str(tmp_path / "model.safetensors")))
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    with torch.no_grad():
        expected = theirs.eval()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours.eval()(minidl.tensor(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    # and bfloat16 written by the safetensors package reads as float32
    safetensors.torch.save_file({"b": torch.tensor([1.5, -3.0]).bfloat16()}, str(tmp_path / "bf16.safetensors"))
    np.testing.assert_array_equal(load(tmp_path / "bf16.safetensors")["b"].numpy(), np.float32([1.5, -3.0]))


# =========================================================================== into models
def test_shape_mismatch_names_the_offending_keys(tmp_path):
    save(resnet18(num_classes=10).state_dict(), tmp_path / "resnet18_10.safetensors", format="safetensors")
    with pytest.raises(RuntimeError, match=r"size mismatch for fc\.weight.*\(10, 512\).*\(1000, 512\)") as info:
        resnet18(weights=tmp_path / "resnet18_10.safetensors")
    assert "fc.bias" in str(info.value) and "conv1.weight" not in str(info.value)
    model = resnet18(num_classes=10, weights=str(tmp_path / "resnet18_10.safetensors"))  # the right size loads
    assert model.fc.weight.shape == (10, 512)


def test_key_mismatch_names_missing_and_unexpected_keys(tmp_path):
    state = resnet18(num_classes=10).state_dict()
    state["extra.weight"] = state.pop("layer4.1.bn2.running_var")
    save(state, tmp_path / "renamed.pth")
    with pytest.raises(RuntimeError, match=r'Missing key\(s\).*"layer4\.1\.bn2\.running_var"') as info:
        resnet18(num_classes=10, weights=tmp_path / "renamed.pth")
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in str(info.value)
    with pytest.raises(RuntimeError, match=r'(?s)Missing key\(s\).*"features\.0\.0\.weight".*Unexpected key\(s\).*"fc\.weight"'):
        mobilenet_v3_small(weights=state)  # the wrong architecture altogether
