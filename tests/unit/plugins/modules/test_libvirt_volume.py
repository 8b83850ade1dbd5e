"""libvirt_volume's deprecated directories: the missing ones are made, existing ones never touched, and a
path that is no directory stops the call before any change. Volumes from a source: made once,
verified, seen by the pool; an existing volume ignores its source."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import lzma
import os
import re
import subprocess
import threading
import types
import typing
from xml.sax.saxutils import escape as xml_escape

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import libvirt_common
from ansible_collections.kvmlab.hypervisor.plugins.modules import libvirt_volume as mod


class Failed(Exception):
    pass


class Module:
    def __init__(self, check_mode=False, **params):
        self.params = {"volumes": [], "directories": [], "uri": "x"}
        self.params.update(params)
        self.check_mode = check_mode
        self.warnings: list[str] = []

    def fail_json(self, **kw):
        raise Failed(kw["msg"])

    def warn(self, message):
        self.warnings.append(message)


def test_missing_directories_are_made_and_existing_ones_keep_their_mode(tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir(mode=0o700)
    new = tmp_path / "Tim's \"R&D\" share" / "deep"
    result = mod.core(Module(directories=[str(kept), str(new)]))
    assert result["changed"] and result["directories"] == [str(new)]
    assert new.is_dir() and (kept.stat().st_mode & 0o777) == 0o700
    assert mod.core(Module(directories=[str(kept), str(new)]))["changed"] is False


def test_check_mode_predicts_and_makes_nothing(tmp_path):
    result = mod.core(Module(check_mode=True, directories=[str(tmp_path / "a")]))
    assert result["changed"] and result["directories"] == [str(tmp_path / "a")]
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(("name", "message"), [
    ("file", "exists but is not a directory; move it away."),
    ("relative", "is relative; give an absolute path."),
])
def test_a_path_that_cannot_be_a_directory_stops_before_any_change(tmp_path, name, message):
    (tmp_path / "file").write_text("data")
    path = str(tmp_path / "file") if name == "file" else "share"
    with pytest.raises(Failed, match=message):
        mod.core(Module(directories=[str(tmp_path / "first"), path]))
    assert not os.path.exists(tmp_path / "first")


# Volumes from a source, against a fake libvirt whose dir pool lists the files of a real
# directory only after a refresh (as libvirt does for files copied in by hand), and a real HTTP
# server on 127.0.0.1 that counts its requests.

class LibvirtError(Exception):
    def get_error_code(self):
        return 50  # VIR_ERR_NO_STORAGE_VOL


FAKE = types.SimpleNamespace(libvirtError=LibvirtError, VIR_ERR_NO_STORAGE_POOL=49, VIR_ERR_NO_NETWORK=43,
                             VIR_ERR_NO_STORAGE_VOL=50, VIR_ERR_NO_DOMAIN=42,
                             VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA=1)


class Vol:
    def __init__(self, path):
        self.file = path

    def info(self):
        return [0, json.loads(subprocess.run(["qemu-img", "info", "--output=json", self.file], check=True,
                                             capture_output=True).stdout)["virtual-size"], 0]

    def XMLDesc(self, flags):
        return "<volume><target><format type='qcow2'/></target></volume>"

    def path(self):
        return self.file


class Pool:
    def __init__(self, directory):
        self.dir, self.calls = str(directory), []
        self.listed = set(os.listdir(directory))

    def isActive(self):
        return True

    def XMLDesc(self, flags):
        return "<pool><target><path>%s</path></target></pool>" % xml_escape(self.dir)

    def refresh(self, flags):
        self.calls.append("refresh")
        self.listed = set(os.listdir(self.dir))

    def storageVolLookupByName(self, name):
        if name not in self.listed:
            raise LibvirtError("no volume %s" % name)
        return Vol(os.path.join(self.dir, name))

    def createXML(self, xml, flags):
        raise AssertionError("a volume with a source is never created by libvirt")


class Conn:
    def __init__(self, pool):
        self.pool = pool

    def storagePoolLookupByName(self, name):
        return self.pool


class Handler(http.server.SimpleHTTPRequestHandler):
    requests: typing.ClassVar[list] = []

    def do_GET(self):
        Handler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def site(tmp_path, monkeypatch):
    """(pool directory, fake pool, url of a served 16M qcow2, its checksum); the module talks to the fake."""
    www, pool_dir = tmp_path / "www", tmp_path / "pool R&D ü"
    www.mkdir()
    pool_dir.mkdir()
    name = "Arch-Linux x86_64 'basic' ü.qcow2.xz"
    raw = www / "raw.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(raw), "16M"], check=True)
    (www / name).write_bytes(lzma.compress(raw.read_bytes()))
    checksum = "sha256:" + hashlib.sha256((www / name).read_bytes()).hexdigest()
    Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    pool = Pool(pool_dir)
    monkeypatch.setattr(mod.volumes, "libvirt", FAKE)
    monkeypatch.setattr(libvirt_common, "libvirt", FAKE)
    monkeypatch.setattr(mod, "connect", lambda module, uri, predicted: Conn(pool))
    yield pool_dir, pool, "http://127.0.0.1:%d/%s" % (httpd.server_address[1], name), checksum
    httpd.shutdown()
    httpd.server_close()


def volume(source, **extra):
    spec = {"pool": "vm", "name": "arch.qcow2", "capacity": "64M", "format": "qcow2", "preallocation": "metadata",
            "backing_file": None, "backing_format": "qcow2", "allow_grow": False,
            "source": dict({"url": None, "path": None, "format": None, "compression": None, "timeout": 60}, **source)}
    spec.update(extra)
    return spec


def test_a_missing_volume_is_made_from_its_source_and_the_pool_sees_it(site):
    pool_dir, pool, url, checksum = site
    result = mod.core(Module(volumes=[volume({"url": url, "checksum": checksum})]))
    assert result["changed"] and result["actions"] == {"vm/arch.qcow2": "create_from_source"}
    assert result["paths"] == {"vm/arch.qcow2": str(pool_dir / "arch.qcow2")}
    assert result["sources"]["vm/arch.qcow2"] == {"source": url, "checksum": checksum, "compression": "xz"}
    assert result["diff"]["after"]["vm/arch.qcow2"] == {"capacity": 64 * 1024 * 1024, "format": "qcow2",
                                                        "source": url}
    assert os.listdir(pool_dir) == ["arch.qcow2"] and pool.calls == ["refresh", "refresh"]
    assert Vol(str(pool_dir / "arch.qcow2")).info()[1] == 64 * 1024 * 1024
    assert len(Handler.requests) == 1
    # Converged: the source is ignored, nothing is fetched again.
    again = mod.core(Module(volumes=[volume({"url": url, "checksum": checksum})]))
    assert again["changed"] is False and len(Handler.requests) == 1


def test_an_existing_volume_ignores_its_source_entirely(site):
    pool_dir, pool, url, _checksum = site
    (pool_dir / "arch.qcow2").write_bytes(b"")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(pool_dir / "arch.qcow2"), "64M"], check=True)
    before = (pool_dir / "arch.qcow2").read_bytes()
    pool.refresh(0)
    result = mod.core(Module(volumes=[volume({"url": url, "checksum": "sha256:" + "0" * 64})]))
    assert result["changed"] is False and result["actions"] == {} and Handler.requests == []
    assert (pool_dir / "arch.qcow2").read_bytes() == before


def test_check_mode_reports_the_source_and_downloads_nothing(site):
    pool_dir, _pool, url, checksum = site
    result = mod.core(Module(check_mode=True, volumes=[volume({"url": url, "checksum": checksum})]))
    assert result["changed"] and result["actions"] == {"vm/arch.qcow2": "create_from_source"}
    assert result["diff"]["after"]["vm/arch.qcow2"]["source"] == url
    assert result["paths"] == {"vm/arch.qcow2": str(pool_dir / "arch.qcow2")}
    assert Handler.requests == [] and os.listdir(pool_dir) == []


def test_a_wrong_checksum_fails_naming_both_sums_and_leaves_nothing(site):
    pool_dir, _pool, url, checksum = site
    wrong = "sha256:" + "f" * 64
    with pytest.raises(Failed) as caught:
        mod.core(Module(volumes=[volume({"url": url, "checksum": wrong})]))
    assert str(caught.value).startswith("volumes[vm/arch.qcow2].source: checksum mismatch")
    assert "expected %s, got %s" % (wrong, checksum) in str(caught.value)
    assert os.listdir(pool_dir) == []


@pytest.mark.parametrize(("source", "extra", "message"), [
    ({"url": "https://x/a.qcow2", "path": "/a.qcow2"}, {}, r"volumes\[vm/arch.qcow2\].source: give either .* not both"),
    ({}, {}, r"volumes\[vm/arch.qcow2\].source: give either .* one of them"),
    ({"url": "file:///a.qcow2"}, {}, r"source.url: 'file:///a.qcow2' is not an http"),
    ({"path": "/a.qcow2"}, {"backing_file": "/b.qcow2"}, "has no backing_file"),
    ({"path": "/a.qcow2", "format": "raw"}, {}, "the image is raw but the disk's format is qcow2"),
])
def test_a_bad_source_stops_before_any_change(site, source, extra, message):
    pool_dir, _pool, _url, checksum = site
    with pytest.raises(Failed, match=message):
        mod.core(Module(directories=[str(pool_dir / "share")],
                        volumes=[volume(dict({"checksum": checksum}, **source), **extra)]))
    assert os.listdir(pool_dir) == [] and Handler.requests == []


@pytest.mark.parametrize("check_mode", [True, False])
@pytest.mark.parametrize("exists", [True, False])
def test_a_killed_runs_partial_file_is_removed_and_named(site, check_mode, exists):
    """A run killed mid-download leaves .NAME.XXXXXXXX.download.part (nobody holds its lock): the
    next run for that volume removes it and warns, whether the volume exists by then or not;
    check mode names it and removes nothing. Other files are never touched."""
    pool_dir, _pool, url, checksum = site
    stale = pool_dir / ".arch.qcow2.k3j_x9aq.download.part"
    stale.write_bytes(b"partial")
    other = pool_dir / ".win11.qcow2.k3j_x9aq.download.part"
    other.write_bytes(b"not this volume's")
    if exists:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(pool_dir / "arch.qcow2"), "64M"], check=True)
    module = Module(check_mode=check_mode, volumes=[volume({"url": url, "checksum": checksum})])
    result = mod.core(module)
    assert result["changed"] and result["removed_partial"] == {"vm/arch.qcow2": [str(stale)]}
    assert stale.exists() == check_mode and other.exists()
    assert module.warnings == ["volumes[vm/arch.qcow2]: %s the partial files an interrupted run left: %s"
                               % ("would remove" if check_mode else "removed", stale)]
    assert result["diff"]["before"]["vm/arch.qcow2"]["partial_files"] == [str(stale)]
    if not check_mode:
        again = mod.core(Module(volumes=[volume({"url": url, "checksum": checksum})]))
        assert again["changed"] is False and again["removed_partial"] == {}


class Exited(Exception):
    pass


class ConnModule(Module):
    def exit_json(self, **kw):
        raise Exited(kw)


def refusing(monkeypatch, daemons):
    def open_(uri):
        raise FAKE.libvirtError("Failed to connect socket to '/var/run/libvirt/libvirt-sock': Connection refused")

    monkeypatch.setattr(libvirt_common, "libvirt", types.SimpleNamespace(libvirtError=LibvirtError, open=open_))
    monkeypatch.setattr(libvirt_common, "DAEMONS", tuple(daemons))


def test_check_mode_excuses_only_a_libvirt_that_is_not_installed_yet(monkeypatch, tmp_path):
    refusing(monkeypatch, [str(tmp_path / "no-libvirtd")])
    with pytest.raises(Exited) as done:
        libvirt_common.connect(ConnModule(check_mode=True), "qemu:///system", "would create the volumes")
    assert done.value.args[0]["changed"] is True and "not installed at qemu:///system yet" in done.value.args[0]["msg"]


@pytest.mark.parametrize("uri", ["qemu:///system", "qemu+ssh://admin@hv.example.com/system", "qemu:///sytem"])
def test_check_mode_fails_when_libvirt_is_installed_but_does_not_answer(monkeypatch, tmp_path, uri):
    """A daemon that is down, a wrong or remote URI, a refused permission: errors in check mode
    too, never a predicted change."""
    daemon = tmp_path / "libvirtd"
    daemon.write_text("")
    refusing(monkeypatch, [str(daemon)] if "ssh" not in uri else [str(tmp_path / "none")])
    with pytest.raises(Failed, match=r"cannot connect to libvirt at %s: .*Connection refused" % re.escape(uri)):
        libvirt_common.connect(ConnModule(check_mode=True), uri, "would create the volumes")
