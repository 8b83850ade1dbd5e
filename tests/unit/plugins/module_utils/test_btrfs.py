"""The btrfs subvolume of vm_storage: its fstab line (escaped, replaced in place, every other line
kept byte for byte), mountinfo read back with its escapes, every field checked before any change,
and the order and the refusals of converge() against a scripted host."""

from __future__ import annotations

import json
import os

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.filter.storage_errors import storage_errors
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import btrfs

UUID = "0b7e2c1a-5f0e-4b7a-9a57-3c1e2d4f5a6b"


def spec(**kw) -> dict:
    base = {"name": "@vm", "device": "/dev/vdb", "mount_point": "/mnt/vm", "mount_options": [], "nodatacow": False}
    base.update(kw)
    return base


# Mount points users really have: blanks, quotes, &, non-ASCII, a backslash.
POINTS = ["/mnt/vm", "/srv/VM images", "/mnt/it's & \"ok\"", "/mnt/Maschinen-ü", "/mnt/back\\slash", "/mnt/tab\there"]


@pytest.mark.parametrize("point", POINTS)
def test_an_fstab_line_reads_back_as_the_mount_point_it_was_written_for(point):
    line = btrfs.fstab_line(UUID, spec(mount_point=point, mount_options=["noatime", "compress=zstd:1"]))
    fields = line.split()
    assert len(fields) == 6, line  # nothing in the mount point splits the line
    assert btrfs.unescape(fields[1]) == point
    assert fields[0] == "UUID=" + UUID and fields[2:] == ["btrfs", "subvol=@vm,noatime,compress=zstd:1", "0", "0"]
    new, had = btrfs.plan_fstab("", point, line)
    assert had == "" and new == line + "\n"
    assert btrfs.plan_fstab(new, point, line) == (None, line)


FSTAB = ("# /etc/fstab: static file system information.\n"
         "UUID=aaaa /               btrfs   subvol=@,noatime 0 0\n"
         "\n"
         "#UUID=old /mnt/vm btrfs subvol=@old 0 0\n"
         "tmpfs /tmp tmpfs defaults\t0 0\n")


def test_a_missing_line_is_appended_and_every_other_line_kept_byte_for_byte():
    want = btrfs.fstab_line(UUID, spec())
    new, had = btrfs.plan_fstab(FSTAB, "/mnt/vm", want)
    assert had == "" and new == FSTAB + want + "\n"
    new, had = btrfs.plan_fstab(FSTAB.rstrip("\n"), "/mnt/vm", want)  # a last line without its newline
    assert had == "" and new == FSTAB + want + "\n"


def test_a_drifted_line_is_replaced_in_place_and_later_duplicates_dropped():
    want = btrfs.fstab_line(UUID, spec())
    text = FSTAB + "UUID=%s /mnt/vm btrfs subvol=@vm,ro 0 0\n# keep me\n/dev/vdc /mnt/vm ext4 defaults 0 2\n" % UUID
    new, had = btrfs.plan_fstab(text, "/mnt/vm", want)
    assert had == "UUID=%s /mnt/vm btrfs subvol=@vm,ro 0 0" % UUID
    assert new == FSTAB + want + "\n# keep me\n"
    assert btrfs.plan_fstab(new, "/mnt/vm", want) == (None, want)


def test_a_line_without_dump_and_pass_fields_counts_as_zero_zero():
    want = btrfs.fstab_line(UUID, spec())
    short = "UUID=%s /mnt/vm btrfs subvol=@vm\n" % UUID
    assert btrfs.plan_fstab(short, "/mnt/vm", want)[0] is None
    spaced = "UUID=%s\t/mnt/vm   btrfs subvol=@vm 0 0\n" % UUID  # other blanks between the fields
    assert btrfs.plan_fstab(spaced, "/mnt/vm", want)[0] is None


MOUNTINFO = ("22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw\n"
             "30 22 0:45 /@vm /srv/VM\\040images rw,relatime shared:9 - btrfs /dev/loop3 rw,subvol=/@vm\n"
             "31 22 0:46 /@vm /mnt/vm rw,relatime - btrfs /dev/loop3 rw,subvol=/@vm\n"
             "32 22 0:47 / /mnt/vm rw - tmpfs tmpfs rw\n")


def test_mountinfo_is_read_with_its_escapes_undone():
    entries = btrfs.mounts(MOUNTINFO)
    assert [e["mount_point"] for e in entries] == ["/", "/srv/VM images", "/mnt/vm", "/mnt/vm"]
    assert entries[1] == {"root": "/@vm", "mount_point": "/srv/VM images", "fstype": "btrfs", "source": "/dev/loop3"}
    assert btrfs.mounted_at("/dev/loop3", "@vm", entries) == ["/srv/VM images", "/mnt/vm"]
    assert btrfs.mounted_at("/dev/loop3", "@other", entries) == []


# Each field of the spec with values no fstab line or mount can take; each message names the field.
BAD = [
    ({"name": "a/b"}, "subvolume.name"), ({"name": ".."}, "subvolume.name"), ({"name": "my vm"}, "subvolume.name"),
    ({"name": "vm,ro"}, "subvolume.name"), ({"name": "vm\n"}, "subvolume.name"), ({"name": ""}, "subvolume.name"),
    ({"mount_point": "mnt/vm"}, "subvolume.mount_point"), ({"mount_point": "/mnt/vm/"}, "subvolume.mount_point"),
    ({"mount_point": "/"}, "subvolume.mount_point"), ({"mount_point": "/mnt/a\nb"}, "subvolume.mount_point"),
    ({"mount_point": "/mnt/../etc"}, "subvolume.mount_point"),
    ({"mount_options": ["noatime,ro"]}, "subvolume.mount_options"),
    ({"mount_options": ["a b"]}, "subvolume.mount_options"), ({"mount_options": [""]}, "subvolume.mount_options"),
    ({"mount_options": ["x\x1b[2J"]}, "subvolume.mount_options"),
    ({"mount_options": ["subvol=@"]}, "subvolume.mount_options"),
    ({"mount_options": ["subvolid=5"]}, "subvolume.mount_options"),
    ({"device": "sdb"}, "subvolume.device"),
]


@pytest.mark.parametrize("bad,field", BAD)
def test_every_field_no_fstab_line_can_hold_is_refused_by_name(bad, field):
    with pytest.raises(btrfs.BtrfsError, match="^" + field.replace(".", r"\.") + ": "):
        btrfs.validate(spec(**bad))


@pytest.mark.parametrize("bad,field", BAD)
def test_the_storage_role_checks_the_same_fields_on_the_controller_under_its_variables(bad, field):
    role = {"name": "kvmlab_storage_subvolume", "mount_point": "kvmlab_storage_mount_point",
            "mount_options": "kvmlab_storage_mount_options", "device": "kvmlab_storage_btrfs_device"}
    errors = storage_errors([], [], spec(**bad))
    assert len(errors) == 1 and errors[0].startswith(role[field.split(".")[1]] + ": "), errors
    assert storage_errors([], [], {}) == [] and storage_errors([], [], spec()) == []


@pytest.mark.parametrize("point", [p for p in POINTS if "\t" not in p])
def test_hostile_but_normal_mount_points_pass(point):
    btrfs.validate(spec(mount_point=point, mount_options=["noatime", "compress=zstd:3"]))


class Host:
    """A scripted host: what blkid, findmnt and mount answer, and every command run."""

    def __init__(self, fstype="btrfs", findmnt=None):
        self.fstype, self.findmnt, self.commands, self.check_mode = fstype, findmnt, [], False

    def run_command(self, argv):
        self.commands.append(argv)
        if argv[0] == "blkid":
            if not self.fstype:
                return 2, "", ""
            return 0, "DEVNAME=%s\nUUID=%s\nTYPE=%s\n" % (argv[-1], UUID, self.fstype), ""
        if argv[0] == "findmnt":
            return 0, json.dumps(self.findmnt), ""
        return 0, "", ""

    def atomic_move(self, src, dest, keep_dest_attrs=True):
        os.replace(src, dest)

    def warn(self, msg):
        pass


@pytest.fixture
def host(tmp_path, monkeypatch):
    fstab = tmp_path / "fstab"
    fstab.write_text(FSTAB)
    monkeypatch.setattr(btrfs, "FSTAB", str(fstab))
    monkeypatch.setattr(btrfs, "ensure_subvolume", lambda module, device, name, entries: False)
    return Host()


def test_an_unmounted_subvolume_gets_its_line_then_its_mount(host, tmp_path, monkeypatch):
    monkeypatch.setattr(btrfs, "read_mounts", lambda: btrfs.mounts(MOUNTINFO.splitlines()[0]))
    point = str(tmp_path / "VM images & ü")
    done = btrfs.converge(host, spec(mount_point=point))
    assert done["actions"] == ["fstab", "mount"]
    line = btrfs.fstab_line(UUID, spec(mount_point=point))
    assert btrfs.plan_fstab((tmp_path / "fstab").read_text(), point, line)[0] is None
    assert host.commands[-1] == ["mount", point]
    assert done["diff"]["after"]["mount " + point] == {"mounted": True}


def test_check_mode_reports_the_same_and_writes_nothing(host, tmp_path, monkeypatch):
    monkeypatch.setattr(btrfs, "read_mounts", lambda: [])
    host.check_mode = True
    done = btrfs.converge(host, spec(mount_point=str(tmp_path / "vm"), nodatacow=True))
    assert done["actions"] == ["fstab", "mount", "nodatacow"]
    assert (tmp_path / "fstab").read_text() == FSTAB and not (tmp_path / "vm").exists()
    assert [c[0] for c in host.commands] == ["blkid"]


def test_a_filesystem_that_is_not_btrfs_is_refused_before_any_change(host, tmp_path):
    host.fstype = "ext4"
    with pytest.raises(btrfs.BtrfsError, match=r"^/dev/vdb is ext4, not btrfs") as err:
        btrfs.converge(host, spec())
    assert err.value.details == {"not_btrfs": True, "fstype": "ext4"}
    host.findmnt = {"filesystems": [{"fstype": "overlay", "uuid": None, "source": "overlay"}]}
    with pytest.raises(btrfs.BtrfsError, match=r"^The filesystem of / is overlay, not btrfs"):
        btrfs.converge(host, spec(device=""))
    assert (tmp_path / "fstab").read_text() == FSTAB and [c[0] for c in host.commands] == ["blkid", "findmnt"]


def test_the_root_filesystems_device_is_taken_without_its_subvolume(host):
    host.findmnt = {"filesystems": [{"fstype": "btrfs", "uuid": UUID, "source": "/dev/nvme0n1p2[/@]"}]}
    assert btrfs.find_filesystem(host.run_command, "") == {"fstype": "btrfs", "uuid": UUID, "source": "/dev/nvme0n1p2"}


def test_something_else_mounted_at_the_mount_point_is_refused(host, monkeypatch):
    monkeypatch.setattr(btrfs, "read_mounts", lambda: btrfs.mounts(MOUNTINFO))
    with pytest.raises(btrfs.BtrfsError, match=r"tmpfs is mounted at /mnt/vm .*not the @vm subvolume"):
        btrfs.converge(host, spec())


def test_a_mounted_subvolume_whose_line_drifted_is_remounted(host, tmp_path, monkeypatch):
    monkeypatch.setattr(btrfs, "read_mounts", lambda: btrfs.mounts("\n".join(MOUNTINFO.splitlines()[:3])))
    done = btrfs.converge(host, spec())
    assert done["actions"] == ["fstab", "remount"] and host.commands[-1] == ["mount", "-o", "remount", "/mnt/vm"]
    host.commands.clear()
    assert btrfs.converge(host, spec())["actions"] == [] and [c[0] for c in host.commands] == ["blkid"]
