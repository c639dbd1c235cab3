"""minidl.save to a path: leftovers of killed saves, file modes, symlinks, and errors naming the target.

A killed save is a real one: a child process saving through a writer that hangs after its first
bytes, killed with SIGKILL (nothing runs after it, as on a power loss or the OOM killer).
"""
import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import minidl
from minidl.serialization import load, npz, save
from tests.test_load_bounds import REPOSITORY

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals, modes and flock")

# Save argv[1] through a writer that writes 4 KiB, says "writing" and then hangs.
_HANGING_SAVE = r'''
import sys, time
import minidl
from minidl.serialization import npz


def write_then_hang(arrays, stream):
    stream.write(bytes(4096))
    stream.flush()
    print("writing", flush=True)
    time.sleep(600)


npz.write = write_then_hang
minidl.save({"w": minidl.ones(3)}, sys.argv[1])
'''


def _start_hanging_save(path):
    """A child process in the middle of saving ``path``, and the temporary file it is writing."""
    before = set(os.listdir(path.parent))
    child = subprocess.Popen([sys.executable, "-c", _HANGING_SAVE, str(path)], cwd=REPOSITORY, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline().strip() == "writing"
    (temporary,) = set(os.listdir(path.parent)) - before
    return child, path.parent / temporary


def _age(path, seconds):
    past = time.time() - seconds
    os.utime(path, (past, past))


@posix_only
def test_next_save_removes_stale_temporaries_of_its_target_only(tmp_path):
    target = tmp_path / "ckpt.npz"
    save({"epoch": 1}, target)
    killed, leftover = _start_hanging_save(target)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    alive, in_progress = _start_hanging_save(target)
    try:
        assert leftover.exists() and leftover.name.startswith(".ckpt.npz.") and leftover.name.endswith(".tmp")
        kept = [tmp_path / ".ckpt.npz.notmine.tmp",  # not minidl's naming
                tmp_path / ".other.npz.abcd1234.tmp",  # another target's
                tmp_path / ".ckpt.npz.abcd1234.tmp"]  # minidl's, but touched just now
        for path in kept:
            path.write_bytes(b"x")
        for path in [leftover, in_progress, *kept[:2]]:
            _age(path, 3600)

        save({"epoch": 2}, target)

        assert not leftover.exists()  # the killed save's
        assert in_progress.exists()  # a live save's: locked
        assert all(path.exists() for path in kept)
        assert load(target)["epoch"] == 2  # (and the killed save never touched it)
    finally:
        alive.kill()
        alive.wait()


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664], ids=oct)
def test_saving_again_keeps_the_file_mode(tmp_path, mode):
    target = tmp_path / "ckpt.npz"
    save({"epoch": 1}, target)
    os.chmod(target, mode)
    save({"epoch": 2}, target)
    assert os.stat(target).st_mode & 0o777 == mode and load(target)["epoch"] == 2


@posix_only
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077], ids=oct)
def test_new_file_honours_the_umask_without_changing_it(tmp_path, monkeypatch, umask):
    previous = os.umask(umask)
    try:
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("save changed the process umask"))
        save({"w": minidl.ones(2)}, tmp_path / "new.npz")
        save({"w": minidl.ones(2)}, tmp_path / "new.safetensors", format="safetensors")
    finally:
        monkeypatch.undo()
        os.umask(previous)
    for name in ("new.npz", "new.safetensors"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask


@posix_only
def test_saving_through_a_symlink_writes_its_target(tmp_path):
    (tmp_path / "runs").mkdir()
    real = tmp_path / "runs" / "epoch3.npz"
    save({"epoch": 3}, real)
    os.chmod(real, 0o600)
    link = tmp_path / "latest.npz"
    link.symlink_to(os.path.join("runs", "epoch3.npz"))  # a relative link, resolved from its own folder

    save({"epoch": 4}, link)

    assert link.is_symlink() and os.readlink(link) == os.path.join("runs", "epoch3.npz")
    assert load(real)["epoch"] == 4 and os.stat(real).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path / "runs")) == ["epoch3.npz"]
    dangling = tmp_path / "next.npz"
    dangling.symlink_to(tmp_path / "runs" / "epoch5.npz")
    save({"epoch": 5}, dangling)  # like open(): a link to a missing file creates that file
    assert dangling.is_symlink() and load(tmp_path / "runs" / "epoch5.npz")["epoch"] == 5


def _failing_write(arrays, stream):
    stream.write(b"partial")
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("case", ["folder is a file", "disk full", "target is a folder"])
def test_errors_name_the_target_not_the_temporary_file(tmp_path, monkeypatch, case):
    target = tmp_path / "ckpt.npz"
    if case == "folder is a file":
        (tmp_path / "file").write_bytes(b"")
        target = tmp_path / "file" / "ckpt.npz"
    elif case == "disk full":
        monkeypatch.setattr(npz, "write", _failing_write)
    else:
        target.mkdir()
    with pytest.raises(OSError) as info:
        save({"w": np.ones(2)}, target)
    assert info.value.filename == os.path.realpath(target) and ".tmp" not in str(info.value), info.value
    leftovers = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert leftovers == []
