"""Data-parallel training speed: SegNetSmall on 1 process vs 2 MPI ranks, and when more machines pay off.

    python benchmarks/distributed.py                        # writes benchmarks/results/distributed.{md,json}
    python benchmarks/distributed.py --quick --allow-noisy  # smoke run, not for publication

Runs (each in fresh processes of its own, rounds alternated by benchmarks/harness.py; global batch
--batch images of --size x --size, float32, SGD):

- 1 process, 1 thread                               (the unit of compute)
- 1 process, 2 threads: minidl's fast kernels split the work over them (minidl/kernels/cpu/threads.py)
- 2 ranks x 1 thread: DistributedDataParallel + SyncBatchNorm, batch/2 images each,
  with overlap on and off (mpiexec)
- 2 ranks, communication alone: SegNetSmall's gradients all-reduced one tensor at a
  time vs in DDP's buckets

and reports images/s, bytes all-reduced per step, seconds per step inside collectives,
and a scaling model: with W ranks, each computing b images per step at c seconds per
image, a ring all-reduce of S bytes over a link of bandwidth B and latency a takes

    t_comm(W) = 2 (W - 1) / W * S / B  +  2 (W - 1) * k * a        (k = number of buckets)

so a step takes b c + t_comm (no overlap) and W ranks process W b / (b c + t_comm)
images/s. More machines pay off while t_comm stays small against b c.

The harness's worker runs one measurement (under mpiexec for the 2-rank runs: every rank times its
steps, rank 0 reports); ``--comm-only`` is a worker of this file's own.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import harness

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def threads_env(threads):
    return {**MPI_ENV, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}


# --------------------------------------------------------------------------- one measurement
def setup(case, rank=0, world=1):
    """SegNetSmall (seed 0) and this rank's share of a fixed random batch."""
    import minidl
    from minidl.models import build_model

    minidl.manual_seed(0)
    model = build_model("segnet_small", 23)
    data = np.random.default_rng(0)
    batch, size = case["batch"], case["size"]
    images = data.standard_normal((batch, 3, size, size)).astype(np.float32)[rank::world]
    masks = data.integers(0, 23, (batch, size, size))[rank::world]
    return model, images, masks


def workload(options, case):
    """The harness's entry: one SGD step of SegNetSmall, on one process or as one of the DDP ranks."""
    import minidl
    import minidl.distributed as dist
    import minidl.nn.functional as F
    from minidl.nn import SyncBatchNorm
    from minidl.nn.parallel import DistributedDataParallel

    rank, world = 0, 1
    if options["distributed"]:
        dist.init_process_group()
        rank, world = dist.get_rank(), dist.get_world_size()
    model, images, masks = setup(case, rank, world)
    trained = model
    if options["distributed"]:
        model = SyncBatchNorm.convert_sync_batchnorm(model)
        trained = DistributedDataParallel(model, overlap=options["overlap"])
    optimizer = minidl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = minidl.tensor(images), minidl.tensor(masks)

    def step():
        loss = F.cross_entropy(trained(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    if not options["distributed"]:
        return step

    def before_step():
        dist.barrier()  # start together: a step is as slow as its slowest rank
        dist.reset_communication_stats()

    return harness.Job(step, before_step=before_step, after_step=dist.communication_stats, reports=rank == 0,
                       describe=lambda: {"buckets": len(trained.reducer.buckets)})


def communication_only(model, images, masks, dist, F, DistributedDataParallel, repeats=20):
    """Milliseconds to average SegNetSmall's gradients: per parameter, in DDP's default buckets, in one buffer."""
    import minidl

    F.cross_entropy(model(minidl.tensor(images)), minidl.tensor(masks)).backward()
    grads = [p.grad.numpy() for p in model.parameters()]
    default = DistributedDataParallel(model)  # only for its bucket layout
    layouts = {
        "per parameter": [[i] for i in range(len(grads))],
        "default buckets": [bucket.indices for bucket in default.reducer.buckets],
        "one buffer": [list(range(len(grads)))],
    }
    def average(buckets):
        for bucket in buckets:  # what the reducer does: flatten, all-reduce, unflatten
            flat = dist.collectives.flatten([grads[i] for i in bucket])
            dist.all_reduce(flat, "mean")
            dist.collectives.unflatten_into(flat, [grads[i] for i in bucket])

    samples = {name: [] for name in layouts}
    for _ in range(repeats):  # the layouts in alternation, so that the machine's load hits them alike
        for name, buckets in layouts.items():
            dist.barrier()
            start = time.perf_counter()
            average(buckets)
            samples[name].append(time.perf_counter() - start)
    one_number = np.zeros(1, np.float32)
    latency = []
    for _ in range(10 * repeats):  # the fixed cost of one collective: all-reduce 4 bytes
        start = time.perf_counter()
        dist.all_reduce(one_number)
        latency.append(time.perf_counter() - start)
    results = {"gradient_bytes": int(sum(g.nbytes for g in grads)), "tensors": len(grads),
               "latency_microseconds": 1e6 * min(latency), "median_latency_microseconds": 1e6 * statistics.median(latency)}
    for name, buckets in layouts.items():
        results[name] = {"collectives": len(buckets), "milliseconds": 1000 * min(samples[name]),
                         "median milliseconds": 1000 * statistics.median(samples[name])}
    return results


# --------------------------------------------------------------------------- the driver
def communication_worker(args):
    """``--comm-only`` under mpiexec: the gradient-averaging layouts timed alone; rank 0 prints JSON."""
    import json

    import minidl.distributed as dist
    import minidl.nn.functional as F
    from minidl.nn.parallel import DistributedDataParallel

    dist.init_process_group()
    model, images, masks = setup({"batch": args.batch, "size": args.size}, dist.get_rank(), dist.get_world_size())
    result = communication_only(model, images, masks, dist, F, DistributedDataParallel)
    if dist.get_rank() == 0:
        print(json.dumps(result))


def candidates(mpiexec):
    one = {"library": "minidl", "distributed": False}
    ranks = [mpiexec, "-n", "2", "--oversubscribe"]
    return [
        harness.Candidate("1 process, 1 thread", one, env=threads_env(1), in_process=False),
        harness.Candidate("1 process, 2 threads", one, env=threads_env(2), in_process=False),
        *[harness.Candidate(f"2 ranks x 1 thread (DDP + SyncBatchNorm, {name})",
                            {"library": "minidl", "distributed": True, "overlap": overlap},
                            launcher=tuple(ranks), env=threads_env(1), in_process=False)
          for name, overlap in (("overlap", True), ("no overlap", False))],
    ]


def scaling_rows(compute_per_image, gradient_bytes, buckets, per_rank_batch):
    """Predicted images/s and efficiency for W ranks (machines like this one, one rank each) on some links."""
    links = {  # bandwidth in bytes/s, latency in seconds (typical figures)
        "10 Gbit/s Ethernet": (1.25e9, 50e-6),
        "1 Gbit/s Ethernet": (0.125e9, 50e-6),
        "100 Gbit/s InfiniBand": (12.5e9, 2e-6),
    }
    rows = []
    compute = per_rank_batch * compute_per_image
    for link, (bandwidth, latency) in links.items():
        for world in (2, 4, 8, 16):
            comm = 2 * (world - 1) / world * gradient_bytes / bandwidth + 2 * (world - 1) * buckets * latency
            rows.append({"link": link, "ranks": world, "compute s/step": compute, "all-reduce s/step": comm,
                         "images/s": world * per_rank_batch / (compute + comm),
                         "efficiency": compute / (compute + comm)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comm-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=64, help="images are size x size")
    parser.add_argument("--batch", type=int, default=8, help="global batch (split over the ranks)")
    args = harness.add_arguments(parser, steps=5).parse_args()
    if args.comm_only:
        return communication_worker(args)
    harness.validate(args)
    mpiexec = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if mpiexec is None:
        raise SystemExit("needs mpiexec: pip install 'minidl[distributed]'")
    case = {"name": f"b{args.batch}@{args.size}", "batch": args.batch, "size": args.size}
    session = harness.Session(args, "distributed")
    runs = candidates(mpiexec)
    timings = session.standalone("distributed", runs, [case])[case["name"]]
    comm = json.loads(harness.run_process([mpiexec, "-n", "2", "--oversubscribe", sys.executable, __file__, "--comm-only",
                                           "--size", str(args.size), "--batch", str(args.batch)],
                                          threads_env(1)).stdout.strip().splitlines()[-1])
    base = timings["1 process, 1 thread"]
    rows = []
    for name, timing in timings.items():
        steps = timing.facts.get("steps") or [{}]
        rows.append({"run": name, "images/s": args.batch / timing.median, "s/step": harness.timing_cell(timing),
                     "speed-up": harness.ratio_cell(base, timing),
                     "MB all-reduced/step": steps[0]["bytes"] / 2**20 if "bytes" in steps[0] else None,
                     "collectives/step": steps[0].get("calls"),
                     "s in collectives/step": statistics.median(s["seconds"] for s in steps) if "seconds" in steps[0]
                     else None,
                     "peak RSS MB (rank 0)": timing.summary()["peak_rss_mb"]})
    compute_per_image = base.median / args.batch
    ddp = timings["2 ranks x 1 thread (DDP + SyncBatchNorm, overlap)"].facts
    model_rows = scaling_rows(compute_per_image, comm["gradient_bytes"], ddp["buckets"], args.batch)
    notes = [
        f"SegNetSmall (23 classes), float32, SGD with momentum; global batch {args.batch} of {args.size}x{args.size} "
        "images. OMP/OPENBLAS_NUM_THREADS as stated; ranks start each timed step together (a barrier, untimed).",
        "",
        "Averaging SegNetSmall's gradients between 2 ranks on this machine (communication alone):",
        "",
        "| layout | all-reduces | ms (fastest) | ms (median) |", "|---|---|---|---|",
        *[f"| {name} | {comm[name]['collectives']} | {comm[name]['milliseconds']:.2f} | "
          f"{comm[name]['median milliseconds']:.2f} |"
          for name in ("per parameter", "default buckets", "one buffer")],
        "",
        f"One all-reduce of 4 bytes (the latency a): {comm['latency_microseconds']:.0f} us fastest, "
        f"{comm['median_latency_microseconds']:.0f} us median.",
        "",
        f"Gradients: {comm['tensors']} tensors, {comm['gradient_bytes'] / 2**20:.1f} MB. 'MB all-reduced' counts each "
        "rank's payload (gradient buckets, SyncBatchNorm statistics, buffer broadcasts); a ring all-reduce moves "
        "about 2(W-1)/W times the payload over each link.",
        "",
        f"Scaling model: per rank {args.batch} images per step at c = {compute_per_image:.3f} s/image (this "
        f"machine, one thread), all-reduce of {comm['gradient_bytes'] / 2**20:.1f} MB in {ddp['buckets']} buckets, "
        "t_comm = 2(W-1)/W S/B + 2(W-1) k a:",
        "",
        "| link | ranks | compute s/step | all-reduce s/step | images/s | efficiency |", "|---|---|---|---|---|---|",
        *[f"| {r['link']} | {r['ranks']} | {r['compute s/step']:.2f} | {r['all-reduce s/step']:.4f} | "
          f"{r['images/s']:.1f} | {r['efficiency']:.0%} |" for r in model_rows],
        "",
        "Command: `python benchmarks/distributed.py`.",
    ]
    session.write_report("Data-parallel SegNetSmall training: 1 process vs 2 MPI ranks",
                         ["run", "images/s", "s/step", "speed-up", "MB all-reduced/step", "collectives/step",
                          "s in collectives/step", "peak RSS MB (rank 0)"], rows, notes,
                         {"timings": harness.summaries({case["name"]: timings}), "communication": comm,
                          "scaling_model": model_rows})


if __name__ == "__main__":
    main()
