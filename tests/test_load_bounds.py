"""minidl.load against hostile files: each attack of issue 19, built small, refused on minidl's own bounds.

Attacks that cost memory or time run in a child process with an address-space limit
(``run_limited``, also used by the fuzz test): before the fix they ended in a MemoryError (the
child's limit) or a timeout; now each is refused with a CheckpointError saying why, long
before any large allocation. The others -- wrong error types, BUILD on minidl's functions,
types a state_dict never holds -- run here.
"""
import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl.serialization import CheckpointError, load, save, torch_pickle
from tests import torch_format as tf

REPOSITORY = Path(__file__).resolve().parents[1]
needs_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")

# Run in a child: limit its address space to what it uses after the imports plus argv[1] MiB.
LIMIT_ADDRESS_SPACE = r'''
import json, resource, signal, sys, time
import minidl
from minidl.serialization import CheckpointError


def _address_space():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))


_limit = _address_space() + int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (_limit, _limit))
'''

# Load each file argv[3:], each within argv[2] seconds; print one outcome per file, as JSON.
_LOAD_EACH = LIMIT_ADDRESS_SPACE + r'''
def _timeout(*_):
    raise TimeoutError("load took too long")


signal.signal(signal.SIGALRM, _timeout)
outcomes = []
for path in sys.argv[3:]:
    start = time.perf_counter()
    signal.alarm(int(sys.argv[2]))
    try:
        result = minidl.load(path)
        outcome = {"outcome": "loaded", "type": type(result).__name__, "length": len(result)}
    except CheckpointError as error:
        outcome = {"outcome": "CheckpointError", "message": str(error), "cause": type(error.__cause__).__name__}
    except BaseException as error:
        outcome = {"outcome": type(error).__name__, "message": str(error)[:500]}
    signal.alarm(0)
    outcome["seconds"] = time.perf_counter() - start
    outcomes.append(outcome)
print(json.dumps(outcomes))
'''


def run_limited(script, arguments, headroom_mb, timeout):
    """Run ``script`` (starting with LIMIT_ADDRESS_SPACE) in a child with ``headroom_mb`` MiB of address
    space beyond its imports; its stdout, parsed as JSON."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", script, str(headroom_mb), *map(str, arguments)], cwd=REPOSITORY,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


# =========================================================================== building the attacks
def _pickle(*opcodes):
    return pickle.PROTO + b"\x02" + b"".join(opcodes) + pickle.STOP


def _long_binput(index):
    return pickle.LONG_BINPUT + struct.pack("<I", index)


def _list_dag(levels):
    """A pickle of a list holding the previous list twice, ``levels`` deep: 2**levels paths, ~9 bytes a level."""
    opcodes = [pickle.EMPTY_LIST, pickle.BINPUT + b"\x00"]
    for level in range(1, levels + 1):
        previous = pickle.BINGET + bytes([level - 1])
        opcodes += [pickle.EMPTY_LIST, pickle.MARK, previous, previous, pickle.APPENDS, pickle.BINPUT + bytes([level])]
    return _pickle(*opcodes)


def _one_view(numel, size, stride):
    """A PyTorch zip of one tensor viewing a float32 storage of ``numel`` elements."""
    return tf.torch_zip(tf.state_dict_pickle({"w": tf.tensor("0", numel, 0, size, stride)}),
                        {"0": np.ones(numel, np.float32).tobytes()})


_LOCAL = struct.Struct("<4s5H3I2H")  # signature, version, flags, method, time, date, crc, sizes, name and extra lengths
_CENTRAL = struct.Struct("<4s6H3I5H2I")
_END = struct.Struct("<4s4H2IH")


def _local_header(name, data, size=None, method=zipfile.ZIP_STORED, crc=None):
    crc = zlib.crc32(data) if crc is None else crc
    return _LOCAL.pack(b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), len(data) if size is None else size,
                       len(name), 0) + name.encode()


def _raw_zip(body, members):
    """Zip bytes: ``body`` (local headers and data, laid out by the caller -- even inside one another), then a
    central directory of ``members``: (name, local header, data on disk, offset of the local header in body)."""
    central = b""
    for name, header, data, offset in members:
        _, _, flags, method, _, _, crc, compressed, size, _, _ = _LOCAL.unpack(header[:_LOCAL.size])
        central += _CENTRAL.pack(b"PK\x01\x02", 20, 20, flags, method, 0, 0x21, crc, compressed, size, len(name),
                                 0, 0, 0, 0, 0, offset) + name.encode()
    return body + central + _END.pack(b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(body), 0)


def _nested_storages_zip(count, payload_bytes):
    """A PyTorch zip whose ``count`` stored storages each contain the next one (headers, data and all):
    they declare about count * payload_bytes in a file of about payload_bytes."""
    keys = [f"{index:05d}" for index in range(count)]  # 5 characters: every local header is 48 bytes, a float count
    data, headers = b"\x00" * payload_bytes, []
    for key in reversed(keys):  # innermost first: each storage's data is the next header and everything after it
        header = _local_header(f"archive/data/{key}", data)
        headers.insert(0, (key, header, data))
        data = header + data
    entries = OrderedDict((key, tf.tensor(key, len(storage) // 4, 0, [len(storage) // 4], [1]))
                          for key, _, storage in headers)
    pickled = tf.state_dict_pickle(entries)
    pickle_header = _local_header("archive/data.pkl", pickled)
    body = pickle_header + pickled + data
    offset, members = len(pickle_header) + len(pickled), [("archive/data.pkl", pickle_header, pickled, 0)]
    for key, header, storage in headers:
        members.append((f"archive/data/{key}", header, storage, offset))
        offset += len(header)
    return _raw_zip(body, members)


def _deflate_bomb(megabytes):
    """An .npz holding one deflated uint8 array of ``megabytes`` MiB of zeros, about 1000 times smaller on disk.

    The deflate stream repeats one fully flushed block (each such block stands alone), so building
    it costs one compression of 1 MiB.
    """
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (megabytes << 20,)})
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header.getvalue()) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    deflated = head + block * megabytes + compressor.flush()
    crc = zlib.crc32(header.getvalue())
    for _ in range(megabytes):
        crc = zlib.crc32(bytes(1 << 20), crc)
    size = len(header.getvalue()) + (megabytes << 20)
    local = _local_header("w.npy", deflated, size=size, method=zipfile.ZIP_DEFLATED, crc=crc)
    return _raw_zip(local + deflated, [("w.npy", local, deflated, 0)])


ATTACKS = {  # name -> (a function making the file's bytes, what the CheckpointError must say)
    # CPython's unpickler allocates the memo up to the index: 2.3 GB, or 64 GB near 2**32
    "memo index (zip)": (lambda: tf.torch_zip(_pickle(pickle.EMPTY_DICT, _long_binput(150_000_000)), {}),
                         "stores memo entry 150000000 .* while only 0 are in use"),
    "memo index near 2**32 (zip)": (lambda: tf.torch_zip(_pickle(pickle.EMPTY_DICT, _long_binput(2**32 - 2)), {}),
                                    "stores memo entry 4294967294"),
    "memo index (legacy)": (lambda: _pickle(pickle.EMPTY_DICT, _long_binput(150_000_000)),  # 12 bytes
                            "stores memo entry 150000000"),
    # a stride-0 view of one float, and overlapping strides, copy far more than the storage holds
    "stride-0 view": (lambda: _one_view(1, [650_000_000], [0]), "650000000 elements, more than the 1 of storage '0'"),
    "overlapping strides": (lambda: _one_view(30_000, [15_000, 15_000], [1, 1]), "a view larger than its storage"),
    # stored members that each contain the next (Python 3.11's zipfile does not check): 2 MB declared in 36 KB
    "overlapping zip members": (lambda: _nested_storages_zip(64, 32 << 10),
                                "member 'archive/data/00001' overlaps member 'archive/data/00000'"),
    # a deflated .npz member unpacking to 256 MiB from about 260 KB
    "npz deflate bomb": (lambda: _deflate_bomb(256), r"unpack to \d+ bytes, more than 100 times the file's"),
}
DAG_LEVELS = 40


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every attack (and the list DAG) loaded in one child with 128 MiB of address space to spare, 10 s each."""
    folder = tmp_path_factory.mktemp("attacks")
    files = {name: build() for name, (build, _) in ATTACKS.items()}
    files["list DAG"] = tf.torch_zip(_list_dag(DAG_LEVELS), {})
    paths = []
    for index, content in enumerate(files.values()):
        paths.append(folder / f"attack{index}.pth")
        paths[-1].write_bytes(content)
    results = run_limited(_LOAD_EACH, [10, *paths], headroom_mb=128, timeout=120)
    return dict(zip(files, results))


@needs_linux
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_is_refused_within_bounds(outcomes, attack):
    outcome = outcomes[attack]
    assert outcome["outcome"] == "CheckpointError", outcome
    assert outcome["cause"] != "MemoryError", outcome
    assert re.search(ATTACKS[attack][1], outcome["message"]), outcome
    assert outcome["seconds"] < 5, outcome


@needs_linux
def test_list_dag_loads_each_list_once(outcomes):
    """680 bytes of pickle, 2**40 paths: built once per list, in no time."""
    assert outcomes["list DAG"]["outcome"] == "loaded", outcomes["list DAG"]
    assert outcomes["list DAG"]["seconds"] < 5


def test_list_dag_keeps_sharing(tmp_path):
    path = tmp_path / "dag.pth"
    path.write_bytes(tf.torch_zip(_list_dag(5), {}))
    loaded, depth = load(path), 0
    while loaded:
        assert loaded[0] is loaded[1]  # shared in the pickle, shared in the result
        loaded, depth = loaded[0], depth + 1
    assert depth == 5


def test_total_copies_are_bounded_by_the_file(tmp_path):
    """Views each within their storage, but so many that copying them all would exceed the file."""
    storage = np.arange(4096, dtype=np.float32)
    entries = OrderedDict((f"v{index}", tf.tensor("0", 4096, index, [4095], [1])) for index in range(64))
    path = tmp_path / "views.pth"
    path.write_bytes(tf.torch_zip(tf.state_dict_pickle(entries), {"0": storage.tobytes()}))
    with pytest.raises(CheckpointError, match="views copy more bytes than the whole file holds"):
        load(path)


# =========================================================================== BUILD
_REBUILD = tf.global_("torch._utils", "_rebuild_tensor_v2")
_STATES = {
    "slot state": tf.data((None, {"__name__": "pwned"})),
    "dict state": tf.data({"injected": 1}),
}


@pytest.mark.parametrize("state", list(_STATES))
def test_build_never_changes_minidl_functions(tmp_path, state):
    path = tmp_path / "build.pth"
    path.write_bytes(tf.torch_zip(_pickle(_REBUILD, _STATES[state], pickle.BUILD), {}))
    function = torch_pickle._rebuild_tensor
    with pytest.raises(CheckpointError, match=r"build.pth.*sets the state of the function "
                                              r"torch\._utils\._rebuild_tensor_v2 \(BUILD\)"):
        load(path)
    assert function.__name__ == "_rebuild_tensor" and not hasattr(function, "injected")


@pytest.mark.parametrize("target,match", [
    (tf.tensor("0", 1, 0, [1], [1]), "sets the state of a tensor"),
    (tf.global_("torch", "FloatStorage"), r"sets the state of the class torch\.FloatStorage"),
    (tf.call(tf.global_("collections", "OrderedDict")), "sets an OrderedDict's state to a tuple"),
])
def test_build_on_placeholders_is_a_checkpoint_error(tmp_path, target, match):
    path = tmp_path / "build.pth"
    path.write_bytes(tf.torch_zip(_pickle(target, _STATES["slot state"], pickle.BUILD), {"0": bytes(4)}))
    with pytest.raises(CheckpointError, match=match):
        load(path)


def test_opcodes_a_state_dict_never_needs_are_refused(tmp_path):
    path = tmp_path / "newobj.pth"  # OrderedDict.__new__(OrderedDict): harmless, but no state_dict needs it
    path.write_bytes(tf.torch_zip(_pickle(tf.global_("collections", "OrderedDict"), pickle.EMPTY_TUPLE,
                                          pickle.NEWOBJ), {}))
    with pytest.raises(CheckpointError, match=r"newobj.pth.*uses the opcode NEWOBJ \(at byte \d+\)"):
        load(path)


# =========================================================================== every failure a CheckpointError
def _set_zip_field(content, offset, value):
    """``content`` with the 2-byte field at ``offset`` of every local header (2 bytes later in every central
    header, which has one more field first) set to ``value``."""
    data = bytearray(content)
    for signature, shift in ((b"PK\x03\x04", 0), (b"PK\x01\x02", 2)):
        position = data.find(signature)
        while position >= 0:
            struct.pack_into("<H", data, position + offset + shift, value)
            position = data.find(signature, position + 4)
    return bytes(data)


def _valid_files(tmp_path):
    save({"w": minidl.ones(3)}, tmp_path / "valid.npz")
    return {"npz": (tmp_path / "valid.npz").read_bytes(),
            "torch zip": tf.torch_zip(tf.state_dict_pickle({"w": tf.tensor("0", 3, 0, [3], [1])}),
                                      {"0": bytes(12)})}


@pytest.mark.parametrize("kind", ["npz", "torch zip"])
@pytest.mark.parametrize("field,value,match", [
    ("flags", 1, "is encrypted, which minidl does not read"),  # zipfile: RuntimeError
    ("method", 99, r"is compressed \(method 99\)"),  # zipfile: NotImplementedError
    ("method", zipfile.ZIP_BZIP2, r"is compressed \(bzip2\)"),  # zipfile inflates a whole member in one call
    ("version", 99, r"corrupt .*NotImplementedError: zip file version 9.9"),  # zipfile: NotImplementedError
])
def test_zip_features_minidl_does_not_read(tmp_path, kind, field, value, match):
    offsets = {"version": 4, "flags": 6, "method": 8}  # in the local header
    path = tmp_path / "odd.zip"
    path.write_bytes(_set_zip_field(_valid_files(tmp_path)[kind], offsets[field], value))
    with pytest.raises(CheckpointError, match="odd.zip.*" + match):
        load(path)


def _npz_with_record(tmp_path, record):
    path = tmp_path / "record.npz"
    np.savez(path, **{"__minidl_structure__": np.frombuffer(record.encode(), np.uint8)})
    return path


@pytest.mark.parametrize("record,match", [
    ('{"format": "minidl-checkpoint", "version": "1", "root": {"type": "value", "value": 1}}',
     "record's version '1' is not a whole number"),  # was TypeError
    ('{"format": "minidl-checkpoint", "version": 1, "root": ' + "[" * 100_000 + "]" * 100_000 + "}",
     r"structure record is corrupt \(RecursionError"),  # was RecursionError
    ('{"format": "minidl-checkpoint", "version": 1, "root": ' + '{"type": "list", "items": [' * 200
     + "]}" * 200 + "}", "nests deeper than 100 levels"),
    ('{"format": "minidl-checkpoint", "version": 1, "root": {"type": "value", "value": [1, {"a": 2}]}}',
     "does not match its arrays"),
])
def test_npz_structure_records_that_are_not_minidls(tmp_path, record, match):
    with pytest.raises(CheckpointError, match="record.npz.*" + match):
        load(_npz_with_record(tmp_path, record))


# =========================================================================== types a state_dict never holds
@pytest.mark.parametrize("array", [
    np.array(["a", "bc"]), np.array([b"a"]), np.zeros(2, dtype=[("x", "<f4")]), np.zeros(2, np.complex64),
    np.array(["2024-01-01"], dtype="datetime64[D]"), np.array([1], dtype="timedelta64[s]"),
], ids=["str", "bytes", "void", "complex", "datetime", "timedelta"])
def test_npz_arrays_of_types_a_checkpoint_never_holds(tmp_path, array):
    np.savez(tmp_path / "odd.npz", w=array)
    with pytest.raises(CheckpointError, match=r"odd.npz': array 'w' has dtype .*, which a checkpoint never holds"):
        load(tmp_path / "odd.npz")
    with pytest.raises(TypeError, match="arrays can't be saved"):  # nor does minidl.save write them
        save({"w": array}, tmp_path / "mine.npz")


def test_npz_array_header_must_fit_its_bytes(tmp_path):
    """NumPy allocates what a .npy header's shape asks for before reading: minidl checks it first."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (10**8,)})
    with zipfile.ZipFile(tmp_path / "big.npz", "w") as archive:
        archive.writestr("w.npy", member.getvalue() + bytes(16))
    with pytest.raises(CheckpointError, match=r"array 'w' of shape .* does not fit its 16 bytes of data"):
        load(tmp_path / "big.npz")


_TENSOR = tf.tensor("0", 1, 0, [1], [1])


@pytest.mark.parametrize("opcodes,match", [
    (pickle.EMPTY_DICT + _TENSOR + tf.data(1) + pickle.SETITEM, "uses a tensor as a dict key"),
    (pickle.EMPTY_DICT + pickle.MARK + _TENSOR + pickle.TUPLE + tf.data(1) + pickle.SETITEM,
     "uses a tensor as a dict key"),  # (inside a tuple)
    (pickle.EMPTY_SET + pickle.MARK + _TENSOR + pickle.ADDITEMS, "uses a tensor as a dict key or set member"),
    (pickle.MARK + _TENSOR + pickle.FROZENSET, "uses a tensor as a dict key or set member"),
    (pickle.EMPTY_DICT + tf.data("f") + _REBUILD + pickle.SETITEM,
     r"holds the function torch\._utils\._rebuild_tensor_v2, which a checkpoint never holds"),
    (pickle.EMPTY_LIST * 150 + pickle.APPEND * 149, "nests deeper than 100 levels"),
])
def test_pickled_types_a_checkpoint_never_holds(tmp_path, opcodes, match):
    path = tmp_path / "odd.pth"
    path.write_bytes(tf.torch_zip(_pickle(opcodes), {"0": bytes(4)}))
    with pytest.raises(CheckpointError, match="odd.pth.*" + match):
        load(path)


def test_safetensors_header_naming_a_key_twice(tmp_path):
    entry = '{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    header = f'{{"w": {entry}, "w": {entry}}}'.encode()
    path = tmp_path / "twice.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + np.float32([1]).tobytes())
    with pytest.raises(CheckpointError, match="twice.safetensors': its header names 'w' twice"):
        load(path)
