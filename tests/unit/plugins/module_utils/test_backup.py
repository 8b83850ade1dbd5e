"""The backup layout's checks (module_utils/backup.py): what counts as a complete backup, a chain and
its links, and that every file a manifest records is checked - each case is derived from the
records a real backup directory yields, not from a hand-picked list."""

from __future__ import annotations

import json
import os
import socket
import stat
import time

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import backup as bk

UUID = "5abcc79e-48ae-52fb-92ce-d8c38215fcb8"


def make_backup(gdir, name, parent=None, chain=None, devs=("vda",)):
    """A backup directory as libvirt_backup writes it: disks, NVRAM, TPM tree, domain XML, manifest."""
    folder = gdir / name
    (folder / "tpm" / "sub").mkdir(parents=True)
    for dev in devs:
        (folder / (dev + ".qcow2")).write_bytes(b"QFI\xfb" + name.encode() * 100)
    (folder / "nvram.fd").write_bytes(b"\x00" * 4096 + name.encode())
    (folder / "tpm" / "tpm2-00.permall").write_bytes(b"tpm" + name.encode())
    (folder / "tpm" / "sub" / "extra").write_bytes(b"x")
    (folder / "domain.xml").write_text("<domain><name>%s</name></domain>" % gdir.name)
    disks = [dict(bk.file_record(str(folder / (d + ".qcow2")), d + ".qcow2", "/mnt/vm/%s.qcow2" % d), dev=d,
                  format="qcow2", type="file") for d in devs]
    manifest = {
        "format": bk.FORMAT, "guest": gdir.name, "name": name, "uuid": UUID,
        "kind": "full" if parent is None else "incremental", "parent": parent, "chain": chain or name,
        "checkpoint": "kvmlab-" + name, "disks": disks,
        "nvram": bk.file_record(str(folder / "nvram.fd"), "nvram.fd", "/mnt/vm/nv.fd"),
        "tpm": {"type": "external", "source": "/mnt/vm/tpm",
                "files": [bk.file_record(str(folder / "tpm" / r), os.path.join("tpm", r), None)
                          for r in ("tpm2-00.permall", "sub/extra")]},
        "domain_xml": bk.file_record(str(folder / "domain.xml"), "domain.xml"),
    }
    (folder / bk.MANIFEST).write_text(json.dumps(manifest))
    return manifest


def chain3(gdir):
    make_backup(gdir, "20261207T100000Z")
    make_backup(gdir, "20261207T110000Z", parent="20261207T100000Z", chain="20261207T100000Z")
    return make_backup(gdir, "20261207T120000Z", parent="20261207T110000Z", chain="20261207T100000Z")


@pytest.mark.parametrize("name", ["win11", "a b", "it's & \"q\"", "Grüße", "x;rm -rf", "-dash"])
def test_guest_names_are_directory_names_verbatim(tmp_path, name):
    assert bk.guest_dir(str(tmp_path), name) == os.path.join(str(tmp_path), name)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/", "a\nb", "a\x00b", "tab\there", "del\x7f"])
def test_names_that_could_leave_the_directory_are_refused(tmp_path, name):
    with pytest.raises(bk.BackupError, match="not a name"):
        bk.guest_dir(str(tmp_path), name)


def test_new_names_are_utc_times_made_unique(gdir):
    first = bk.new_name(str(gdir), 0)
    assert first == "19700101T000000Z" and bk.NAME_RE.match(first)
    (gdir / first).mkdir()
    (gdir / "19700101T000000Z-1.partial").mkdir()
    assert bk.new_name(str(gdir), 0) == "19700101T000000Z-2"


def test_only_directories_with_a_manifest_are_complete(gdir):
    chain3(gdir)
    (gdir / "20261207T130000Z.partial").mkdir()  # killed mid-backup
    (gdir / "20261207T140000Z").mkdir()  # no manifest
    (gdir / "holiday photos").mkdir()  # not ours: neither listed nor ever removed
    (gdir / "20261207T150000Z.txt").write_text("")
    os.symlink(str(gdir / "20261207T100000Z"), str(gdir / "20261207T160000Z"))
    complete, incomplete = bk.listing(str(gdir))
    assert complete == ["20261207T100000Z", "20261207T110000Z", "20261207T120000Z"]
    assert incomplete == ["20261207T130000Z.partial", "20261207T140000Z"]
    assert bk.listing(str(gdir / "missing")) == ([], [])


def test_a_chain_reads_from_its_full_backup(gdir):
    chain3(gdir)
    names = [m["name"] for m in bk.chain(str(gdir), "20261207T120000Z")]
    assert names == ["20261207T100000Z", "20261207T110000Z", "20261207T120000Z"]
    for m in bk.chain(str(gdir), "20261207T120000Z"):
        bk.verify(str(gdir), m)


@pytest.mark.parametrize("link", ["20261207T100000Z", "20261207T110000Z"])
def test_a_missing_link_is_named(gdir, link):
    chain3(gdir)
    os.rename(str(gdir / link), str(gdir / (link + ".partial")))
    with pytest.raises(bk.BackupError, match="backup 20261207T120000Z: the chain's link %s is missing" % link):
        bk.chain(str(gdir), "20261207T120000Z")


def rewrite(gdir, backup, **changes):
    path = gdir / backup / bk.MANIFEST
    m = json.loads(path.read_text())
    m.update(changes)
    path.write_text(json.dumps(m))


@pytest.mark.parametrize(("changes", "message"), [
    ({"parent": "20261207T120000Z"}, "loops"),
    ({"chain": "20261207T000000Z"}, "does not belong to the chain"),
    ({"uuid": "00000000-0000-0000-0000-000000000000"}, "does not belong to the chain"),
])
def test_links_of_another_chain_are_refused(gdir, changes, message):
    chain3(gdir)
    rewrite(gdir, "20261207T110000Z", **changes)
    with pytest.raises(bk.BackupError, match=message):
        bk.chain(str(gdir), "20261207T120000Z")


def test_a_link_with_other_disks_is_refused(gdir):
    make_backup(gdir, "20261207T100000Z")
    make_backup(gdir, "20261207T110000Z", parent="20261207T100000Z", chain="20261207T100000Z", devs=("vda", "vdb"))
    with pytest.raises(bk.BackupError, match="other disks"):
        bk.chain(str(gdir), "20261207T110000Z")


@pytest.mark.parametrize(("raw", "message"), [
    (b"{not json", "malformed"),
    (b"[]", "format"),
    (json.dumps({"format": 99}).encode(), "format is not 1"),
    (b" " * (bk.MANIFEST_MAX + 1), "larger than"),
])
def test_malformed_manifests_are_refused(gdir, raw, message):
    make_backup(gdir, "20261207T100000Z")
    (gdir / "20261207T100000Z" / bk.MANIFEST).write_bytes(raw)
    with pytest.raises(bk.BackupError, match=message):
        bk.read_manifest(str(gdir), "20261207T100000Z")


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": "20261207T090000Z"}, "it names guest"),
    ({"guest": "other"}, "it names guest"),
    ({"kind": "delta"}, "kind"),
    ({"kind": "incremental"}, "full backup has no parent"),
    ({"parent": "20261207T090000Z"}, "full backup has no parent"),
    ({"disks": [{"dev": "../../etc", "file": "../../etc.qcow2"}]}, "disk entry"),
    ({"disks": [{"dev": "vda", "file": "vdb.qcow2"}]}, "disk entry"),
])
def test_manifests_that_contradict_themselves_are_refused(gdir, changes, message):
    make_backup(gdir, "20261207T100000Z")
    rewrite(gdir, "20261207T100000Z", **changes)
    with pytest.raises(bk.BackupError, match=message):
        bk.read_manifest(str(gdir), "20261207T100000Z")


def every_record(gdir):
    m = chain3(gdir)
    return m, [r["file"] for r in bk.records(m)]


def test_every_file_of_a_backup_is_recorded(gdir):
    m, files = every_record(gdir)
    on_disk = sorted(os.path.relpath(os.path.join(d, f), str(gdir / m["name"]))
                     for d, _dirs, names in os.walk(str(gdir / m["name"])) for f in names)
    assert sorted([*files, bk.MANIFEST]) == on_disk


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove", "symlink"])
def test_each_recorded_file_is_checked(gdir, damage):
    """For every file the manifest records, each kind of damage is refused, naming that file."""
    m, files = every_record(gdir)
    for rel in files:
        path = str(gdir / m["name"] / rel)
        keep = open(path, "rb").read()
        if damage == "flip":
            with open(path, "r+b") as f:
                f.seek(len(keep) // 2)
                f.write(bytes([keep[len(keep) // 2] ^ 1]))
        elif damage == "truncate":
            open(path, "wb").write(keep[:-1])
        elif damage == "remove":
            os.unlink(path)
        else:
            os.unlink(path)
            open(path + ".real", "wb").write(keep)
            os.symlink(path + ".real", path)
        with pytest.raises(bk.BackupError, match=r"backup %s: .*%s" % (m["name"], rel.replace(".", "[.]"))):
            bk.verify(str(gdir), m)
        if os.path.lexists(path):
            os.unlink(path)
        open(path, "wb").write(keep)
        if os.path.exists(path + ".real"):
            os.unlink(path + ".real")
        bk.verify(str(gdir), m)


@pytest.mark.parametrize("rel", ["../20261207T100000Z/vda.qcow2", "/etc/passwd", "tpm/../../x", ""])
def test_a_manifest_cannot_point_outside_its_backup(gdir, rel):
    m = chain3(gdir)
    m["domain_xml"]["file"] = rel
    with pytest.raises(bk.BackupError, match="outside the backup"):
        bk.verify(str(gdir), m)


def test_one_backup_or_restore_of_a_guest_at_a_time(gdir):
    with bk.Lock(str(gdir), 1):
        with pytest.raises(bk.BackupError, match=r"another backup or restore holds .* for more than 0\.3 s"):
            with bk.Lock(str(gdir), 0.3):
                pass
    with bk.Lock(str(gdir), 0.3):  # released with the first
        pass
    assert stat.S_IMODE(os.stat(str(gdir / bk.LOCK)).st_mode) == 0o600


def test_space_is_refused_before_anything_is_written(gdir, monkeypatch):
    monkeypatch.setattr(bk, "free_bytes", lambda path: 500 << 20)
    bk.need_space("win11", "a full backup", str(gdir), 400 << 20)
    with pytest.raises(bk.BackupError, match=r"guest win11: a full backup needs about 536 MiB at .*, which has 500 MiB"
                       ):
        bk.need_space("win11", "a full backup", str(gdir), 450 << 20)


def test_tpm_trees_are_copied_with_modes_and_without_links(tmp_path):
    src = tmp_path / "tpm"
    (src / "d").mkdir(parents=True)
    (src / "tpm2-00.permall").write_bytes(b"state")
    os.chmod(str(src / "tpm2-00.permall"), 0o600)
    (src / "d" / "f").write_bytes(b"f")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "swtpm-sock"))
    files = bk.copy_tree(str(src), str(tmp_path / "copy"))
    sock.close()
    assert sorted(rel for _p, rel in files) == ["d/f", "tpm2-00.permall"]
    assert stat.S_IMODE(os.stat(str(tmp_path / "copy" / "tpm2-00.permall")).st_mode) == 0o600
    assert not os.path.exists(str(tmp_path / "copy" / "swtpm-sock"))
    os.symlink("/etc/passwd", str(src / "link"))
    with pytest.raises(bk.BackupError, match="neither a file nor a directory"):
        bk.copy_tree(str(src), str(tmp_path / "copy2"))


def test_hashing_is_bounded_by_the_runs_deadline(gdir):
    path = gdir / "big"
    path.write_bytes(b"\0" * (bk.CHUNK + 1))
    with pytest.raises(bk.BackupError, match="not done within the timeout; raise the timeout"):
        bk.sha256_file(str(path), time.monotonic() - 1)
    assert bk.sha256_file(str(path), time.monotonic() + 60) == bk.sha256_file(str(path))
