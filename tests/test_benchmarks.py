"""The benchmark harness's logic (benchmarks/harness.py): the quiet check, the statistics, where results go.

No timing is asserted: the workers run a dummy workload that takes no time.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import harness  # noqa: E402

DUMMY = '''
import os

def workload(options, case):
    with open(os.environ["ORDER_FILE"], "a") as order:
        order.write(options["name"] + " " + case["name"] + "\\n")
    return lambda: options["loss"]
'''


@pytest.fixture(autouse=True)
def session_folders_in_tmp_path(monkeypatch, tmp_path):
    """A Session's scratch folder (weights, specs) goes under tmp_path, not the system's temp folder."""
    make_folder = tempfile.mkdtemp
    monkeypatch.setattr(harness.tempfile, "mkdtemp", lambda prefix: make_folder(prefix=prefix, dir=tmp_path))


def machine(monkeypatch, load, gflops):
    """The machine as the harness sees it: this load average, and this calibration (here or in a fresh process)."""
    monkeypatch.setattr(harness.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(harness, "calibration_gflops", lambda: gflops)
    monkeypatch.setattr(harness, "fresh_calibration_gflops", lambda: gflops)


def test_noise_reasons_name_each_cause():
    assert harness.noise_reasons(0.1, 150, 155) == []
    (busy,) = harness.noise_reasons(2.4, 150, 155)
    assert "load average 2.40 > 0.5" in busy
    (slow,) = harness.noise_reasons(0.1, 100, 155)
    assert "100 GFLOP/s = 65%" in slow and "155" in slow
    (unknown,) = harness.noise_reasons(0.1, 100, None)
    assert "no calibration peak" in unknown
    assert len(harness.noise_reasons(3.0, 10, 155, max_load=4, min_calibration=0.05)) == 0


def test_a_busy_machine_is_refused_with_status_3(monkeypatch, tmp_path, capsys):
    calibration = tmp_path / "calibration.json"
    harness.record_peak(150, calibration)
    machine(monkeypatch, 2.5, 60)
    with pytest.raises(SystemExit) as refused:
        harness.check_quiet(calibration_file=calibration)
    assert refused.value.code == harness.REFUSED
    message = capsys.readouterr().err
    assert "refusing to measure" in message and "load average 2.50" in message and "40%" in message
    assert "--allow-noisy" in message


def test_allow_noisy_warns_and_stamps(monkeypatch, tmp_path, capsys):
    calibration = tmp_path / "calibration.json"
    harness.record_peak(150, calibration)
    machine(monkeypatch, 2.5, 140)
    stamp = harness.check_quiet(allow_noisy=True, calibration_file=calibration)
    assert stamp.noisy and "NOT for publication" in capsys.readouterr().err
    assert harness.recorded_peak(calibration) == 150  # a busy machine records nothing


def test_a_quiet_machine_passes_and_raises_the_peak(monkeypatch, tmp_path):
    calibration = tmp_path / "calibration.json"
    harness.record_peak(150, calibration)
    machine(monkeypatch, 0.1, 140)
    assert not harness.check_quiet(calibration_file=calibration).noisy
    assert harness.recorded_peak(calibration) == 150
    machine(monkeypatch, 0.1, 170)
    assert harness.check_quiet(calibration_file=calibration).peak_gflops == 170
    assert harness.recorded_peak(calibration) == 170
    assert harness.recorded_peak(calibration, key="another machine") is None


def test_the_first_quiet_check_records_the_peak(monkeypatch, tmp_path):
    calibration = tmp_path / "calibration.json"
    machine(monkeypatch, 0.1, 140)
    assert not harness.check_quiet(calibration_file=calibration).noisy
    assert harness.recorded_peak(calibration) == 140


def test_a_machine_that_got_busy_during_the_run_is_stamped_noisy(monkeypatch):
    stamp = harness.Stamp(0.1, 150, 150, [])
    machine(monkeypatch, 2.0, 90)
    assert harness.recheck(stamp).noisy and "got busy" in stamp.reasons[0]


def test_medians_spread_and_round_by_round_ratios():
    assert harness.spread([3.0, 1.0, 2.0, 10.0, 4.0]) == (3.0, 1.0, 10.0)
    assert harness.quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 4.0)
    fast, base = harness.Timing(), harness.Timing()
    for samples, baseline in [([1.0, 1.2, 1.1], [2.0, 2.0, 2.0]), ([3.0, 3.0, 9.0], [4.0, 4.0, 4.0])]:
        fast.add({"samples": samples, "first": 0.5}, peak_rss_mb=100)
        base.add({"samples": baseline}, peak_rss_mb=300)
    assert fast.round_medians == [1.1, 3.0] and fast.median == pytest.approx(2.05)
    assert harness.ratio(fast, base) == (pytest.approx(0.65), 0.55, 0.75)
    assert harness.ratio_cell(fast, base) == "0.65x (0.55-0.75)"
    assert harness.timing_cell(fast, 1000) == "2,050 (1,100-3,000)"
    summary = fast.summary()
    assert summary["peak_rss_mb"] == 100 and summary["first"] == [0.5, 0.5] and summary["rounds"] == 2
    assert harness.with_range(0.4521, 0.4521, 0.4521) == "0.452"


def arguments(**changes):
    parser = harness.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args([])
    vars(args).update(changes)
    return harness.validate(args)


def test_quick_is_a_smoke_run_and_nonsense_is_refused():
    args = arguments(quick=True)
    assert (args.rounds, args.warmup, args.steps) == (1, 1, 2)
    with pytest.raises(SystemExit):
        arguments(warmup=0)


def test_noisy_results_never_overwrite_the_published_ones(monkeypatch, tmp_path):
    published, noisy = tmp_path / "results", tmp_path / "noisy"
    monkeypatch.setattr(harness, "RESULTS", published)
    monkeypatch.setattr(harness, "NOISY_RESULTS", noisy)
    monkeypatch.setattr(harness, "recheck", lambda stamp, minimum: stamp)
    for reasons, folder in [(["1-minute load average 3.00 > 0.5"], noisy), ([], published)]:
        monkeypatch.setattr(harness, "check_quiet", lambda *args, reasons=reasons: harness.Stamp(3.0, 50, 150, reasons))
        session = harness.Session(arguments(), "demo")
        session.write_report("Demo", ["case", "ms"], [{"case": "a", "ms": 1.5}, {"case": "b"}], ["a note"])
        text = (folder / "demo.md").read_text()
        assert ("NOISY -- not for publication" in text) == bool(reasons)
        assert "| a | 1.5 |" in text and "| b | - |" in text and "a note" in text
        record = json.loads((folder / "demo.json").read_text())
        assert record["noisy"] == bool(reasons) and record["rows"][0] == {"case": "a", "ms": 1.5}
        assert record["settings"]["rounds"] == 3
    assert not (published / "demo.md").read_text().startswith("# Demo\n\n**NOISY")


def test_each_candidate_runs_in_fresh_processes_in_rotated_order(monkeypatch, tmp_path):
    (tmp_path / "dummy_benchmark.py").write_text(DUMMY)
    order = tmp_path / "order.txt"
    env = {"PYTHONPATH": str(tmp_path), "ORDER_FILE": str(order)}
    candidates = [harness.Candidate(name, {"library": "dummy", "name": name, "loss": loss}, env=env)
                  for name, loss in [("A", 1.0), ("B", 2.0)]]
    monkeypatch.setattr(harness, "check_quiet", lambda *args: harness.Stamp(0.0, 150, 150, []))
    session = harness.Session(arguments(rounds=2, warmup=1, steps=3), "demo")
    cases = [{"name": "one"}, {"name": "two"}]
    timings = session.standalone("dummy_benchmark", candidates, cases, process_per_case=False)
    assert order.read_text().split("\n")[:-1] == ["A one", "A two", "B one", "B two",  # round 1: A, B
                                                 "B one", "B two", "A one", "A two"]  # round 2: B, A
    for case in ("one", "two"):
        assert timings[case]["A"].first == [1.0, 1.0] and len(timings[case]["B"].samples) == 6
        assert timings[case]["A"].peak_rss_mb == []  # one process ran both cases: no peak per case
    timings = session.standalone("dummy_benchmark", candidates, cases[:1])
    assert all(peak > 0 for peak in timings["one"]["B"].peak_rss_mb)
    shared = session.in_process("dummy_benchmark", candidates, cases[:1])
    assert shared["one"]["B"].first == [2.0] and len(shared["one"]["A"].samples) == 3
    assert session.versions["A"]["python"]
