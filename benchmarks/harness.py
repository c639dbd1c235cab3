"""The benchmarks' harness: a quiet machine, every library in fresh processes of its own, medians and spread.

Every benchmark that compares speeds (train_step, ops, torchvision_models, frozen, distributed, peers)
measures this way:

1. **Quiet check, before anything runs.** The 1-minute load average must be at most ``--max-load``
   (0.5: nothing else busy on the cores), and a calibration -- a float32 NumPy matmul, n = 2048,
   median of 7 -- must run at ``--min-calibration`` (85%) or more of the best this machine has
   recorded (``benchmarks/results/calibration.json``, one record per CPU model and core count;
   ``python benchmarks/harness.py calibrate`` measures and records it). Otherwise the benchmark
   refuses (exit status 3) and says why. With ``--allow-noisy`` it warns loudly instead, measures,
   stamps the results NOISY and writes them to ``benchmarks/.local/noisy/``, never over the published
   tables. The calibration runs again after the measurements: a machine that got busy meanwhile
   also stamps the results noisy.
2. **Standalone timing, the headline.** Each candidate (a library, or a variant such as minidl's
   fast or reference kernels) runs in a fresh process of its own -- this file's ``worker``, in that
   library's own Python (a peer's venv) -- which builds the benchmark's workload, makes
   ``--warmup`` untimed calls and ``--steps`` timed ones, and reports the seconds of each call and
   the process's peak RSS. There are ``--rounds`` rounds; each round runs every candidate once, in
   an order rotated from round to round (A B C, B C A, C A B), so the machine's drift hits them alike.
3. **Medians and spread.** A candidate's time is the median of its rounds' medians, shown with the
   rounds' range (min-max). A ratio to the baseline is computed round by round (the two processes
   ran minutes apart at most) and shown as the median of those ratios with their range.
4. **The in-process A/B, a second column.** The candidates that can share the project's Python are
   built in one process and timed in alternation (A B A B ...): how these benchmarks used to
   measure. Both columns are reported because they differ: a library's worker threads, still
   spinning after its call, slow the next library's call in the same process.

Memory policy (glibc's malloc keeping freed big blocks, see ``minidl.keep_freed_memory``): it changes
the whole process, so it is decided per process, and the harness gives *every* library the same one
(``--malloc keep``, the default): a minidl process calls ``minidl.keep_freed_memory()``; the other
libraries' processes get glibc's equivalent environment variables (``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_``, the same 1 GiB). PyTorch gains more from it than minidl (docs/performance.md),
so this is the strongest baseline. ``--malloc default`` leaves glibc's defaults to everyone.

A benchmark module gives the worker ``workload(options, case)``: build what one case of one candidate
runs and return the callable to time (or a ``Job`` for more), importing its libraries inside, so that
the module imports in any library's Python.

    python benchmarks/harness.py check        # is the machine quiet now? (load, calibration, recorded peak)
    python benchmarks/harness.py calibrate    # measure the calibration matmul; record it if it beats the peak
"""
from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
LOCAL = BENCHMARKS / ".local"  # ignored by git: the peers' venvs (envs/) and noisy results (noisy/)
NOISY_RESULTS = LOCAL / "noisy"
CALIBRATION_FILE = RESULTS / "calibration.json"
REFUSED = 3  # exit status of a benchmark that refused a busy machine
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the benchmarks measure this checkout's minidl

MAX_LOAD = 0.5
MIN_CALIBRATION = 0.85
CALIBRATION_N = 2048
KEEP_FREED_BYTES = 1 << 30  # what minidl.keep_freed_memory() asks of malloc, as environment variables
GLIBC_KEEP_FREED = {"MALLOC_MMAP_THRESHOLD_": str(KEEP_FREED_BYTES), "MALLOC_TRIM_THRESHOLD_": str(KEEP_FREED_BYTES)}
MALLOC_POLICIES = {  # --malloc: what each choice means, as the reports say it
    "keep": "Malloc: every library's process keeps freed memory (minidl.keep_freed_memory(), or glibc's "
            "MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ for the others).",
    "default": "Malloc: glibc's defaults for every library.",
}


# --------------------------------------------------------------------------- what is measured
@dataclass
class Candidate:
    """One contender, timed in processes of its own.

    ``options`` (JSON) go to the benchmark's ``workload``; ``options["library"]`` names the library
    ("minidl", "torch", "mygrad", "chainer"). ``python`` is the interpreter to run it in (a peer's
    venv), ``launcher`` a command prefix (``mpiexec -n 2``), ``env`` extra environment variables.
    ``in_process=False`` keeps it out of the in-process A/B (another Python, or a launcher).
    """

    name: str
    options: dict
    python: str = sys.executable
    launcher: tuple = ()
    env: dict = field(default_factory=dict)
    in_process: bool = True

    @property
    def library(self):
        return self.options.get("library")


@dataclass
class Job:
    """What ``workload`` may return instead of a bare callable.

    ``step`` is timed; ``before_step`` runs untimed before each timed step (an MPI barrier),
    ``after_step`` untimed after it, returning that step's facts (bytes all-reduced); ``describe``
    runs once after the timed steps and returns facts to report (parameter counts). ``reports`` is
    False where this process's numbers are not the ones to report (MPI ranks other than 0).
    """

    step: Callable[[], Any]
    before_step: Callable[[], None] | None = None
    after_step: Callable[[], dict] | None = None
    describe: Callable[[], dict] | None = None
    reports: bool = True


# --------------------------------------------------------------------------- statistics
def spread(values):
    """(median, min, max) of some numbers."""
    return statistics.median(values), min(values), max(values)


def quartiles(values):
    """(first quartile, third quartile): the interquartile range of some numbers."""
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


@dataclass
class Timing:
    """One candidate on one case, over the rounds: per-round medians, every sample, peak RSS."""

    round_medians: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    peak_rss_mb: list = field(default_factory=list)
    first: list = field(default_factory=list)  # what the first call returned (a loss), per round
    facts: dict = field(default_factory=dict)  # the workload's describe(), and per-step facts

    def add(self, result, peak_rss_mb=None):
        self.round_medians.append(statistics.median(result["samples"]))
        self.samples += result["samples"]
        self.first.append(result.get("first"))
        self.facts = {**result.get("facts", {}), "steps": result.get("steps", [])}
        if peak_rss_mb is not None:
            self.peak_rss_mb.append(peak_rss_mb)

    @property
    def median(self):
        return statistics.median(self.round_medians)

    def summary(self):
        median, low, high = spread(self.round_medians)
        q1, q3 = quartiles(self.samples)
        return {"median_s": median, "min_s": low, "max_s": high, "rounds": len(self.round_medians),
                "sample_iqr_s": [q1, q3], "round_medians_s": self.round_medians,
                "peak_rss_mb": statistics.median(self.peak_rss_mb) if self.peak_rss_mb else None,
                "first": self.first, "facts": self.facts}


def ratio(timing, baseline):
    """Round-by-round ratio timing / baseline: (median, min, max)."""
    return spread([a / b for a, b in zip(timing.round_medians, baseline.round_medians)])


def number(value):
    """A measured number for a table: three significant digits, whole numbers from 1000 up (never 1e+03)."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def with_range(median, low, high, scale=1.0, unit=""):
    """'0.452 (0.447-0.470)': a median and its range, for a table cell."""
    if low == high:
        return number(median * scale) + unit
    return f"{number(median * scale)}{unit} ({number(low * scale)}-{number(high * scale)})"


def timing_cell(timing, scale=1.0):
    """A Timing's median and its rounds' range, times ``scale`` (1000 for ms)."""
    return with_range(*spread(timing.round_medians), scale=scale)


def ratio_cell(timing, baseline):
    return with_range(*ratio(timing, baseline), unit="x")


# --------------------------------------------------------------------------- the quiet check
def calibration_gflops(n=CALIBRATION_N, repeats=7):
    """Median float32 NumPy matmul speed (GFLOP/s) of this process: how fast the machine is right now."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(seconds) / 1e9


def fresh_calibration_gflops():
    """``calibration_gflops()`` measured in a new Python process (nothing else loaded in it)."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import harness; " \
           "print(harness.calibration_gflops())"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def machine_key():
    """'AMD EPYC, 2 cores': what the calibration peak is recorded under."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def recorded_peak(path=CALIBRATION_FILE, key=None):
    """The best calibration recorded for this machine, GFLOP/s, or None."""
    try:
        records = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return records.get(key or machine_key(), {}).get("peak_gflops")


def record_peak(gflops, path=CALIBRATION_FILE, key=None):
    """Store ``gflops`` as this machine's calibration peak."""
    path = Path(path)
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        records = {}
    records[key or machine_key()] = {"peak_gflops": round(gflops, 1), "date": today(), "n": CALIBRATION_N}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2) + "\n")


def noise_reasons(load, gflops, peak, max_load=MAX_LOAD, min_calibration=MIN_CALIBRATION):
    """Why the machine is not quiet enough to publish from (an empty list when it is)."""
    reasons = []
    if load > max_load:
        reasons.append(f"1-minute load average {load:.2f} > {max_load} (other processes are running)")
    if peak is None:
        reasons.append("no calibration peak recorded for this machine (run `python benchmarks/harness.py "
                       "calibrate` when it is quiet)")
    elif gflops < min_calibration * peak:
        reasons.append(f"calibration matmul {gflops:.0f} GFLOP/s = {gflops / peak:.0%} of this machine's "
                       f"recorded peak {peak:.0f} (< {min_calibration:.0%})")
    return reasons


@dataclass
class Stamp:
    """How quiet the machine was: what every result file carries."""

    load_before: float
    gflops_before: float
    peak_gflops: float | None
    reasons: list
    gflops_after: float | None = None
    load_after: float | None = None

    @property
    def noisy(self):
        return bool(self.reasons)

    def line(self):
        peak = f" of a recorded peak of {self.peak_gflops:.0f}" if self.peak_gflops else ""
        after = (f"; after the run {self.gflops_after:.0f} GFLOP/s (load {self.load_after:.2f}, our own processes "
                 "included)") if self.gflops_after is not None else ""
        return (f"Quiet check: load average {self.load_before:.2f} before; calibration matmul "
                f"{self.gflops_before:.0f} GFLOP/s{peak}{after}.")


def check_quiet(allow_noisy=False, max_load=MAX_LOAD, min_calibration=MIN_CALIBRATION, calibration_file=CALIBRATION_FILE):
    """Refuse (SystemExit with status 3) a machine that is not quiet, or with ``allow_noisy`` warn; return the Stamp.

    A quiet calibration faster than the recorded peak becomes the new peak.
    """
    load = os.getloadavg()[0]
    gflops = calibration_gflops()
    peak = recorded_peak(calibration_file)
    if load <= max_load and (peak is None or gflops > peak):
        if peak is None:
            print(f"harness: no calibration peak recorded for {machine_key()}: recording {gflops:.0f} GFLOP/s; "
                  "`python benchmarks/harness.py calibrate` on a quiet hour may raise it", file=sys.stderr)
        record_peak(gflops, calibration_file)
        peak = gflops
    reasons = noise_reasons(load, gflops, peak, max_load, min_calibration)
    stamp = Stamp(load, gflops, peak, reasons)
    if stamp.noisy and not allow_noisy:
        print("harness: refusing to measure, the machine is not quiet:\n  - " + "\n  - ".join(reasons)
              + "\nWait until it is (`uptime`), or pass --allow-noisy: the results are then stamped NOISY and "
              f"written to {NOISY_RESULTS.relative_to(ROOT)}/, not for publication.", file=sys.stderr)
        raise SystemExit(REFUSED)
    if stamp.noisy:
        print("!" * 78 + "\n!! NOISY MACHINE -- these numbers are NOT for publication:\n!!   "
              + "\n!!   ".join(reasons) + "\n" + "!" * 78, file=sys.stderr, flush=True)
    return stamp


def recheck(stamp, min_calibration=MIN_CALIBRATION):
    """The calibration again after the measurements: a machine that got busy stamps the results noisy.

    It runs in a fresh process: in this one, PyTorch's worker threads (loaded by an in-process
    A/B) may still spin after their last call and slow the matmul down.
    """
    stamp.gflops_after = fresh_calibration_gflops()
    stamp.load_after = os.getloadavg()[0]
    if stamp.peak_gflops and stamp.gflops_after < min_calibration * stamp.peak_gflops:
        stamp.reasons.append(f"after the run the calibration matmul ran at {stamp.gflops_after:.0f} GFLOP/s = "
                             f"{stamp.gflops_after / stamp.peak_gflops:.0%} of the peak: the machine got busy")
    return stamp


# --------------------------------------------------------------------------- the worker (a fresh process)
def peak_rss_mb():
    """This process's peak resident memory so far, MB (VmHWM; ru_maxrss would survive exec and report a parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def as_job(made):
    return made if isinstance(made, Job) else Job(made)


def timed(job):
    """Seconds of one call of job.step, its untimed hooks around it; (seconds, the step's facts)."""
    if job.before_step:
        job.before_step()
    start = time.perf_counter()
    job.step()
    seconds = time.perf_counter() - start
    return seconds, (job.after_step() if job.after_step else None)


def json_value(value):
    """What a step returned, as JSON can hold it (a loss as a float; anything else dropped)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def library_versions(libraries):
    versions = {"python": platform.python_version()}
    for name in ["numpy", *libraries]:
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", None)
    return versions


def apply_memory_policy(spec):
    """In a process that runs minidl under --malloc keep: minidl's own call (the others got glibc's variables)."""
    if spec["keep_freed_memory"] and "minidl" in spec["libraries"]:
        import minidl

        minidl.keep_freed_memory()


def run_standalone(module, spec):
    """One candidate, each case in turn: warm-up, timed steps; the per-case results."""
    (options,) = spec["candidates"]
    results, reports = {}, True
    for case in spec["cases"]:
        job = as_job(module.workload(options, case))
        reports = job.reports
        first = json_value(job.step())
        for _ in range(spec["warmup"] - 1):
            job.step()
        samples, steps = [], []
        for _ in range(spec["steps"]):
            seconds, facts = timed(job)
            samples.append(seconds)
            if facts is not None:
                steps.append(facts)
        results[case["name"]] = {"samples": samples, "first": first, "steps": steps,
                                 "facts": job.describe() if job.describe else {}}
        del job
        gc.collect()
    return results, reports


def run_in_process(module, spec):
    """Every candidate in this one process, timed in alternation (A B A B ...) per case."""
    results = {}
    for case in spec["cases"]:
        jobs = [as_job(module.workload(options, case)) for options in spec["candidates"]]
        first = [json_value(job.step()) for job in jobs]
        for _ in range(spec["warmup"] - 1):
            for job in jobs:
                job.step()
        samples = [[] for _ in jobs]
        for _ in range(spec["steps"]):
            for job, times in zip(jobs, samples):
                times.append(timed(job)[0])
        results[case["name"]] = [{"samples": s, "first": f} for s, f in zip(samples, first)]
        del jobs
        gc.collect()
    return results, True


def worker(spec_path):
    """Entry point of a fresh process: run the spec's workload, write its result file (JSON)."""
    spec = json.loads(Path(spec_path).read_text())
    sys.path.insert(0, str(BENCHMARKS))
    apply_memory_policy(spec)
    module = importlib.import_module(spec["module"])
    run = run_in_process if spec["mode"] == "in_process" else run_standalone
    results, reports = run(module, spec)
    if reports:
        Path(spec["result"]).write_text(json.dumps({
            "results": results, "peak_rss_mb": peak_rss_mb(), "versions": library_versions(spec["libraries"])}))


# --------------------------------------------------------------------------- the parent
def run_process(command, env=None, timeout=3600, cwd=ROOT):
    """Run a command; raise SystemExit with its output if it fails."""
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=timeout, cwd=cwd)
    if done.returncode:
        raise SystemExit(f"{' '.join(map(str, command))} failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
                         f"{done.stderr[-4000:]}")
    return done


class Session:
    """One benchmark run: the quiet check, the measurements, the report.

    ``Session(args, name)`` checks the machine (refusing a busy one unless --allow-noisy);
    ``standalone`` and ``in_process`` measure; ``write_report`` re-checks the machine and writes
    the tables where they belong (benchmarks/results/, or benchmarks/.local/noisy/ when noisy).
    """

    def __init__(self, args, name):
        self.args, self.name = args, name
        self.stamp = check_quiet(args.allow_noisy, args.max_load, args.min_calibration)
        print(self.stamp.line(), flush=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f"minidl-{name}-"))
        self.versions = {}
        self.shared_process = False  # whether an in-process A/B ran (the report then says how)

    def spec(self, module, candidates, cases, mode):
        libraries = sorted({c.library for c in candidates if c.library})
        return {"module": module, "candidates": [c.options for c in candidates], "cases": cases, "mode": mode,
                "warmup": self.args.warmup, "steps": self.args.steps, "libraries": libraries,
                "keep_freed_memory": self.args.malloc == "keep"}

    def run(self, spec, candidate, timeout=None):
        """Run the worker for ``spec`` in ``candidate``'s Python (under its launcher); its result."""
        path = self.folder / "spec.json"
        spec["result"] = str(self.folder / "result.json")
        Path(spec["result"]).unlink(missing_ok=True)
        path.write_text(json.dumps(spec))
        env = dict(candidate.env)
        if spec["keep_freed_memory"] and "minidl" not in spec["libraries"]:  # (minidl's own call does it there)
            env.update(GLIBC_KEEP_FREED)
        run_process([*candidate.launcher, candidate.python, str(Path(__file__).resolve()), "worker", str(path)],
                    env, timeout or self.args.timeout)
        result = json.loads(Path(spec["result"]).read_text())
        self.versions[candidate.name] = result["versions"]
        return result

    def standalone(self, module, candidates, cases, process_per_case=True):
        """{case name: {candidate name: Timing}}: each candidate in fresh processes, rounds alternated.

        With ``process_per_case`` every case gets its own process (a peak RSS per case);
        otherwise one process per candidate per round runs all cases.
        """
        timings = {case["name"]: {c.name: Timing() for c in candidates} for case in cases}
        groups = [[case] for case in cases] if process_per_case else [cases]
        for round_index in range(self.args.rounds):
            for group in groups:
                shift = round_index % len(candidates)
                for candidate in candidates[shift:] + candidates[:shift]:
                    result = self.run(self.spec(module, [candidate], group, "standalone"), candidate)
                    for case in group:
                        case_result = result["results"][case["name"]]
                        peak = result["peak_rss_mb"] if process_per_case else None
                        timings[case["name"]][candidate.name].add(case_result, peak)
                        print(f"[round {round_index + 1}/{self.args.rounds}] {case['name']} {candidate.name}: "
                              f"median {statistics.median(case_result['samples']):.4g} s of "
                              f"{len(case_result['samples'])}" + (f", peak RSS {peak:.0f} MB" if peak else ""),
                              flush=True)
        return timings

    def in_process(self, module, candidates, cases):
        """{case name: {candidate name: Timing}}: the candidates sharing one process, alternated (one round)."""
        sharing = [c for c in candidates if c.in_process]
        if self.args.no_in_process or len(sharing) < 2:
            return {}
        result = self.run(self.spec(module, sharing, cases, "in_process"), sharing[0])
        self.shared_process = True
        timings = {}
        for case in cases:
            timings[case["name"]] = {}
            for candidate, case_result in zip(sharing, result["results"][case["name"]]):
                timings[case["name"]][candidate.name] = timing = Timing()
                timing.add(case_result)
        print(f"in-process A/B done ({', '.join(c.name for c in sharing)})", flush=True)
        return timings

    def method(self):
        """How this run measured, in words, for the report."""
        args = self.args
        sentences = [f"Each candidate alone in a fresh process: {args.warmup} warm-up and {args.steps} timed calls per "
                     f"process, rounds: {args.rounds}, in rotated order; a time is the median of the rounds' medians "
                     "(their range in parentheses), a ratio the median of the round-by-round ratios (their range)."]
        if self.shared_process:
            sentences.append("In-process columns: the candidates in one process, timed in alternation.")
        sentences.append(MALLOC_POLICIES[args.malloc])
        return " ".join(sentences)

    def write_report(self, title, columns, rows, notes, extra=None):
        """Re-check the machine, then write <name>.md and .json; return the Markdown text."""
        recheck(self.stamp, self.args.min_calibration)
        folder = Path(self.args.out) if self.args.out else (NOISY_RESULTS if self.stamp.noisy else RESULTS)
        text = write_report(folder, self.name, title, columns, rows, [self.method(), "", *notes], self.stamp,
                            self.versions, {"settings": settings(self.args), **(extra or {})})
        shutil.rmtree(self.folder, ignore_errors=True)  # the weights and batches the workers loaded
        print(text)
        print(f"written: {folder / self.name}.md and .json", file=sys.stderr)
        if self.stamp.noisy:
            print("NOISY: these numbers are not for publication", file=sys.stderr)
        return text


def summaries(timings):
    """{case: {candidate: Timing}} -> the same with each Timing's summary (for the JSON report)."""
    return {case: {name: timing.summary() for name, timing in by_candidate.items()}
            for case, by_candidate in timings.items()}


def settings(args):
    return {name: getattr(args, name) for name in ("rounds", "warmup", "steps", "malloc", "quick") if hasattr(args, name)}


def today():
    return datetime.date.today().isoformat()


def write_report(folder, name, title, columns, rows, notes, stamp, versions, extra=None):
    """Write ``folder``/<name>.md (a Markdown table) and .json (everything); return the Markdown text."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    if stamp.noisy:
        lines += ["**NOISY -- not for publication.** " + " ".join(f"{reason}." for reason in stamp.reasons), ""]
    software = sorted({f"{k} {v}" for found in versions.values() for k, v in found.items() if v})
    lines += [f"Measured {today()} on {machine_key()}; {', '.join(software)}.", "", stamp.line(), ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column)) for column in columns) + " |" for row in rows]
    lines += ["", *notes]
    text = "\n".join(lines) + "\n"
    (folder / f"{name}.md").write_text(text)
    record = {"title": title, "date": today(), "machine": machine_key(), "noisy": stamp.noisy,
              "quiet_check": vars(stamp), "versions": versions, "rows": rows, "notes": notes, **(extra or {})}
    (folder / f"{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return text


def cell(value):
    if value is None:
        return "-"
    return number(value) if isinstance(value, float) else str(value)


def add_arguments(parser, rounds=3, warmup=2, steps=7):
    """The harness's options, shared by every benchmark's command line."""
    group = parser.add_argument_group("harness")
    group.add_argument("--rounds", type=int, default=rounds, help=f"fresh processes per candidate (default {rounds})")
    group.add_argument("--warmup", type=int, default=warmup, help=f"untimed calls per process (default {warmup}, >= 1)")
    group.add_argument("--steps", type=int, default=steps, help=f"timed calls per process (default {steps})")
    group.add_argument("--quick", action="store_true", help="a smoke run: 1 round, 1 warm-up, 2 timed calls, fewer cases")
    group.add_argument("--allow-noisy", action="store_true",
                       help="measure on a busy machine anyway: warn, stamp NOISY, write to benchmarks/.local/noisy/")
    group.add_argument("--max-load", type=float, default=MAX_LOAD, help=f"highest 1-minute load average (default {MAX_LOAD})")
    group.add_argument("--min-calibration", type=float, default=MIN_CALIBRATION,
                       help=f"lowest calibration matmul speed, as a fraction of the recorded peak (default {MIN_CALIBRATION})")
    group.add_argument("--malloc", choices=list(MALLOC_POLICIES), default="keep",
                       help="keep: every library's process keeps freed memory (default); default: glibc's defaults")
    group.add_argument("--no-in-process", action="store_true", help="skip the in-process A/B column")
    group.add_argument("--out", help="write the report to this folder instead")
    group.add_argument("--timeout", type=float, default=3600, help="seconds per worker process")
    return parser


def validate(args):
    """Check the harness's options; --quick makes a smoke run (1 round, 1 warm-up, 2 timed calls)."""
    if args.quick:
        args.rounds, args.warmup, args.steps = 1, 1, 2
    if args.warmup < 1 or args.steps < 1 or args.rounds < 1:
        raise SystemExit("--warmup, --steps and --rounds must be at least 1")
    return args


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="the quiet check alone: load average, calibration, recorded peak")
    calibrate = commands.add_parser("calibrate", help="run the calibration matmul; record it if it beats the peak")
    calibrate.add_argument("--repeats", type=int, default=5, help="calibrations (the best is kept)")
    commands.add_parser("worker", help=argparse.SUPPRESS).add_argument("spec")
    args = parser.parse_args()
    if args.command == "worker":
        return worker(args.spec)
    if args.command == "check":
        load, gflops, peak = os.getloadavg()[0], calibration_gflops(), recorded_peak()
        reasons = noise_reasons(load, gflops, peak)
        print(Stamp(load, gflops, peak, reasons).line())
        print("quiet" if not reasons else "NOT quiet:\n  - " + "\n  - ".join(reasons))
        return 0 if not reasons else REFUSED
    best = max(calibration_gflops() for _ in range(args.repeats))
    peak, load = recorded_peak(), os.getloadavg()[0]
    print(f"{machine_key()}: calibration {best:.0f} GFLOP/s (best of {args.repeats}), load {load:.2f}, "
          f"recorded peak {peak}")
    if load > MAX_LOAD:
        raise SystemExit(f"not recorded: load average {load:.2f} > {MAX_LOAD}")
    if peak is None or best > peak:
        record_peak(best)
        print(f"recorded as the peak in {CALIBRATION_FILE.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.path.insert(0, str(BENCHMARKS))
    import harness  # the benchmark modules import this name: run as it, so that there is one Job class

    sys.exit(harness.main())
