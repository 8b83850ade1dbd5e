"""A disk's first content from a prebuilt image: real qemu-img and 7z, a real HTTP server on
127.0.0.1 started here, no outside network. Checksums are of the file as downloaded; nothing is
left behind on any failure; hostile names go through verbatim."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.server
import json
import lzma
import os
import re
import subprocess
import threading
import urllib.parse

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import image

MIB = 1024 * 1024
HOSTILE = "Tim's \"R&D\" image ünïcødé ß"


def qcow2(path, size="16M", fmt="qcow2"):
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), size], check=True)
    return path


def sha256(path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def info(path) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)], check=True,
                                     capture_output=True).stdout)


class Server:
    """A static HTTP server over a directory, counting its requests."""

    def __init__(self, root):
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kw):
                super().__init__(*args, directory=str(root), **kw)

            def do_GET(self):
                server.requests.append(urllib.parse.unquote(self.path))
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return "http://127.0.0.1:%d/%s" % (self.httpd.server_address[1], name)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = Server(root)
    yield root, server
    server.stop()


@pytest.fixture
def pool(tmp_path):
    path = tmp_path / "pool"
    path.mkdir()
    return path


def test_download_verify_resize_creates_the_volume(served, pool):
    root, server = served
    src = qcow2(root / "Arch-Linux-x86_64-basic.qcow2")
    result = image.place({"url": server.url(src.name), "checksum": sha256(src)}, str(pool / "arch.qcow2"),
                         64 * MIB, "qcow2")
    assert result["virtual_size"] == 16 * MIB and result["format"] == "qcow2" and result["compression"] == "none"
    assert info(pool / "arch.qcow2")["virtual-size"] == 64 * MIB
    assert os.listdir(pool) == ["arch.qcow2"] and server.requests == ["/" + src.name]


@pytest.mark.parametrize(("suffix", "pack"), [
    (".xz", lzma.compress), (".gz", gzip.compress), (".bz2", bz2.compress)])
def test_stdlib_compressions_by_suffix(served, pool, suffix, pack):
    root, server = served
    raw = qcow2(root / "img.qcow2")
    packed = root / ("img.qcow2" + suffix)
    packed.write_bytes(pack(raw.read_bytes()))
    image.place({"url": server.url(packed.name), "checksum": sha256(packed)}, str(pool / "d.qcow2"), 16 * MIB,
                "qcow2")
    assert (pool / "d.qcow2").read_bytes() == raw.read_bytes() and os.listdir(pool) == ["d.qcow2"]


def test_explicit_compression_beats_the_suffix(served, pool):
    root, server = served
    raw = qcow2(root / "img.qcow2")
    packed = root / "download"
    packed.write_bytes(lzma.compress(raw.read_bytes()))
    image.place({"url": server.url("download"), "checksum": sha256(packed), "compression": "xz"},
                str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert info(pool / "d.qcow2")["format"] == "qcow2"


def test_7z_archive_with_one_image_among_other_files(served, pool, tmp_path):
    root, server = served
    work = tmp_path / "work"
    work.mkdir()
    qcow2(work / ("kali-linux-2025.2-qemu-amd64 %s.qcow2" % HOSTILE))
    (work / "README.txt").write_text("read me")
    archive = root / "kali-linux-2025.2-qemu-amd64.7z"
    subprocess.run(["7z", "a", "-bd", "-y", str(archive), "."], cwd=work, check=True, capture_output=True)
    result = image.place({"url": server.url(archive.name), "checksum": sha256(archive)}, str(pool / "kali.qcow2"),
                         32 * MIB, "qcow2")
    assert result["compression"] == "7z" and info(pool / "kali.qcow2")["virtual-size"] == 32 * MIB
    assert os.listdir(pool) == ["kali.qcow2"]


def test_7z_archive_with_two_images_is_refused_naming_them(served, pool, tmp_path):
    root, server = served
    work = tmp_path / "work"
    work.mkdir()
    qcow2(work / "a.qcow2")
    qcow2(work / "b.img", fmt="raw")
    archive = root / "two.7z"
    subprocess.run(["7z", "a", "-bd", "-y", str(archive), "."], cwd=work, check=True, capture_output=True)
    with pytest.raises(image.ImageError, match=r"exactly one disk image.*'a\.qcow2'.*'b\.img'"):
        image.place({"url": server.url(archive.name), "checksum": sha256(archive)}, str(pool / "k.qcow2"),
                    32 * MIB, "qcow2")
    assert os.listdir(pool) == []


def test_wrong_checksum_names_both_sums_and_leaves_nothing(served, pool):
    root, server = served
    src = qcow2(root / "img.qcow2")
    wrong = "sha512:" + "ab" * 64
    actual = hashlib.sha512(src.read_bytes()).hexdigest()
    with pytest.raises(image.ImageError) as caught:
        image.place({"url": server.url("img.qcow2"), "checksum": wrong}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert "expected %s" % wrong in str(caught.value) and "got sha512:%s" % actual in str(caught.value)
    assert os.listdir(pool) == []


def test_format_mismatch_is_refused(served, pool):
    root, server = served
    src = qcow2(root / "img.raw", fmt="raw")
    with pytest.raises(image.ImageError, match="the image is raw according to qemu-img, not qcow2"):
        image.place({"url": server.url(src.name), "checksum": sha256(src)}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert os.listdir(pool) == []


def test_an_undecompressed_archive_is_a_format_mismatch(served, pool):
    root, server = served
    packed = root / "img"
    packed.write_bytes(lzma.compress(qcow2(root / "x.qcow2").read_bytes()))
    with pytest.raises(image.ImageError, match=r"is raw according to qemu-img, not qcow2 .compression none"):
        image.place({"url": server.url("img"), "checksum": sha256(packed)}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert os.listdir(pool) == []


def test_raw_image_grows(served, pool):
    root, server = served
    src = qcow2(root / "img.raw", fmt="raw")
    image.place({"url": server.url(src.name), "checksum": sha256(src), "format": "raw"}, str(pool / "d.img"),
                20 * MIB, "raw")
    assert (pool / "d.img").stat().st_size == 20 * MIB


def test_shrinking_is_refused_naming_both_sizes(served, pool):
    root, server = served
    src = qcow2(root / "img.qcow2", size="64M")
    with pytest.raises(image.ImageError, match="%d bytes, larger than the disk's size of %d bytes" % (64 * MIB,
                                                                                                      16 * MIB)):
        image.place({"url": server.url(src.name), "checksum": sha256(src)}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert os.listdir(pool) == []


def test_a_backing_file_in_the_image_is_refused(served, pool):
    root, server = served
    base = qcow2(root / "base.qcow2")
    over = root / "over.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(over)], check=True)
    with pytest.raises(image.ImageError, match="backing or data file"):
        image.place({"url": server.url(over.name), "checksum": sha256(over)}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert os.listdir(pool) == []


def test_an_existing_destination_is_never_touched_nor_fetched(served, pool):
    root, server = served
    src = qcow2(root / "img.qcow2")
    (pool / "d.qcow2").write_bytes(b"mine")
    with pytest.raises(image.ImageError, match="exists already"):
        image.place({"url": server.url(src.name), "checksum": sha256(src)}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert (pool / "d.qcow2").read_bytes() == b"mine" and server.requests == []


def test_hostile_names_work_verbatim(served, pool):
    root, server = served
    name = HOSTILE + " & more.qcow2.xz"
    packed = root / name
    packed.write_bytes(lzma.compress(qcow2(root / "x.qcow2").read_bytes()))
    dest = pool / ("disk %s.qcow2" % HOSTILE)
    image.place({"url": server.url(name), "checksum": sha256(packed)}, str(dest), 16 * MIB, "qcow2")
    assert server.requests == ["/" + name] and os.listdir(pool) == [dest.name]
    assert info(dest)["format"] == "qcow2"


def test_local_path_source_with_hostile_name(tmp_path, pool):
    src = qcow2(tmp_path / ("%s.qcow2" % HOSTILE))
    before = src.read_bytes()
    image.place({"path": str(src), "checksum": sha256(src)}, str(pool / "d.qcow2"), 32 * MIB, "qcow2")
    assert info(pool / "d.qcow2")["virtual-size"] == 32 * MIB and src.read_bytes() == before


def test_missing_url_and_unreachable_server_leave_nothing(served, pool):
    _root, server = served
    with pytest.raises(image.ImageError, match=r"cannot download .*404"):
        image.place({"url": server.url("nope.qcow2"), "checksum": "sha256:" + "0" * 64}, str(pool / "d.qcow2"),
                    16 * MIB, "qcow2")
    assert os.listdir(pool) == []


def test_an_exception_midway_leaves_nothing(served, pool, monkeypatch):
    root, server = served
    src = qcow2(root / "img.qcow2")

    def boom(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(image, "image_info", boom)
    with pytest.raises(KeyboardInterrupt):
        image.place({"url": server.url(src.name), "checksum": sha256(src)}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert os.listdir(pool) == []


@pytest.mark.parametrize(("source", "message"), [
    ({"checksum": "sha256:" + "0" * 64}, r"src: give either url \(http or https\) or path .*one of them"),
    ({"url": "https://x/a", "path": "/a", "checksum": "sha256:" + "0" * 64}, "src: give either .*not both"),
    ({"url": "ftp://x/a.qcow2", "checksum": "sha256:" + "0" * 64}, r"src\.url: 'ftp://x/a\.qcow2' is not an http"),
    ({"url": "file:///etc/passwd", "checksum": "sha256:" + "0" * 64}, r"src\.url: .* is not an http"),
    ({"path": "iso/a.qcow2", "checksum": "sha256:" + "0" * 64}, r"src\.path: 'iso/a\.qcow2' is not an absolute"),
    ({"path": "/a", "checksum": "md5:" + "0" * 32}, r"src\.checksum: 'md5:0+' is not a checksum"),
    ({"path": "/a", "checksum": "sha256:" + "0" * 63}, r"src\.checksum: .* sha256:<64 hex digits>"),
    ({"path": "/a"}, r"src\.checksum: None is not a checksum"),
    ({"path": "/a", "checksum": "sha256:" + "0" * 64, "format": "vmdk"}, r"src\.format: 'vmdk' is not one of"),
    ({"path": "/a", "checksum": "sha256:" + "0" * 64, "format": "raw"}, r"src\.format: the image is raw but the"),
    ({"path": "/a", "checksum": "sha256:" + "0" * 64, "compression": "zip"}, r"src\.compression: 'zip' is not"),
    ({"path": "/a", "checksum": "sha256:" + "0" * 64, "timeout": 0}, r"src\.timeout: must be a number"),
    ({"path": "/a", "checksum": "sha256:" + "0" * 64, "sum": 1}, r"src\.sum: unknown field"),
    ("https://x/a", r"src: must be a mapping"),
])
def test_source_errors(source, message):
    errors = image.source_errors(source, "src", "qcow2")
    assert len(errors) == 1 and re.search(message, errors[0]), errors


def test_good_sources_and_compressions():
    good = {"url": "https://geo.mirror.pkgbuild.com/images/latest/Arch-Linux-x86_64-basic.qcow2",
            "checksum": "SHA256:".lower() + "A" * 64}
    assert image.source_errors(good, "src", "qcow2") == []
    assert image.compression_of(good) == "none"
    assert image.compression_of({"url": "https://k/kali-linux-2025.2-qemu-amd64.7z?x=1"}) == "7z"
    assert image.compression_of({"path": "/a/B.QCOW2.XZ"}) == "xz"
    assert image.compression_of({"path": "/a/b.qcow2.xz", "compression": "none"}) == "none"


def test_request_url_percent_encodes_verbatim_names():
    assert image.request_url("http://h:8/a b/Tim's \"R&D\"/ü.qcow2?x=ä b&y=1") == (
        "http://h:8/a%20b/Tim's%20%22R&D%22/%C3%BC.qcow2?x=%C3%A4%20b&y=1")
    assert image.request_url("https://bücher.example/a%20b") == "https://xn--bcher-kva.example/a%20b"


def test_a_truncated_download_is_an_error_and_leaves_nothing(tmp_path, pool):
    class Short(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(10 * MIB))
            self.end_headers()
            self.wfile.write(b"x" * 1000)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Short)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(image.ImageError, match="cannot download"):
            image.place({"url": "http://127.0.0.1:%d/a.qcow2" % httpd.server_address[1], "timeout": 5,
                         "checksum": "sha256:" + "0" * 64}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert os.listdir(pool) == []
