"""The examples' charts (examples/plots.py, matplotlib) and the library's promise not to need matplotlib."""
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import plots  # noqa: E402

HISTORY = [
    {"train_loss": 2.1, "val_loss": 1.9, "train_accuracy": 0.41, "val_pixel_accuracy": 0.45, "val_mean_iou": 0.10,
     "elapsed_seconds": 30.0},
    {"train_loss": 1.2, "val_loss": float("nan"), "train_accuracy": 0.62, "val_pixel_accuracy": 0.60,
     "val_mean_iou": None, "elapsed_seconds": 61.0},
    {"train_loss": 0.9, "val_loss": 1.0, "train_accuracy": 0.70, "val_pixel_accuracy": 0.66, "val_mean_iou": 0.21,
     "elapsed_seconds": 90.0},
]


def test_curves_one_panel_per_group_of_keys(tmp_path):
    pytest.importorskip("matplotlib")
    figure = plots.plot_curves(HISTORY, tmp_path / "curves.png")
    assert [ax.get_title() for ax in figure.axes] == list(plots.CURVE_PANELS)
    loss = figure.axes[0]
    assert [line.get_label() for line in loss.get_lines()] == ["train", "held-out"]
    assert list(loss.get_lines()[1].get_xdata()) == [1, 3]  # the epoch without a figure is skipped
    assert Image.open(tmp_path / "curves.png").size == (1260, 320)


def test_curves_leave_out_keys_no_epoch_has(tmp_path):
    pytest.importorskip("matplotlib")
    figure = plots.plot_curves([{"train_loss": 1.0}, {"train_loss": 0.5}], tmp_path / "curves.png")
    assert [ax.get_title() for ax in figure.axes] == ["loss"]


def test_runs_by_epoch_and_by_minute_with_the_target(tmp_path):
    pytest.importorskip("matplotlib")
    figure = plots.plot_runs({"a": HISTORY, "b": HISTORY[:2]}, tmp_path / "runs.png", target=("a 66.0%", 0.66))
    by_epoch, by_minute = figure.axes
    assert [line.get_label() for line in by_epoch.get_lines()] == ["a", "b", "a 66.0%"]
    assert list(by_minute.get_lines()[0].get_xdata()) == [0.5, 61.0 / 60, 1.5]
    assert Image.open(tmp_path / "runs.png").size == (960, 320)


def test_the_library_imports_no_plotting_library():
    code = ("import sys, minidl, minidl.visualize, minidl.autograd.graph; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'graphviz')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
