"""minidl.distributed, DistributedDataParallel, SyncBatchNorm and the example's --distributed mode.

The multi-process tests start ``mpiexec -n 2`` in a subprocess and are skipped where mpi4py
or mpiexec is missing (``pip install 'minidl[distributed]'`` brings both). All 2-rank checks
of the library run in one job (tests/distributed/checks.py) because starting MPI costs about a
second; each test below asserts on its part of that job's report.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minidl
import minidl.distributed as dist
from tests.helpers import write_msrc

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "distributed"
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
needs_mpi = pytest.mark.skipif(MPIEXEC is None or not dist.is_available(),
                               reason="needs mpi4py and mpiexec: pip install 'minidl[distributed]'")


def mpiexec(ranks, *arguments, timeout=120):
    """Run ``python ARGUMENTS`` as ``ranks`` MPI processes; return the CompletedProcess."""
    command = [MPIEXEC, "-n", str(ranks)]
    version = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        command.append("--oversubscribe")  # more ranks than cores is fine for tests
    # Open MPI refuses to run as root (containers, CI) unless told it is intended.
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.run(command + [sys.executable, *map(str, arguments)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The 2-rank job's results: {check: {"rank 0": value, "rank 1": value}}."""
    path = tmp_path_factory.mktemp("distributed") / "report.json"
    job = mpiexec(2, HERE / "checks.py", path)
    assert job.returncode == 0, job.stdout + job.stderr
    return json.loads(path.read_text())


def values(report, check):
    entry = report[check]
    assert set(entry) == {"rank 0", "rank 1"}, entry
    return list(entry.values())


# --------------------------------------------------------------------------- collectives
@needs_mpi
@pytest.mark.parametrize("check", [
    "all_reduce sum float64", "all_reduce max float64", "all_reduce min float64", "all_reduce sum int64",
    "all_reduce max int64", "all_reduce min int64", "all_reduce mean float64", "all_reduce of a transposed view",
    "all_reduce async_op", "broadcast from the last rank", "all_gather",
])
def test_collectives_match_numpy(report, check):
    assert values(report, check) == [0.0, 0.0]


@needs_mpi
def test_all_gather_object(report):
    assert values(report, "all_gather_object") == ["rank0,rank1"] * 2


# --------------------------------------------------------------------------- DistributedDataParallel
@needs_mpi
@pytest.mark.parametrize("net", ["no BatchNorm", "SyncBatchNorm"])
def test_two_ranks_with_ddp_equal_one_process_with_the_whole_batch(report, net):
    """3 SGD steps (momentum 0.9), float64; each rank starts from other weights, so the broadcast is tested too."""
    assert max(values(report, f"{net}: parameters vs one process")) < 1e-12
    assert values(report, f"{net}: ranks differ by") == [0.0, 0.0]


@needs_mpi
def test_convert_sync_batchnorm_replaces_every_batchnorm(report):
    assert values(report, "SyncBatchNorm: layers converted") == [2.0, 2.0]


@needs_mpi
@pytest.mark.parametrize("label, buckets", [("one bucket", 1), ("a bucket per parameter", 4), ("1 KB buckets", 2),
                                            ("1 KB buckets without overlap", 2)])
def test_bucketing_gives_the_gradients_of_per_parameter_reduction(report, label, buckets):
    assert values(report, f"bucketing, {label}: buckets") == [buckets, buckets]
    assert values(report, f"bucketing, {label}: vs per-parameter all_reduce") == [0.0, 0.0]


@needs_mpi
def test_no_sync_accumulates_then_averages(report):
    assert max(values(report, "no_sync accumulation vs one process")) < 1e-12


@needs_mpi
def test_different_models_are_an_error_naming_the_first_difference(report):
    for message in values(report, "different models"):
        assert "'0.weight'" in message and "(6, 3, 3, 3)" in message and "(7, 3, 3, 3)" in message


@needs_mpi
def test_unused_parameters_are_named_or_allowed(report):
    for message in values(report, "unused parameter"):
        assert "spare.weight" in message and "find_unused_parameters=True" in message
    assert values(report, "unused parameter allowed: spare gradient") == [0.0, 0.0]


# --------------------------------------------------------------------------- failure
@needs_mpi
def test_a_raising_rank_ends_the_job_within_seconds():
    start = time.perf_counter()
    job = mpiexec(2, HERE / "raising.py", timeout=60)
    seconds = time.perf_counter() - start
    assert job.returncode != 0
    assert seconds < 20, f"took {seconds:.0f} s"
    assert "[rank 1/2] ValueError: rank 1 fails on purpose" in job.stderr, job.stderr
    assert "failure went unnoticed" not in job.stdout


# --------------------------------------------------------------------------- the example
@needs_mpi
def test_train_segnet_distributed_follows_the_one_process_run(tmp_path):
    """Same seeds, global batch 4 as 2 x 2 (SGD: Adam magnifies float32 rounding). Only rank 0 writes."""
    sys.path.insert(0, str(ROOT / "examples"))
    import train_segnet

    common = ["--size", "32", "--train-images", "8", "--val-images", "5", "--batch-size", "4", "--epochs", "1",
              "--optimizer", "sgd", "--lr", "0.01", "--quiet"]
    single = train_segnet.main(common + ["--out", str(tmp_path / "one")])
    job = mpiexec(2, ROOT / "examples" / "train_segnet.py", *common, "--out", tmp_path / "two", "--distributed")
    assert job.returncode == 0, job.stdout + job.stderr
    assert job.stdout.count("final val") == 1  # rank 0 alone prints
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["pixel_accuracy"] == pytest.approx(single["pixel_accuracy"], abs=1e-3)
    assert metrics["history"][0]["val_loss"] == pytest.approx(single["loss"], rel=1e-4)
    one = minidl.load(tmp_path / "one" / "checkpoint_last.npz")["model"]
    two = minidl.load(tmp_path / "two" / "checkpoint_last.npz")["model"]
    for key in one:
        np.testing.assert_allclose(two[key].numpy(), one[key].numpy(), atol=1e-5, err_msg=key)


@needs_mpi
def test_distributed_native_resolution_scores_sum_every_ranks_images(tmp_path):
    """The final evaluation at the labels' own size: 5 val images shared 3 + 2, counted once each."""
    sys.path.insert(0, str(ROOT / "examples"))
    import train_segnet

    root = write_msrc(tmp_path / "msrc", np.random.default_rng(0), val=5)
    common = ["--data", str(root), "--size", "16", "--model", "pixelwise", "--batch-size", "4", "--epochs", "1",
              "--optimizer", "sgd", "--lr", "0.01", "--quiet"]
    single = train_segnet.main(common + ["--out", str(tmp_path / "one")])
    job = mpiexec(2, ROOT / "examples" / "train_segnet.py", *common, "--out", tmp_path / "two", "--distributed")
    assert job.returncode == 0, job.stdout + job.stderr
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["resolution"] == "native"
    for key, returned in [("pixel_accuracy", "pixel_accuracy"), ("mean_iou", "mean_iou")]:
        assert metrics[key] == pytest.approx(single["native"][returned], abs=1e-3)
        assert metrics["at_training_size"][key] == pytest.approx(single[returned], abs=1e-3)


@needs_mpi
def test_distributed_lazy_recipe_freezes_then_unfreezes_like_the_one_process_run(tmp_path):
    """--weights + --unfreeze-after under mpiexec: DDP is rebuilt when the trainable set changes, and the
    frozen part (SyncBatchNorm statistics included) stays bit-identical while it is frozen."""
    sys.path.insert(0, str(ROOT / "examples"))
    import train_segnet

    common = ["--size", "32", "--train-images", "8", "--val-images", "4", "--batch-size", "4", "--optimizer", "sgd",
              "--lr", "0.01", "--quiet"]
    train_segnet.main(common + ["--model", "segnet", "--epochs", "1", "--out", str(tmp_path / "pretrained")])
    pretrained = tmp_path / "pretrained" / "checkpoint_last.npz"
    lazy = common + ["--model", "lazy_segnet", "--weights", str(pretrained), "--unfreeze-after", "1"]
    train_segnet.main(lazy + ["--epochs", "1", "--out", str(tmp_path / "one_frozen")])
    train_segnet.main(lazy + ["--epochs", "2", "--out", str(tmp_path / "one")])
    for epochs, out in [("1", "two_frozen"), ("2", "two")]:
        job = mpiexec(2, ROOT / "examples" / "train_segnet.py", *lazy, "--epochs", epochs, "--out", tmp_path / out,
                      "--distributed")
        assert job.returncode == 0, job.stdout + job.stderr
    start = minidl.load(pretrained)["model"]
    frozen = minidl.load(tmp_path / "two_frozen" / "checkpoint_last.npz")["model"]
    for key in start:  # epoch 1 trained the output layer alone, on both ranks
        if not key.startswith("classifier."):
            np.testing.assert_array_equal(frozen[key].numpy(), start[key].numpy(), err_msg=key)
    assert not np.array_equal(frozen["classifier.weight"].numpy(), start["classifier.weight"].numpy())
    for a, b in [("one_frozen", "two_frozen"), ("one", "two")]:
        one = minidl.load(tmp_path / a / "checkpoint_last.npz")["model"]
        two = minidl.load(tmp_path / b / "checkpoint_last.npz")["model"]
        for key in one:
            np.testing.assert_allclose(two[key].numpy(), one[key].numpy(), atol=1e-5, err_msg=f"{b}: {key}")
    moved = minidl.load(tmp_path / "two" / "checkpoint_last.npz")["model"]
    assert not np.array_equal(moved["encoders.0.0.0.weight"].numpy(), start["encoders.0.0.0.weight"].numpy())


# --------------------------------------------------------------------------- without MPI
def test_sampler_shards_are_disjoint_and_cover_the_epoch_for_odd_sizes():
    for size, ranks in [(10, 3), (7, 2), (5, 4), (2, 3), (11, 1)]:
        shards = [dist.DistributedSampler(range(size), num_replicas=ranks, rank=r, seed=3) for r in range(ranks)]
        everything = np.concatenate([s.indices() for s in shards])
        assert {len(s) for s in shards} == {-(-size // ranks)}  # equal lengths: ceil(size / ranks)
        assert set(everything.tolist()) == set(range(size))  # complete
        assert len(everything) - size == (-size) % ranks  # only the padding repeats
        dropped = [dist.DistributedSampler(range(size), ranks, r, seed=3, drop_last=True).indices() for r in range(ranks)]
        kept = np.concatenate(dropped)
        assert len(kept) == len(set(kept.tolist())) == size // ranks * ranks  # disjoint


def test_sampler_follows_pytorch_padding_and_reshuffles_with_set_epoch():
    shards = [list(dist.DistributedSampler(range(10), 3, r, shuffle=False)) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]  # padded with the start of the order
    sampler = dist.DistributedSampler(range(100), 2, 0, seed=5)
    first = sampler.indices()
    sampler.set_epoch(1)
    assert not np.array_equal(first, sampler.indices())
    sampler.set_epoch(0)
    np.testing.assert_array_equal(first, sampler.indices())


def test_without_mpi4py_asking_for_distribution_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if it were not installed
    assert not dist.is_available()
    with pytest.raises(RuntimeError, match=r"pip install 'minidl\[distributed\]'"):
        dist.init_process_group()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()


def test_sync_batchnorm_without_a_process_group_is_batchnorm():
    minidl.manual_seed(0)
    x = minidl.randn(4, 3, 5, 5, dtype=minidl.float64)
    plain = minidl.nn.BatchNorm2d(3).double()
    synced = minidl.nn.SyncBatchNorm.convert_sync_batchnorm(minidl.nn.Sequential(minidl.nn.BatchNorm2d(3).double()))
    np.testing.assert_array_equal(synced(x).detach().numpy(), plain(x).detach().numpy())
    assert isinstance(synced[0], minidl.nn.SyncBatchNorm)
    np.testing.assert_array_equal(synced[0].running_mean.numpy(), plain.running_mean.numpy())
