"""Fuzzing minidl.load: every load of a damaged file returns a valid state_dict or raises CheckpointError.

Valid files of every format minidl reads (.npz from minidl.save, np.savez and np.savez_compressed;
PyTorch zip and legacy files made by hand and, where installed, by torch.save; safetensors)
are damaged at random -- truncated, bytes flipped, integers overwritten with boundary values,
spans duplicated -- and structurally: a zip header field, or one member's content rewritten
with valid CRCs (a pickle opcode or argument, a .npy header's shape or dtype, a JSON record),
a legacy file's pickles and storage counts, a safetensors header's JSON.

The loads run in a child process whose address space is limited to what it uses after its
imports plus ``HEADROOM_MB``, each load within ``SECONDS_PER_LOAD``. Anything else than a
valid result or a CheckpointError -- a MemoryError, a timeout, a TypeError escaping, a str
array or a bare storage coming back -- fails the test, naming the mutation and keeping the
file (``fuzz-failures/`` in the test's temporary folder).

``MINIDL_FUZZ_ITERATIONS`` (default 1000: about 1.5 s, plus 1 s to start the child) and ``MINIDL_FUZZ_SEED`` (default 19)
choose the run; e.g. ``MINIDL_FUZZ_ITERATIONS=100000`` for a long one.
"""
import io
import json
import os
import pickle
import pickletools
import random
import signal
import time
import warnings
import zipfile
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np

import minidl
from minidl.serialization import CheckpointError, save
from tests import torch_format as tf
from tests.test_load_bounds import LIMIT_ADDRESS_SPACE, needs_linux, run_limited

ITERATIONS = int(os.environ.get("MINIDL_FUZZ_ITERATIONS", "1000"))
SEED = int(os.environ.get("MINIDL_FUZZ_SEED", "19"))
HEADROOM_MB = 256  # a damaged zip may declare up to limits.MIN_BUDGET (64 MiB) of compressed members
SECONDS_PER_LOAD = 10

BOUNDARY_INTEGERS = [0, 1, 2, 3, 7, 8, 255, 256, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**32,
                     2**62, 2**63 - 1, 2**64 - 1]
DTYPE_DESCRIPTORS = ["<f4", ">f4", "<f8", "|b1", "<i8", "<u2", "<f2", "<c8", "|O", "<U3", "|S2", "|V4", "<M8[s]",
                     "<m8[s]", [("a", "<f4")], "<f16"]
SAFETENSORS_CODES = ["F32", "F16", "BF16", "F64", "I64", "I8", "U8", "BOOL", "U16", "C64", "F8_E4M3", "", 7]
FORMATS = ["npz", "torch_zip", "torch_legacy", "safetensors"]


# =========================================================================== the valid files
def _state_dict():
    rng = np.random.default_rng(0)
    return OrderedDict([("conv.weight", minidl.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))),
                        ("conv.bias", minidl.tensor(np.arange(4, dtype=np.float32))),
                        ("bn.running_var", minidl.tensor(np.ones(4, np.float16))),
                        ("bn.num_batches_tracked", minidl.tensor(np.array(3, np.int64))),
                        ("mask", minidl.tensor(np.array([True, False])))])


def _torch_zip_by_hand():
    """Views into one shared storage, two dtypes, a nested checkpoint with numbers, a tuple and a set."""
    base = np.arange(24, dtype=np.float32)
    model = OrderedDict([("whole", tf.tensor("0", 24, 0, [4, 6], [6, 1])),
                         ("transposed", tf.tensor("0", 24, 0, [6, 4], [1, 6])),
                         ("broadcast", tf.tensor("0", 24, 3, [2, 3], [0, 1])),
                         ("ints", tf.tensor("1", 3, 0, [3], [1], "LongStorage"))])
    body = (tf.data("model") + tf.state_dict_pickle(model)[2:-1] + tf.data("epoch") + tf.data(7)
            + tf.data("history") + tf.data((0.5, "x", None)) + tf.data("tags") + pickle.EMPTY_SET + pickle.MARK
            + tf.data(1) + tf.data("a") + pickle.ADDITEMS)
    pickled = pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK + body + pickle.SETITEMS + pickle.STOP
    return tf.torch_zip(pickled, {"0": base.tobytes(), "1": np.arange(3, dtype=np.int64).tobytes()})


def _torch_legacy_by_hand():
    arrays = {"w": np.arange(6, dtype=np.float32), "b": np.ones(2, np.float64)}
    codes = {"float32": "FloatStorage", "float64": "DoubleStorage"}
    entries = OrderedDict((key, tf.contiguous(key, array, codes[array.dtype.name])) for key, array in arrays.items())
    return tf.torch_legacy(tf.state_dict_pickle(entries), {k: a.tobytes() for k, a in arrays.items()},
                           {k: a.size for k, a in arrays.items()})


def _by_torch():
    """Files written by torch.save itself (zip, zip with pickle protocol 4, legacy), where torch is installed."""
    try:
        import torch
    except ImportError:
        return {}
    base = torch.arange(12, dtype=torch.float32)
    state = OrderedDict([("w", torch.randn(2, 3)), ("view", base[2:8].view(2, 3)), ("t", base.view(3, 4).t()),
                         ("h", torch.ones(3).half()), ("b", torch.tensor([1.0, 2.0]).bfloat16())])
    files = {}
    for name, options in {"torch_zip-torch": {}, "torch_zip-protocol4": {"pickle_protocol": 4},
                          "torch_legacy-torch": {"_use_new_zipfile_serialization": False}}.items():
        buffer = io.BytesIO()
        torch.save(state, buffer, **options)
        files[name] = buffer.getvalue()
    return files


def valid_files(folder):
    """name -> bytes of every seed file; a name starts with its format."""
    files = {"torch_zip-hand": _torch_zip_by_hand(), "torch_legacy-hand": _torch_legacy_by_hand(), **_by_torch()}
    state = _state_dict()
    checkpoint = {"model": state, "optimizer": {"state": {0: {"step": 3, "exp_avg": minidl.ones(2)}},
                                                "param_groups": [{"lr": 0.1, "params": [0]}]},
                  "epoch": 2, "history": [0.5, None, "x", (1, 2.5)], "array": np.arange(3, dtype=np.uint16)}
    for name, write in {"npz-checkpoint": lambda path: save(checkpoint, path),
                        "npz-savez": lambda path: np.savez(path, **{k: v.numpy() for k, v in state.items()}),
                        "npz-compressed": lambda path: np.savez_compressed(path, **{k: v.numpy() for k, v in state.items()}),
                        "safetensors-state": lambda path: save(state, path, format="safetensors")}.items():
        write(folder / name)
        files[name] = (folder / (name + ".npz" if name in ("npz-savez", "npz-compressed") else name)).read_bytes()
    return files


# =========================================================================== damaging them
def _truncate(rng, data):
    cut = rng.randrange(len(data))
    return f"truncated at {cut}", data[:cut]


def _flip(rng, data):
    data, where = bytearray(data), []
    for _ in range(rng.randint(1, 4)):
        where.append(rng.randrange(len(data)))
        data[where[-1]] = rng.randrange(256)
    return f"bytes set at {where}", bytes(data)


def _set_integer(rng, data):
    width = rng.choice([1, 2, 4, 8])
    if len(data) < width:
        return _flip(rng, data)
    where, value = rng.randrange(len(data) - width + 1), rng.choice(BOUNDARY_INTEGERS + [len(data)])
    data = bytearray(data)
    data[where:where + width] = (value % 256**width).to_bytes(width, "little")
    return f"{width}-byte integer {value} at {where}", bytes(data)


def _splice(rng, data):
    begin = rng.randrange(len(data))
    end, to = min(len(data), begin + rng.randint(1, 64)), rng.randrange(len(data))
    return f"bytes [{begin}, {end}) copied to {to}", data[:to] + data[begin:end] + data[to:]


RAW_MUTATIONS = [_truncate, _flip, _set_integer, _splice]


def _raw(rng, data):
    if not data:
        return "empty, left empty", data
    return rng.choice(RAW_MUTATIONS)(rng, data)


def _mutate_pickle(rng, data):
    """One opcode changed, removed, doubled, or its argument overwritten."""
    positions = [position for _, _, position in pickletools.genops(data)] + [len(data)]
    index = rng.randrange(len(positions) - 1)
    begin, end = positions[index], positions[index + 1]
    kind = rng.choice(["opcode", "argument", "delete", "double"])
    if kind == "opcode":
        code = rng.choice(pickletools.opcodes).code.encode("latin-1")
        return f"opcode {index} replaced by {code!r}", data[:begin] + code + data[begin + 1:]
    if kind == "argument" and end - begin > 1:
        description, argument = _set_integer(rng, data[begin + 1:end])
        return f"opcode {index}'s argument: {description}", data[:begin + 1] + argument + data[end:]
    if kind == "delete":
        return f"opcode {index} deleted", data[:begin] + data[end:]
    return f"opcode {index} doubled", data[:end] + data[begin:end] + data[end:]


def _mutate_json(rng, value):
    """A copy of the JSON value with one number, string, list or object changed."""
    places = []  # (container, key) of every value inside

    def walk(node):
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            places.append((node, key))
            walk(child)

    value = json.loads(json.dumps(value))
    walk(value)
    if not places:
        return "replaced by a list", [value]
    container, key = rng.choice(places)
    old = container[key]
    new = rng.choice([rng.choice(BOUNDARY_INTEGERS), -rng.choice(BOUNDARY_INTEGERS), 0.5, "x", None, True, [], {},
                      [old, old], rng.choice(SAFETENSORS_CODES), {"type": "list", "items": [old]}])
    container[key] = new
    return f"{key!r} = {new!r:.60} (was {old!r:.60})", value


def _mutate_npy(rng, member):
    """A .npy with its header's shape, dtype or order changed (the data as it was), or its bytes damaged."""
    stream = io.BytesIO(bytes(member))
    version = np.lib.format.read_magic(stream)
    shape, fortran, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                             else np.lib.format.read_array_header_2_0)(stream)
    data = member[stream.tell():]
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": shape}
    field = rng.choice(["shape", "descr", "fortran_order", "data", "record"])
    if field == "shape":
        header["shape"] = tuple(rng.choice(BOUNDARY_INTEGERS + [-1, 2, 4]) for _ in range(rng.randint(0, 3)))
    elif field == "descr":
        header["descr"] = rng.choice(DTYPE_DESCRIPTORS)
    elif field == "fortran_order":
        header["fortran_order"] = not fortran
    elif field == "record" and dtype == np.uint8 and data[:1] == b"{":  # minidl's structure record
        description, record = _mutate_json(rng, json.loads(bytes(data)))
        out = io.BytesIO()
        np.lib.format.write_array(out, np.frombuffer(json.dumps(record).encode(), np.uint8))
        return f"structure record: {description}", out.getvalue()
    else:
        description, data = _raw(rng, bytes(data))
        return f"array data: {description}", bytes(member[:stream.tell()]) + data
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return f"npy header {field} = {header[field]!r}", out.getvalue() + bytes(data)


def _mutate_member(rng, name, content):
    if name.endswith(".pkl"):
        return _mutate_pickle(rng, content)
    if name.endswith(".npy"):
        return _mutate_npy(rng, content)
    return _raw(rng, content)


def _rezip(rng, data):
    """The zip rewritten (valid CRCs) with one member's content changed, or a member dropped, doubled or renamed."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    index = rng.randrange(len(members))
    info, content = members[index]
    kind = rng.choice(["content"] * 6 + ["drop", "double", "rename"])
    if kind == "content":
        description, content = _mutate_member(rng, info.filename, content)
        members[index] = (info, content)
    elif kind == "drop":
        del members[index]
    elif kind == "double":
        members.insert(index, (info, content))
    else:
        renamed = zipfile.ZipInfo(rng.choice(["data.pkl", "x/data.pkl", info.filename + "x", "a.txt", "b.npy"]))
        renamed.compress_type = info.compress_type
        members[index] = (renamed, content)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # "Duplicate name"
        for member_info, member_content in members:
            archive.writestr(member_info, member_content, compress_type=member_info.compress_type)
    what = description if kind == "content" else kind
    return f"member {info.filename!r}: {what}", buffer.getvalue()


_ZIP_FIELDS = {b"PK\x03\x04": [(4, 2), (6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)],
               b"PK\x01\x02": [(6, 2), (8, 2), (10, 2), (20, 4), (24, 4), (28, 2), (30, 2), (42, 4)],
               b"PK\x05\x06": [(8, 2), (10, 2), (12, 4), (16, 4), (20, 2)]}


def _zip_header(rng, data):
    """One field of one local header, central directory entry or end record set to a boundary value."""
    places = [(position, field) for signature, fields in _ZIP_FIELDS.items()
              for position in _find_all(data, signature) for field in fields]
    (position, (offset, width)) = rng.choice(places)
    value = rng.choice(BOUNDARY_INTEGERS + [len(data), position]) % 256**width
    data = bytearray(data)
    data[position + offset:position + offset + width] = value.to_bytes(width, "little")
    return f"zip field at {position}+{offset} = {value}", bytes(data)


def _find_all(data, signature):
    position = data.find(signature)
    while position >= 0:
        yield position
        position = data.find(signature, position + 1)


def _legacy(rng, data):
    """One of the five pickles of a legacy file changed, or the first storage's element count."""
    stream, bounds = io.BytesIO(data), [0]
    for _ in range(5):
        for _ in pickletools.genops(stream):  # (read through, never run)
            pass
        bounds.append(stream.tell())
    which = rng.randrange(6)
    if which == 5:
        description, count = _set_integer(rng, data[bounds[5]:bounds[5] + 8])
        return f"storage count: {description}", data[:bounds[5]] + count + data[bounds[5] + 8:]
    description, part = _mutate_pickle(rng, data[bounds[which]:bounds[which + 1]])
    return f"pickle {which}: {description}", data[:bounds[which]] + part + data[bounds[which + 1]:]


def _safetensors_header(rng, data):
    """The JSON header changed (its length kept right), or a key given twice."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    if rng.random() < 0.2:
        key = rng.choice(list(header))
        text = json.dumps(header)[:-1] + f", {json.dumps(key)}: {json.dumps(header[key])}}}"
        description = f"key {key!r} twice"
    else:
        description, header = _mutate_json(rng, header)
        text = json.dumps(header)
    text = text.encode()
    return f"header: {description}", len(text).to_bytes(8, "little") + text + data[8 + length:]


STRUCTURAL_MUTATIONS = {"npz": [_rezip, _zip_header], "torch_zip": [_rezip, _zip_header],
                        "torch_legacy": [_legacy], "safetensors": [_safetensors_header]}


def mutate(rng, format_, data):
    """(a description, the damaged bytes): half the time a raw mutation, half a structural one."""
    if rng.random() < 0.5:
        return _raw(rng, data)
    return rng.choice(STRUCTURAL_MUTATIONS[format_])(rng, data)


# =========================================================================== what a load may return
_LEAVES = (type(None), bool, int, float, str, bytes)


def invalid_part(obj, seen=None):
    """None when ``obj`` is what a state_dict or checkpoint holds, else what is wrong (walked once per object)."""
    seen = set() if seen is None else seen
    if type(obj) in _LEAVES or id(obj) in seen:
        return None
    seen.add(id(obj))
    if isinstance(obj, minidl.Tensor):
        obj = obj.numpy()
    if isinstance(obj, (np.ndarray, np.generic)):
        ok = obj.dtype.kind in "biuf" and obj.dtype.isnative
        return None if ok else f"an array of dtype {obj.dtype}"
    if type(obj) in (dict, OrderedDict):
        children = [*obj.values()]
        keys = list(obj)
    elif type(obj) in (list, tuple, set, frozenset):
        children, keys = list(obj), list(obj) if type(obj) in (set, frozenset) else []
    else:
        return f"a {type(obj).__name__}"
    for key in keys:
        if not _plain(key):
            return f"a key or set member {key!r:.80}"
    return next((problem for child in children if (problem := invalid_part(child, seen))), None)


def _plain(value):
    return type(value) in _LEAVES or (type(value) in (tuple, frozenset) and all(map(_plain, value)))


# =========================================================================== the run (in the child)
def _timeout(*_):
    raise TimeoutError(f"a load took more than {SECONDS_PER_LOAD} s")


def load_outcome(data, scratch, by_path):
    """'loaded', 'refused', or what went wrong, loading ``data`` from memory or from a file."""
    signal.alarm(SECONDS_PER_LOAD)
    try:
        if by_path:
            scratch.write_bytes(data)
        result = minidl.load(scratch if by_path else io.BytesIO(data))
        problem = invalid_part(result)
        return "loaded" if problem is None else f"loaded {problem}"
    except CheckpointError as error:
        return "refused" if scratch.name in str(error) or not by_path else f"refused without naming the file: {error}"
    except BaseException as error:  # MemoryError, TimeoutError, anything escaping
        return f"{type(error).__name__}: {str(error)[:300]}"
    finally:
        signal.alarm(0)


def fuzz_in_child(folder, iterations, seed):
    """Load ``iterations`` damaged files; print a JSON summary: outcomes by format, failures, time."""
    folder, rng = Path(folder), random.Random(seed)
    seeds = sorted((path.name, path.read_bytes()) for path in folder.glob("seed-*"))
    signal.signal(signal.SIGALRM, _timeout)
    counts, failures, start = Counter(), [], time.perf_counter()
    for iteration in range(iterations):
        name, data = seeds[iteration % len(seeds)]
        format_ = name[len("seed-"):].split("-")[0]
        description, damaged = mutate(rng, format_, data)
        outcome = load_outcome(damaged, folder / "scratch.bin", by_path=iteration % 2 == 1)
        category = outcome if outcome in ("loaded", "refused") else "FAILED"
        counts[f"{format_}: {category}"] += 1
        if category == "FAILED":
            kept = folder / "fuzz-failures" / f"{iteration}-{name}"
            kept.parent.mkdir(exist_ok=True)
            kept.write_bytes(damaged)
            failures.append({"file": str(kept), "mutation": description, "outcome": outcome})
    print(json.dumps({"counts": counts, "failures": failures[:20], "seconds": time.perf_counter() - start}))


_CHILD = "from tests.test_load_fuzz import fuzz_in_child\n" + LIMIT_ADDRESS_SPACE + \
    "fuzz_in_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))\n"


@needs_linux
def test_damaged_files_load_or_raise_checkpoint_error(tmp_path):
    seeds = valid_files(tmp_path)
    assert {name.split("-")[0] for name in seeds} == set(FORMATS)
    for name, content in seeds.items():
        assert invalid_part(minidl.load(io.BytesIO(content))) is None, name  # the seeds themselves load
        (tmp_path / f"seed-{name}").write_bytes(content)
    summary = run_limited(_CHILD, [tmp_path, ITERATIONS, SEED], headroom_mb=HEADROOM_MB,
                          timeout=60 + ITERATIONS * SECONDS_PER_LOAD / 20)
    assert summary["failures"] == [], json.dumps(summary, indent=1)
    counts = summary["counts"]
    for format_ in FORMATS:  # every format damaged, and not every damage fatal: the checks don't refuse everything
        assert counts.get(f"{format_}: refused", 0) > 0, counts
    assert sum(n for key, n in counts.items() if key.endswith("loaded")) > 0, counts
