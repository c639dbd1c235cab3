"""Every ```python block of the guide (docs/guide/*.md) and of README.md runs, so no example can rot.

The blocks of one file run in order in one namespace, from the repository's root,
as a reader pasting them into one Python session would run them. A block whose
info string says ``no-run`` -- written ```python tags=["no-run"], which jupytext
turns into a notebook cell tag -- is only compiled: that is for what cannot run
here (a download, an hour of training), and each such block is listed in
``OPT_OUTS`` so that a new one is a decision, not an accident.

Also checked: every relative link of the guide points at a file that exists, and
every code pointer written "`name` in [path](...)" names something that path defines.
"""
import re
from pathlib import Path

import pytest

import minidl

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide"
DOCUMENTS = sorted(GUIDE.glob("*.md")) + [ROOT / "README.md"]

# (file relative to the root, a line of the block): the blocks that may not run, and why. None today; an
# entry reads ("README.md", 'resnet18(weights="resnet18-f37072fd.pth")'): "needs torchvision's file, a download".
OPT_OUTS = {}

FENCE = re.compile(r"^```python(?P<info>[^\n]*)\n(?P<code>.*?)^```\s*$", re.M | re.S)


def blocks(path):
    """[(line number, code, runs)] for every ```python block of ``path``."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group("code"), "no-run" not in m.group("info"))
            for m in FENCE.finditer(text)]


def name_of(path):
    return str(path.relative_to(ROOT))


@pytest.fixture
def clean_state(monkeypatch):
    """Each file starts as a fresh session would: at the root, seeded, fast kernels, recording on."""
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    kernels, grad = minidl.get_kernels(), minidl.is_grad_enabled()
    minidl.manual_seed(0)
    yield
    minidl.set_kernels(kernels)
    minidl.set_grad_enabled(grad)


@pytest.mark.parametrize("path", DOCUMENTS, ids=name_of)
def test_every_python_block_runs(path, clean_state, capsys):
    namespace = {"__name__": f"docs:{name_of(path)}"}
    for line, code, runs in blocks(path):
        compiled = compile(code, f"{name_of(path)}, the block at line {line}", "exec")
        if runs:
            exec(compiled, namespace)  # a failure's traceback names the file and the block's line
        else:
            assert opt_out_of(path, code), f"{name_of(path)} line {line}: a no-run block that OPT_OUTS does not list"


def opt_out_of(path, code):
    """The OPT_OUTS key that names this block, or None."""
    return next((key for key in OPT_OUTS if key[0] == name_of(path) and key[1] in code), None)


def test_every_opt_out_names_a_no_run_block():
    used = {opt_out_of(path, code) for path in DOCUMENTS for _, code, runs in blocks(path) if not runs}
    assert set(OPT_OUTS) <= used, sorted(set(OPT_OUTS) - used)


def test_the_guide_has_its_chapters_in_reading_order():
    chapters = sorted(p.name for p in GUIDE.glob("[0-9][0-9]-*.md"))
    assert [int(name[:2]) for name in chapters] == list(range(1, 13))
    index = (GUIDE / "README.md").read_text()
    assert [index.index(f"({name})") for name in chapters] == sorted(index.index(f"({name})") for name in chapters)
    for name in chapters:
        text = (GUIDE / name).read_text()
        assert text.startswith("# "), name
        assert "## Try it" in text, f"{name} has no exercises"
        assert blocks(GUIDE / name), f"{name} has no runnable example"


LINK = re.compile(r"\]\((?!https?://|#)(?P<target>[^)#\s]+)")
POINTER = re.compile(r"`(?P<name>[A-Za-z_][\w.]*)(?:\(\))?` in \[`?(?P<path>[\w/.-]+\.py)`?\]\((?P<target>[^)#\s]+)\)")


@pytest.mark.parametrize("path", sorted(GUIDE.glob("*.md")), ids=name_of)
def test_links_and_code_pointers_hold(path):
    text = path.read_text()
    for match in LINK.finditer(text):
        assert (path.parent / match["target"]).exists(), f"{name_of(path)}: broken link {match['target']}"
    for match in POINTER.finditer(text):
        source = (path.parent / match["target"]).resolve()
        assert source == (ROOT / match["path"]).resolve(), f"{name_of(path)}: {match['path']} links elsewhere"
        if match["path"][: -len(".py")].replace("/", ".").endswith(match["name"]):
            continue  # the module itself: "`minidl.testing` in [minidl/testing.py](...)"
        name = match["name"].split(".")[-1]
        defined = rf"^\s*(def|class) {name}\b|^\s*{name}\s*=|^\s*{name}\s*:"
        assert re.search(defined, source.read_text(), re.M), f"{name_of(path)}: {match['path']} defines no {name}"


def test_a_chapter_opens_as_a_notebook(tmp_path):
    """The optional notebook route (pip install 'minidl[docs]'): jupytext reads a chapter as it is."""
    jupytext = pytest.importorskip("jupytext")
    chapter = GUIDE / "01-autograd.md"
    notebook = jupytext.read(chapter)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert ["".join(cell.source).strip() for cell in code] == [block.strip() for _, block, _ in blocks(chapter)]
    jupytext.write(notebook, tmp_path / "01-autograd.ipynb")
    assert (tmp_path / "01-autograd.ipynb").stat().st_size > 0



IMAGE = re.compile(r"!\[[^\]]*\]\((?P<target>[^)\s]+\.png)\)")


def test_the_guide_pictures_are_small_and_committed():
    shown = {(path.parent / m["target"]).resolve() for path in GUIDE.glob("*.md") for m in IMAGE.finditer(path.read_text())}
    assert (GUIDE / "figures" / "im2col.png").resolve() in shown
    for picture in shown:
        assert picture.stat().st_size < 200_000, f"{picture.relative_to(ROOT)} is over 200 KB"


def test_the_figures_script_draws_each_picture(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.syspath_prepend(str(GUIDE / "figures"))
    import make_figures

    assert set(make_figures.PICTURES) == {p.name for p in (GUIDE / "figures").glob("*.png")}
    assert 'label="MulBackward' in make_figures.autograd_graph_dot()
    monkeypatch.setattr(make_figures.shutil, "which", lambda name: None)  # no Graphviz: that picture is skipped
    make_figures.main(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["im2col.png", "pooling.png"]
    _, pooled, indices, unpooled, _ = (t.numpy()[0, 0] for t, _ in make_figures.pooling_example())
    assert unpooled.reshape(-1)[indices.reshape(-1)].tolist() == pooled.reshape(-1).tolist()
