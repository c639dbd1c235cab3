"""The architecture lesson's examples end to end, at tiny sizes: every output written, the numbers consistent."""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minidl
from minidl.models import lraspp_mobilenet_v3_large
from minidl.summary import receptive_window

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import architectures  # noqa: E402
import receptive_field  # noqa: E402
import transposed_conv  # noqa: E402


TINY_ARCHITECTURES = ["--size", "32", "--train-size", "32", "--train-images", "8", "--val-images", "4",
                      "--batch-size", "4"]


def test_architectures_writes_the_table_and_the_plot(tmp_path):
    pytest.importorskip("matplotlib")
    rows = architectures.main(TINY_ARCHITECTURES + ["--epochs", "2", "--nets", "naive,fcn32s,segnet_small",
                                                    "--out", str(tmp_path), "--save-weights", str(tmp_path / "weights")])
    table = (tmp_path / "architectures.md").read_text()
    assert "after 2 epochs of training each" in table
    assert table.count("\n| ") == 1 + len(rows)  # header + one line per net
    for row in rows:
        assert row["title"] in table and row["steps"] == 2 * 2 and 0 <= row["accuracy"] <= 1  # 8 scenes / batch 4
        assert 0 < row["kept"] < row["peak"]
        assert [epoch for epoch, _, _ in row["history"]] == [1, 2] and row["history"][-1][2] == row["accuracy"]
    naive, fcn32s, segnet = rows
    assert naive["rf"] == 17 and fcn32s["rf"] > 64 and segnet["rf"] > 100  # the lesson, in numbers
    assert naive["kept"] > segnet["kept"]  # full resolution everywhere keeps the most for backward
    assert Image.open(tmp_path / "architectures.png").size[0] > 600
    assert (tmp_path / "weights" / "segnet_small.npz").exists()


def test_architectures_with_a_time_budget(tmp_path):
    pytest.importorskip("matplotlib")
    (row,) = architectures.main(TINY_ARCHITECTURES + ["--budget", "0.1", "--nets", "fcn32s", "--out", str(tmp_path)])
    assert "after 0.1 CPU seconds of training each" in (tmp_path / "architectures.md").read_text()
    assert row["steps"] >= 1 and row["train_seconds"] >= 0.1 and len(row["history"]) >= 1


def test_receptive_field_draws_one_panel_per_net(tmp_path):
    out = tmp_path / "rf.png"
    sheet = receptive_field.main(["--models", "naive,unet", "--size", "32", "--pixel", "10", "20", "--out", str(out)])
    assert out.exists() and sheet.width > 2 * 2 * 32
    panel = np.asarray(sheet)
    assert (panel[..., 0] > 200).any() and (panel[..., 2] > 200).any()  # the heat map (red-yellow) and the rectangle (blue)


def test_effective_field_lies_inside_the_theoretical_one():
    model = architectures.ConstantResolution(width=4, depth=4).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 24, 24)).astype(np.float32)
    magnitude, _ = receptive_field.effective_field(model, x, (5, 9))
    (top, bottom), (left, right) = receptive_window(model, x, (5, 9))
    assert ((top, bottom), (left, right)) == ((1, 9), (5, 13))  # 4 convs of 3x3: 9 pixels, centred on the pixel
    inside = np.zeros_like(magnitude, bool)
    inside[top : bottom + 1, left : right + 1] = True
    assert magnitude[~inside].sum() == 0 and magnitude[inside].min() > 0


def test_transposed_conv_table_and_picture(tmp_path):
    text = transposed_conv.main(["--out", str(tmp_path / "tc.png")])
    assert text.count("\n") == len(transposed_conv.SETTINGS) + 1
    assert "(3-1)*2" not in text and "| 4 | 3 | 2 | 0 | (4-1)*2 - 2*0 + 3 = 9 | 9 |" in text
    assert Image.open(tmp_path / "tc.png").size[0] > 600 and (tmp_path / "tc.md").read_text() == text + "\n"
    counts = transposed_conv.footprints(3, 3, 2, 0).sum(axis=0)  # the checkerboard of stride 2, kernel 3
    np.testing.assert_array_equal(counts[:3, :3], [[1, 1, 2], [1, 1, 2], [2, 2, 4]])


def test_effective_field_of_a_net_that_returns_a_dict():
    """torchvision's LR-ASPP returns {"out": logits}: the lesson reads the logits out of it."""
    minidl.manual_seed(0)
    model = lraspp_mobilenet_v3_large(num_classes=3).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    magnitude, chosen = receptive_field.effective_field(model, x, (16, 16))
    assert magnitude.shape == (32, 32) and magnitude.sum() > 0 and 0 <= chosen < 3
    (top, bottom), (left, right) = receptive_window(model, x, (16, 16), clip=False)
    inside = np.zeros_like(magnitude, bool)  # the effective field lies inside the theoretical one
    inside[max(top, 0) : bottom + 1, max(left, 0) : right + 1] = True
    assert magnitude[~inside].sum() == 0
