"""Compare train_segnet.py runs: a Markdown table and a picture of held-out accuracy by epoch and minute.

    python examples/compare_runs.py "from scratch=runs/msrc" "old school=runs/msrc_oldschool" \\
        "lazy=runs/msrc_lazy" --out docs/msrc_transfer

The target accuracy ("reached at") is the first run's final one unless --target says otherwise: the
transfer-learning question is how soon a pretrained start gets where training from scratch ends.
The per-epoch figures are at the training size, so the target is the first run's final figure at the
training size; the final columns are metrics.json's headline, scored at the resolution the table names
(native: each label's original size, see train_segnet.py's evaluate).
--also adds columns for other accuracies (e.g. --also 0.6).
Writes OUT.md (the table) and OUT.png (the curves) and prints the table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from plots import plot_runs  # noqa: E402  (examples/plots.py: matplotlib)


def read_run(spec):
    """'LABEL=DIR' or 'DIR' -> (label, metrics.json's content). Errors name the file."""
    label, _, folder = spec.rpartition("=")
    path = Path(folder) / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"{path}: cannot read a train_segnet.py metrics.json ({error})")
    if not metrics.get("history") or "elapsed_seconds" not in metrics["history"][0]:
        raise SystemExit(f"{path}: no per-epoch history with elapsed_seconds (an evaluation-only run, or one "
                         f"written before train_segnet.py recorded wall time)")
    return label or Path(folder).name, metrics


def phases(history):
    """[(trainable parameters, [epochs])]: consecutive epochs that trained the same parameters
    (a lazy run that unfreezes has two phases)."""
    result = []
    for h in history:
        if result and result[-1][0] == h["trainable_parameters"]:
            result[-1][1].append(h)
        else:
            result.append((h["trainable_parameters"], [h]))
    return result


def when_reached(history, target):
    """'epoch E, M min' for the first epoch whose held-out accuracy is ``target`` or more, or how far the run got."""
    reached = next((h for h in history if h["val_pixel_accuracy"] >= target), None)
    if reached:
        return f"epoch {reached['epoch']}, {reached['elapsed_seconds'] / 60:.1f} min"
    return f"not in {len(history)} epochs (best {max(h['val_pixel_accuracy'] for h in history):.1%})"


def row(label, metrics, targets):
    history = metrics["history"]
    runs_phases = phases(history)
    trainable = " then ".join(f"{count:,}" for count, _ in runs_phases)
    step = " then ".join(f"{statistics.median(h['seconds_per_step'] for h in epochs):.2f}" for _, epochs in runs_phases)
    when = " | ".join(when_reached(history, target) for target in targets)
    config = metrics["config"]
    return (f"| {label} | {config['model']} | {trainable} | {step} | {when} | {metrics['pixel_accuracy']:.1%} "
            f"| {metrics['mean_iou']:.3f} | {metrics['class_average_accuracy']:.1%} "
            f"| {metrics.get('resolution', 'training size')} | {len(history)} "
            f"| {metrics['seconds'] / 60:.1f} |")


def table(runs, targets):
    reached = " | ".join(f"reached {target:.1%} at" for target in targets)
    header = (f"| run | model | trainable parameters | s/step (median) | {reached} | val pixel acc | mIoU "
              "| class avg | scored at | epochs | minutes |")
    rows = [row(label, metrics, targets) for label, metrics in runs.items()]
    return "\n".join([header, "|" + "---|" * (header.count("|") - 1)] + rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]DIR", help="train_segnet.py --out folders")
    parser.add_argument("--target", type=float, help="accuracy to reach (default: the first run's final accuracy)")
    parser.add_argument("--also", type=float, nargs="+", default=[], metavar="ACC",
                        help="more accuracies to report when each run reached them (a column each)")
    parser.add_argument("--out", default="runs/comparison", help="writes OUT.md and OUT.png")
    args = parser.parse_args(argv)
    runs = dict(read_run(spec) for spec in args.runs)
    first_label, first = next(iter(runs.items()))
    target = args.target if args.target is not None else first.get("at_training_size", first)["pixel_accuracy"]
    text = table(runs, [target] + args.also)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    plot_runs({label: m["history"] for label, m in runs.items()}, out.with_suffix(".png"),
              target=(f"{first_label if args.target is None else 'target'} {target:.1%}", target))
    print(text)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.png')}")
    return text


if __name__ == "__main__":
    main()
