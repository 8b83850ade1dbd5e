"""A disk's first content from a prebuilt image (disks[].source), served by an HTTP server on the
container's loopback that the test starts: downloaded once, its checksum verified, decompressed
(7z, as Kali publishes its QEMU image), grown to the spec's size; a disk that exists is never
touched, and a wrong checksum fails naming both sums with nothing left behind. No outside network."""

from __future__ import annotations

import json

import pytest
from conftest import disk_source_spec as spec

V = "virsh -c qemu:///system "
PORT = 18089
WEB = "/srv/kvmlab-images"
MARKER = "kvmlab-prebuilt-image"


def requests(host) -> list[str]:
    """The GET requests the server logged."""
    return [line for line in host.run("cat %s.log" % WEB).stdout.splitlines() if '"GET ' in line]


@pytest.fixture(scope="module")
def images(host):
    """A 1 MiB qcow2 image starting with MARKER, as `kali & co image.qcow2` in a 7z archive (the
    archive's name holds a space, & and a non-ASCII letter), and as a plain qcow2; served on
    127.0.0.1:PORT. Yields {name: sha256}."""
    host.run_test(
        f"set -e; rm -rf {WEB}; mkdir -p {WEB}/src; cd {WEB}/src; printf {MARKER} > raw; truncate -s 1M raw;"
        " qemu-img convert -q -f raw -O qcow2 raw 'kali & co image.qcow2'; rm raw;"
        " 7z a -bd -y '../kali & cö.7z' 'kali & co image.qcow2' >/dev/null;"
        " cp 'kali & co image.qcow2' ../plain.qcow2")
    host.run_test("systemd-run --unit kvmlab-image-server --property=WorkingDirectory=%s"
                  " sh -c 'exec python3 -m http.server --bind 127.0.0.1 %d > %s.log 2>&1'" % (WEB, PORT, WEB))
    host.run_test("for i in $(seq 50); do python3 -c 'import urllib.request; urllib.request.urlopen("
                  "\"http://127.0.0.1:%d/plain.qcow2\")' 2>/dev/null && exit 0; sleep 0.2; done; exit 1" % PORT)
    sums = {name: host.check_output("sha256sum '%s/%s' | cut -d' ' -f1" % (WEB, name))
            for name in ("kali & cö.7z", "plain.qcow2")}
    yield sums
    host.run("systemctl stop kvmlab-image-server; rm -rf %s %s.log" % (WEB, WEB))


def url(file: str) -> str:
    return "http://127.0.0.1:%d/%s" % (PORT, file.replace(" ", "%20").replace("&", "%26")
                                       .replace("ö", "%C3%B6"))


def test_a_7z_image_becomes_the_disk_once_grown_to_the_spec(host, guest, images, name):
    disk = "/mnt/vm/%s.qcow2" % name
    source = {"url": url("kali & cö.7z"), "checksum": "sha256:" + images["kali & cö.7z"]}
    before = len(requests(host))
    check = guest(spec(name, source), "--check", "--diff")
    assert check.rc == 0 and check.changed > 0, check
    assert not host.file(disk).exists and len(requests(host)) == before  # check mode downloads nothing

    run = guest(spec(name, source))
    assert run.rc == 0, run
    assert len(requests(host)) == before + 1
    info = json.loads(host.check_output("qemu-img info --output=json " + disk))
    assert info["format"] == "qcow2" and info["virtual-size"] == 64 * 1024 ** 2
    # The image's content, not a blank disk.
    raw = "/tmp/%s.raw" % name
    head = host.check_output("qemu-img convert -f qcow2 -O raw %s %s && head -c %d %s; rm -f %s"
                             % (disk, raw, len(MARKER), raw, raw))
    assert head == MARKER
    assert host.check_output(V + "vol-path --pool vm %s.qcow2" % name) == disk
    assert host.run("ls -a /mnt/vm | grep -F .kvmlab").stdout == ""  # no temporary file left

    # An existing disk keeps its content, and its source is not fetched again.
    host.run_test("qemu-io -f qcow2 -c 'write -P 0x55 1M 4k' %s" % disk)
    again = guest(spec(name, source))
    assert again.rc == 0 and again.changed == 0, again
    assert len(requests(host)) == before + 1
    read = host.check_output("qemu-io -f qcow2 -c 'read -P 0x55 1M 4k' %s" % disk)
    assert "read 4096/4096 bytes" in read and "verification failed" not in read


def test_a_wrong_checksum_fails_naming_both_sums_and_leaves_nothing(host, guest, images, name):
    wrong = "0" * 64
    listing = host.check_output("ls -a /mnt/vm")
    run = guest(spec(name, {"url": url("plain.qcow2"), "checksum": "sha256:" + wrong}))
    assert run.rc != 0, run
    out = run.stdout + run.stderr
    assert wrong in out and images["plain.qcow2"] in out, run
    assert host.check_output("ls -a /mnt/vm") == listing
    assert host.run(V + "vol-info --pool vm %s.qcow2" % name).rc != 0
