"""benchmarks/gpu_check.sh and its helper, tested as far as a machine without a GPU can: the script's
syntax, arguments, plan and CamVid packing; gpu_train_step.py's code on the strict CuPy stand-in."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .helpers import needs_torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def run_script(*args, **env):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, **env}, timeout=60)


def fake_camvid(root, images=3):
    for split in ("train", "val"):
        for folder in (split, f"{split}annot"):
            (root / folder).mkdir(parents=True)
        for i in range(images):
            Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / split / f"f{i}.png")
            Image.fromarray(np.zeros((6, 8), np.uint8)).save(root / f"{split}annot" / f"f{i}.png")
    return root


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    camvid = fake_camvid(tmp_path / "camvid")
    done = run_script("--dry-run", "--results", str(tmp_path / "results"), "--camvid", str(camvid), "--camvid-steps", "5")
    assert done.returncode == 0, done.stderr
    for expected in ["MINIDL_TEST_CUDA=gpu", "gpu_train_step.py", f"{camvid} (3 train, 3 val images)", "--size 480x360",
                     "--model segnet_basic --class-weights median --device cuda", "--max-steps 5", "dry run: nothing was run"]:
        assert expected in done.stdout, expected
    assert not (tmp_path / "results").exists()


def test_absent_camvid_is_announced_as_skipped(tmp_path):
    done = run_script("--dry-run", "--camvid", str(tmp_path / "nowhere"))
    assert done.returncode == 0 and f"absent at {tmp_path / 'nowhere'}" in done.stdout and "skipped" in done.stdout


def test_results_default_to_the_device_tools_out_folder(tmp_path):
    assert f"results:    {tmp_path}/gpu_check" in run_script("--dry-run", OUT=str(tmp_path)).stdout


@pytest.mark.parametrize("args, message", [(["--camvid-steps", "0"], "positive whole number"),
                                           (["--frobnicate"], "unknown argument"), (["--results"], "needs a folder")])
def test_bad_arguments_are_refused(args, message):
    done = run_script(*args)
    assert done.returncode == 2 and message in done.stderr


def test_pack_camvid_copies_a_subset_with_its_annotations(tmp_path):
    source = fake_camvid(tmp_path / "camvid", images=5)
    done = run_script("--pack-camvid", str(source), "--pack-images", "4", "--pack-into", str(tmp_path / "packed"))
    assert done.returncode == 0, done.stderr
    packed = tmp_path / "packed"
    assert sorted(p.name for p in (packed / "train").iterdir()) == ["f0.png", "f1.png", "f2.png", "f3.png"]
    assert len(list((packed / "trainannot").iterdir())) == 4 and len(list((packed / "valannot").iterdir())) == 1
    assert run_script("--pack-camvid", str(tmp_path / "packed" / "train")).returncode == 2  # not CamVid's layout


@needs_torch
def test_train_step_helper_on_the_stand_in(tmp_path, cuda):
    """The helper's code on "cuda" (the stand-in without a GPU), PyTorch on the CPU: figures of the right kinds."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_train_step

    figures = gpu_train_step.main(["--batch", "1", "--size", "16", "--steps", "1", "--warmup", "0", "--device", cuda,
                                   "--torch-device", "cpu", "--out", str(tmp_path / "step.json")])
    assert figures["first loss relative difference"] < 1e-5 and figures["minidl device"] == "cuda:0"
    assert figures["time ratio (minidl/torch)"] > 0 and figures["minidl peak device bytes"] > 0
    assert json.loads((tmp_path / "step.json").read_text()) == figures
