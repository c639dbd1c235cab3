"""Data-parallel training speed: SegNetSmall on 1 process vs 2 MPI ranks, and when more machines pay off.

    python benchmarks/distributed.py            # under two minutes; writes benchmarks/results/distributed.{md,json}

Runs (each a fresh process, global batch --batch images of --size x --size, float32, SGD):

- 1 process, 1 thread                               (the unit of compute)
- 1 process, 2 threads: minidl's convolutions split the batch over them (minidl/threads.py)
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

``--worker`` runs one measurement (the driver starts it, under mpiexec for the 2-rank runs).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- one measurement (--worker)
def worker(args):
    import minidl
    import minidl.distributed as dist
    import minidl.nn.functional as F
    from minidl.models import build_model
    from minidl.nn import SyncBatchNorm
    from minidl.nn.parallel import DistributedDataParallel

    rank, world = 0, 1
    if args.distributed:
        dist.init_process_group()
        rank, world = dist.get_rank(), dist.get_world_size()
    minidl.manual_seed(0)
    model = build_model("segnet_small", 23)
    data = np.random.default_rng(0)
    images = data.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)[rank::world]
    masks = data.integers(0, 23, (args.batch, args.size, args.size))[rank::world]

    if args.comm_only:
        return print(json.dumps(communication_only(model, images, masks, dist, F, DistributedDataParallel)))

    trained = model
    if args.distributed:
        model = SyncBatchNorm.convert_sync_batchnorm(model)
        trained = DistributedDataParallel(model, overlap=not args.no_overlap)
    optimizer = minidl.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = minidl.tensor(images), minidl.tensor(masks)

    def step():
        loss = F.cross_entropy(trained(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    times, stats = [], []
    for _ in range(args.steps):
        if args.distributed:
            dist.barrier()  # start together: a step is as slow as its slowest rank
            dist.reset_communication_stats()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        if args.distributed:
            stats.append(dist.communication_stats())
    if rank == 0:
        seconds = min(times)  # the machine is shared: the fastest step is the least disturbed one
        result = {"seconds_per_step": seconds, "images_per_second": args.batch / seconds}
        if stats:
            result.update(comm_seconds=min(s["seconds"] for s in stats), comm_bytes=stats[0]["bytes"],
                          collectives=stats[0]["calls"], buckets=len(trained.reducer.buckets))
        print(json.dumps(result))


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
def run(command, threads, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--comm-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-overlap", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=64, help="images are size x size")
    parser.add_argument("--batch", type=int, default=8, help="global batch (split over the ranks)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run (the fastest is reported)")
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from common import write_report  # (imports torch, which the workers do not need)

    mpiexec = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if mpiexec is None:
        raise SystemExit("needs mpiexec: pip install 'minidl[distributed]'")
    this = [sys.executable, str(Path(__file__).resolve()), "--worker", "--size", str(args.size),
            "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    two_ranks = [mpiexec, "-n", "2", "--oversubscribe"] + this + ["--distributed"]
    runs = {
        "1 process, 1 thread": run(this, 1),
        "1 process, 2 threads": run(this, 2),
        "2 ranks x 1 thread (DDP + SyncBatchNorm, overlap)": run(two_ranks, 1),
        "2 ranks x 1 thread (DDP + SyncBatchNorm, no overlap)": run(two_ranks + ["--no-overlap"], 1),
    }
    comm = run(two_ranks + ["--comm-only"], 1)
    base = runs["1 process, 1 thread"]["images_per_second"]
    rows = []
    for name, result in runs.items():
        rows.append({"run": name, "images/s": result["images_per_second"], "s/step": result["seconds_per_step"],
                     "speed-up": result["images_per_second"] / base,
                     "MB all-reduced/step": result.get("comm_bytes", 0) / 2**20 if "comm_bytes" in result else None,
                     "collectives/step": result.get("collectives"),
                     "s in collectives/step": result.get("comm_seconds")})
    compute_per_image = 1 / base
    ddp = runs["2 ranks x 1 thread (DDP + SyncBatchNorm, overlap)"]
    model_rows = scaling_rows(compute_per_image, comm["gradient_bytes"], ddp["buckets"], args.batch)
    notes = [
        f"SegNetSmall (23 classes), float32, SGD with momentum; global batch {args.batch} of {args.size}x{args.size} "
        f"images; fastest of {args.steps} steps after {args.warmup} warm-up. OMP/OPENBLAS_NUM_THREADS as stated. "
        f"Load average at the end: {os.getloadavg()[0]:.1f} (the machine is shared).",
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
    ]
    text = write_report("distributed", "Data-parallel SegNetSmall training: 1 process vs 2 MPI ranks",
                        ["run", "images/s", "s/step", "speed-up", "MB all-reduced/step", "collectives/step",
                         "s in collectives/step"], rows, notes, extra={"runs": runs, "communication": comm,
                                                                      "scaling_model": model_rows})
    print(text)


if __name__ == "__main__":
    main()
