"""File names a person could have - quotes, '&', spaces, non-ASCII letters, even text that looks
like XML - reach libvirt, QEMU, swtpm and virtiofsd verbatim, with a guest defined and started.

The guest is a small BIOS guest under KVM (as kali in the demo) with a disk, two cdroms, an
external TPM and a virtiofs share, all at such paths. What the test compares is what libvirt,
QEMU (through QMP) and the running processes report, not what the spec said.
"""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET

import pytest

V = "virsh -c qemu:///system "
NAME = "quoted"
DISK = "Tim's disk & R&D \"ü\".qcow2"
ISO = "/mnt/vm/iso/Tim's Win11 & R&D.iso"
# A path whose text would close the cdrom's element and open a writable disk, were it pasted into
# a template: it is one (missing) file name like any other.
INJECTION = "/mnt/vm/iso/x'/><disk type='file' device='disk'><source file='/etc/shadow'/></disk><disk a='.iso"
TPM_DIR = "/mnt/vm/tpm/Tim's TPM & R&D ü %h $HOME"
TPM_SOCKET = "/mnt/vm/Tim's swtpm & R&D.sock"
SHARE = "/mnt/vm/Tim's share & R&D ü"
SPEC = {
    "name": NAME, "firmware": "bios", "cpu_mode": "custom", "cpu_model": "Nehalem", "memory": "128M", "vcpus": 1,
    "graphics": "none", "video": "none", "interfaces": [{"network": "default", "boot_rom": False}],
    "disks": [{"name": DISK, "size": "64M"}], "cdroms": [ISO, INJECTION],
    "tpm": "external", "tpm_model": "tis", "tpm_socket": TPM_SOCKET, "tpm_state_dir": TPM_DIR,
    "filesystems": [{"source": SHARE, "target": "share"}],
}

ABSENT = dict(SPEC, state="absent", purge=True, force_stop=True, shutdown_timeout=5)


def cmdline(host, pattern: str) -> list[str]:
    """The argument vector of the one process whose command line matches `pattern`."""
    pid = host.check_output("pgrep -f -n %s" % shlex.quote(pattern))
    return host.check_output("tr '\\0' '\\n' < /proc/%s/cmdline" % pid).split("\n")


@pytest.fixture(scope="module")
def converged(host, guest):
    host.run_test("truncate -s 1M %s" % shlex.quote(ISO))
    first = guest(SPEC)
    second = guest(SPEC)
    yield first, second
    guest(ABSENT)
    host.run("systemctl disable --now kvmlab-swtpm-%s.socket; rm -f /etc/systemd/system/kvmlab-swtpm-%s.*; "
             "systemctl daemon-reload" % (NAME, NAME))
    host.run("rm -rf %s %s %s" % (shlex.quote(ISO), shlex.quote(TPM_DIR), shlex.quote(SHARE)))


def test_guest_with_such_names_is_defined_started_and_idempotent(host, converged):
    first, second = converged
    assert first.rc == 0, first
    assert "cdrom sdb is attached empty" in first.stdout + first.stderr, first  # the injection is a missing file
    assert host.check_output(V + "domstate " + NAME) == "running"
    assert second.rc == 0 and second.changed == 0, second


def test_libvirt_holds_every_name_verbatim(host, converged, summary):
    root = ET.fromstring(host.check_output(V + "dumpxml --inactive " + NAME))
    disks = root.findall("devices/disk")
    assert [d.get("device") for d in disks] == ["disk", "cdrom", "cdrom"]
    assert disks[0].find("source").get("file") == "/mnt/vm/" + DISK
    assert disks[1].find("source").get("file") == ISO
    assert disks[2].find("source") is None  # missing: an empty drive, no second disk
    assert "/etc/shadow" not in ET.tostring(root, encoding="unicode")
    assert root.find("devices/tpm/backend/source").get("path") == TPM_SOCKET
    assert root.find("devices/filesystem/source").get("dir") == SHARE
    summary["quoted names verbatim"] += 5  # disk, ISO, injection (as one missing file), TPM socket, share


def test_qemu_opened_the_files_by_their_names(host, converged):
    reply = json.loads(host.check_output(V + "qemu-monitor-command %s '{\"execute\": \"query-block\"}'" % NAME))
    files = sorted(b["inserted"]["file"] for b in reply["return"] if b.get("inserted"))
    assert files == sorted(["/mnt/vm/" + DISK, ISO])
    # And QEMU's command line: libvirt passes each file in a -blockdev JSON argument.
    names = []
    for arg in cmdline(host, "qemu-system-x86_64.*guest=%s" % NAME):
        if arg.startswith("{"):
            names += [v for k, v in json.loads(arg).items() if k == "filename"]
    assert sorted(n for n in names if n.startswith("/mnt/")) == sorted(["/mnt/vm/" + DISK, ISO]), names


def test_swtpm_and_virtiofsd_run_on_the_exact_paths(host, converged, summary):
    assert "dir=%s,mode=0600" % TPM_DIR in cmdline(host, "swtpm socket --tpm2")
    assert host.file(TPM_DIR).is_directory
    assert host.file(TPM_DIR).user == "tss"
    assert host.check_output("ls %s" % shlex.quote(TPM_DIR)) == "tpm2-00.permall"
    assert host.run_test("test -S %s" % shlex.quote(TPM_SOCKET))
    args = cmdline(host, "virtiofsd")
    assert any(SHARE in arg for arg in args), args
    # systemd itself reads the units as written: its view of the paths is the paths.
    unit = "kvmlab-swtpm-%s" % NAME
    shown = host.check_output("systemctl show -p Listen %s.socket" % unit)
    assert shown.replace("\\'", "'") == "Listen=%s (Stream)" % TPM_SOCKET  # systemctl shows ' as \'
    shown = host.check_output("systemctl show -p RequiresMountsFor %s.service" % unit)
    # systemctl shows the list quoted, with $ escaped; '%h' stayed text, not the home directory.
    assert shown == 'RequiresMountsFor="%s"' % TPM_DIR.replace("$", "\\$")
    summary["quoted names verbatim"] += 1  # the TPM state directory


def test_purge_deletes_the_quoted_disk_and_nothing_else(host, guest, converged):
    others = host.check_output("ls /mnt/vm")
    run = guest(ABSENT)
    assert run.rc == 0, run
    assert not host.file("/mnt/vm/" + DISK).exists
    assert host.file(ISO).exists  # a cdrom is never guest data
    remaining = set(others.split("\n")) - set(host.check_output("ls /mnt/vm").split("\n"))
    assert remaining == {DISK}, remaining
