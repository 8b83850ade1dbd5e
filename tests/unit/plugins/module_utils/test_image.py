"""A disk's first content from a prebuilt image: real qemu-img and 7z, a real HTTP server on
127.0.0.1 started here, no outside network. Checksums are of the file as downloaded; nothing is
left behind on any failure; hostile names go through verbatim."""

from __future__ import annotations

import bz2
import fcntl
import gzip
import hashlib
import http.server
import json
import lzma
import os
import re
import subprocess
import sys
import threading
import time
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

    def boom(path, budget):
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


# A misbehaving world: servers and files that never end, drip, lie, redirect elsewhere or carry
# secrets, and runs that are killed halfway. Each case ends in bounded time, is refused with a
# message naming what and the fix, and leaves nothing in the pool.

class Misbehaving:
    """An HTTP server on 127.0.0.1 whose handler is given per test: handle(handler) writes the
    whole response (status, headers, body) to handler.wfile."""

    def __init__(self, handle):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                try:
                    handle(self)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path="/a.qcow2", auth=""):
        return "http://%s127.0.0.1:%d%s" % (auth, self.httpd.server_address[1], path)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def misbehaving():
    servers = []

    def start(handle):
        servers.append(Misbehaving(handle))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def headers(handler, code=200, **fields):
    handler.send_response(code)
    for key, value in fields.items():
        handler.send_header(key.replace("_", "-"), str(value))
    handler.end_headers()


def endless(handler):
    headers(handler, Connection="close")
    block = b"\0" * MIB
    while True:
        handler.wfile.write(block)


def drip(handler):
    headers(handler, Connection="close")
    while True:
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.2)


ZERO = "sha256:" + "0" * 64


def test_an_endless_stream_stops_at_the_disks_size(misbehaving, pool):
    server = misbehaving(endless)
    started = time.monotonic()
    with pytest.raises(image.ImageError, match=r"more than the disk's size allows \(at most %d bytes\).*larger disk"
                       % image.byte_limit(16 * MIB)):
        image.place({"url": server.url(), "checksum": ZERO}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert os.listdir(pool) == [] and time.monotonic() - started < 30


def test_a_drip_meets_the_deadline_not_each_reads_timeout(misbehaving, pool):
    server = misbehaving(drip)
    started = time.monotonic()
    with pytest.raises(image.ImageError, match=r"did not finish within the source's deadline of 2 seconds"):
        image.place({"url": server.url(), "checksum": ZERO, "timeout": 3, "deadline": 2}, str(pool / "d.qcow2"),
                    16 * MIB, "qcow2")
    assert os.listdir(pool) == [] and time.monotonic() - started < 6


def test_a_body_announced_larger_than_the_disk_is_refused_before_writing(misbehaving, pool, monkeypatch):
    sent = []

    def huge(handler):
        headers(handler, Content_Length=10 * 1024 * MIB)
        sent.append(handler.wfile.write(b"x" * 4096))

    written = []
    monkeypatch.setattr(image.Budget, "copy", lambda *a, **k: written.append(1))
    with pytest.raises(image.ImageError, match=r"the download of http://127\.0\.0\.1:\d+/a\.qcow2 is %d bytes or "
                       r"more, more than the disk's size allows" % (10 * 1024 * MIB)):
        image.place({"url": misbehaving(huge).url(), "checksum": ZERO}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert written == [] and os.listdir(pool) == []


def test_a_decompression_bomb_stops_at_the_disks_size(served, pool):
    root, server = served
    bomb = root / "bomb.qcow2.xz"
    with lzma.open(bomb, "wb", preset=0) as out:
        for _block in range(256):
            out.write(b"\0" * MIB)
    assert bomb.stat().st_size < MIB  # 256 MiB of zeros
    with pytest.raises(image.ImageError, match=r"the xz download, decompressed, is \d+ bytes or more, more than "
                                               r"the disk's size allows"):
        image.place({"url": server.url(bomb.name), "checksum": sha256(bomb)}, str(pool / "d.qcow2"), 16 * MIB,
                    "qcow2")
    assert os.listdir(pool) == []


def test_a_7z_whose_image_is_stated_larger_than_the_disk_is_refused_before_extracting(served, pool, tmp_path,
                                                                                      monkeypatch):
    root, server = served
    work = tmp_path / "work"
    work.mkdir()
    with open(work / "big.img", "wb") as out:
        out.truncate(100 * MIB)
    archive = root / "big.7z"
    subprocess.run(["7z", "a", "-bd", "-y", str(archive), "."], cwd=work, check=True, capture_output=True)
    extracted = []
    monkeypatch.setattr(image, "_extract", lambda *a: extracted.append(a))
    with pytest.raises(image.ImageError, match=r"'big\.img' in the 7z archive is %d bytes or more" % (100 * MIB)):
        image.place({"url": server.url(archive.name), "checksum": sha256(archive), "format": "raw"},
                    str(pool / "d.img"), 16 * MIB, "raw")
    assert extracted == [] and os.listdir(pool) == []


def test_the_filesystem_keeps_its_reserve(served, pool, monkeypatch):
    root, server = served
    src = qcow2(root / "img.qcow2")
    monkeypatch.setattr(image, "free_space", lambda directory: image.reserve(directory) + 1000)
    with pytest.raises(image.ImageError, match=r"needs \d+ bytes, but .*pool has \d+ bytes free and keeps \d+ of "
                                               r"them for the other disks.*Free some space there"):
        image.place({"url": server.url(src.name), "checksum": sha256(src)}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert os.listdir(pool) == []


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/a.qcow2", "file:///etc/passwd"])
def test_a_redirect_to_another_scheme_is_refused(misbehaving, pool, location):
    server = misbehaving(lambda h: headers(h, 302, Location=location, Content_Length=0))
    with pytest.raises(image.ImageError, match=r"redirects to %s, which is not http or https" % re.escape(location)):
        image.place({"url": server.url(), "checksum": ZERO}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert os.listdir(pool) == []


def test_redirects_within_http_are_followed_and_bounded(served, misbehaving, pool):
    root, server = served
    src = qcow2(root / "img.qcow2")
    hop = misbehaving(lambda h: headers(h, 301, Location=server.url(src.name), Content_Length=0))
    image.place({"url": hop.url(), "checksum": sha256(src)}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert info(pool / "d.qcow2")["format"] == "qcow2"
    loop = misbehaving(lambda h: headers(h, 307, Location="/again", Content_Length=0))
    with pytest.raises(image.ImageError, match="more than 10 redirects"):
        image.place({"url": loop.url(), "checksum": ZERO}, str(pool / "e.qcow2"), 16 * MIB, "qcow2")
    assert os.listdir(pool) == ["d.qcow2"]


def test_a_gzip_content_encoding_is_not_undone(misbehaving, pool, tmp_path):
    """The checksum is of the file as published: a .qcow2.gz served with Content-Encoding: gzip (a
    common server setting) arrives as the .gz file and is decompressed once, by its suffix."""
    raw = qcow2(tmp_path / "img.qcow2").read_bytes()
    packed = gzip.compress(raw)
    seen = []

    def encoded(handler):
        seen.append(handler.headers.get("Accept-Encoding"))
        headers(handler, Content_Encoding="gzip", Content_Length=len(packed))
        handler.wfile.write(packed)

    server = misbehaving(encoded)
    image.place({"url": server.url("/img.qcow2.gz"), "checksum": "sha256:" + hashlib.sha256(packed).hexdigest()},
                str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert (pool / "d.qcow2").read_bytes()[:len(raw)] == raw[:len(raw)] and seen == ["identity"]


def test_credentials_in_a_url_never_reach_a_message(misbehaving, pool):
    server = misbehaving(lambda h: headers(h, 403, Content_Length=0))
    url = server.url(auth="tim:s3cr%40t@")
    with pytest.raises(image.ImageError) as caught:
        image.place({"url": url, "checksum": ZERO}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    message = str(caught.value)
    assert "403" in message and "***@127.0.0.1" in message
    assert "s3cr" not in message and "tim" not in message
    assert image.describe({"url": url}) == server.url(auth="***@")
    bad = image.source_errors({"url": "ftp://tim:s3cret@h/a", "checksum": ZERO}, "src")
    assert bad and "s3cret" not in bad[0] and "ftp://***@h/a" in bad[0]
    assert set(image.secrets({"url": url})) == {"s3cr%40t", "s3cr@t", "tim:s3cr%40t"}


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_path_that_is_not_a_regular_file_is_refused(tmp_path, pool, kind):
    path = {"fifo": tmp_path / "fifo", "device": "/dev/zero", "directory": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(path)  # nothing writes to it: opening it must not wait
    with pytest.raises(image.ImageError, match=r"is not a regular file .*give an image file"):
        image.place({"path": str(path), "checksum": ZERO}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert os.listdir(pool) == []


def test_an_encrypted_image_is_refused(served, pool):
    root, server = served
    src = root / "luks.qcow2"
    # qemu-img times its key derivation and fails now and then on a loaded machine ("Unable to get
    # accurate CPU usage"): a few tries.
    for _try in range(5):
        made = subprocess.run(["qemu-img", "create", "-q", "--object", "secret,id=s0,data=abc", "-f", "qcow2", "-o",
                               "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=250", str(src), "16M"],
                              capture_output=True, text=True, check=False)
        if made.returncode == 0:
            break
    assert made.returncode == 0, made.stderr
    with pytest.raises(image.ImageError, match="the image is encrypted"):
        image.place({"url": server.url(src.name), "checksum": sha256(src)}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert os.listdir(pool) == []


def test_stale_parts_are_only_the_unlocked_temporary_files_of_that_disk(pool):
    stale = pool / ".d.qcow2.ab_cd3fg.download.part"
    live = pool / ".d.qcow2.xy_9zz1k.image.part"
    others = [pool / ".e.qcow2.ab_cd3fg.download.part", pool / ".d.qcow2.notes", pool / "d.qcow2",
              pool / ".d.qcow2.toolongname.download.part", pool / ".d.qcow2.ab_cd3fg.other.part"]
    for path in [stale, live, *others]:
        path.write_bytes(b"x")
    os.symlink("/etc/hostname", pool / ".d.qcow2.ab_cd3fh.download.part")
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert image.stale_parts(str(pool), "d.qcow2", remove=False) == [str(stale)]
        assert stale.exists()
        assert image.stale_parts(str(pool), "d.qcow2", remove=True) == [str(stale)]
    assert not stale.exists() and live.exists() and all(path.exists() for path in others)
    assert image.stale_parts(str(pool), "d.qcow2", remove=True) == [str(live)]  # its run is gone


KILLED = r"""
import sys
sys.path[:0] = [%r]
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import image
image.place({"url": sys.argv[1], "checksum": "sha256:" + "0" * 64, "timeout": 60}, sys.argv[2], 64 << 20, "qcow2")
"""


def test_a_run_killed_mid_download_leaves_a_part_the_next_run_removes(misbehaving, served, pool):
    root, server = served
    src = qcow2(root / "img.qcow2")
    slow = misbehaving(drip)
    collections = next(p for p in map(os.path.abspath, sys.path) if p.endswith("collections"))
    proc = subprocess.Popen([sys.executable, "-c", KILLED % collections, slow.url(),
                             str(pool / "d.qcow2")])
    try:
        for _attempt in range(100):
            parts = [p for p in os.listdir(pool) if p.endswith(".download.part")]
            if parts:
                break
            time.sleep(0.1)
        assert parts and proc.poll() is None, "the download never started"
        time.sleep(0.5)  # a few bytes in
        assert image.stale_parts(str(pool), "d.qcow2", remove=False) == []  # held by the live run
    finally:
        proc.kill()
        proc.wait()
    assert os.listdir(pool) == parts  # SIGKILL: nothing could clean up
    assert image.stale_parts(str(pool), "d.qcow2", remove=True) == [str(pool / parts[0])]
    image.place({"url": server.url(src.name), "checksum": sha256(src)}, str(pool / "d.qcow2"), 16 * MIB, "qcow2")
    assert os.listdir(pool) == ["d.qcow2"]
