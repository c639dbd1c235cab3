"""The project's two set-up commands, runnable on a fresh machine with only Python 3.10+.

    python3 tasks.py train    # makes .venv, installs minidl, trains the example on the embedded dataset
    python3 tasks.py test     # makes .venv, installs minidl with its test tools, runs the whole test suite

Anything after the command is passed on (``python3 tasks.py train --epochs 2``,
``python3 tasks.py test -k conv``, ``python3 tasks.py test tests/test_conv.py``). Only the
standard library is used here.
"""
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_environment(extras):
    """Create .venv once and install minidl (editable) with the given extras."""
    if sys.version_info < (3, 10):
        sys.exit(f"minidl needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{'-'.join(sorted(extras))}"
    if not stamp.exists():
        spec = f"{ROOT}[{','.join(extras)}]" if extras else str(ROOT)
        run([str(PYTHON), "-m", "pip", "install", "--quiet", "-e", spec])
        stamp.touch()


def run(command):
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode:
        sys.exit(result.returncode)


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("train", "test"):
        sys.exit(__doc__)
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "train":
        ensure_environment(["examples"])
        run([str(PYTHON), "examples/train_segnet.py", *rest])
    else:
        ensure_environment(["test", "examples"])
        chosen = any((ROOT / arg).exists() for arg in rest)  # test files or folders named: only those
        run([str(PYTHON), "-m", "pytest", *([] if chosen else ["tests"]), *rest])


if __name__ == "__main__":
    main()
