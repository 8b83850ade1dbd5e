"""Device merges that stay valid, with cases derived from the spec's own choices (not a hand list):
every kind of block device the builder makes (a disk on each bus of disks[].bus, a cdrom on q35's
sata), paired with every kind, each pair added, reordered and removed on one guest per pair, all
guests in one run per step. Each step is defined by libvirt (a device that takes the target
another kind had inherits nothing from it: no disk is left <readonly/>), and the next run is
changed=0."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.guest import DISK_CHOICES

V = "virsh -c qemu:///system "
ISO = "/mnt/vm/iso/kvmlab-merge.iso"
KINDS = [("disk", bus) for bus in DISK_CHOICES["bus"]] + [("cdrom", "sata")]  # q35's cdrom bus
PAIRS = list(itertools.combinations_with_replacement(KINDS, 2))


def device(guest: str, kind: tuple, n: int):
    return ({"name": "%s-%d.qcow2" % (guest, n), "size": "16M", "bus": kind[1]} if kind[0] == "disk"
            else "%s.%d" % (ISO, n))


def spec(i: int, kinds: list) -> dict:
    name = "merge%d" % i
    items = [(kind, device(name, kind, n)) for n, kind in kinds]
    return {"name": name, "state": "shutdown", "firmware": "bios", "virt_type": "qemu", "memory": "64M",
            "vcpus": 1, "graphics": "none", "video": "none", "guest_agent": False, "serial_console": False,
            "disks": [d for k, d in items if k[0] == "disk"], "cdroms": [d for k, d in items if k[0] == "cdrom"]}


# Per pair (A, B), in this order: [A]; [A, B] (B added); [B, A] (reordered: targets move);
# [B] (A removed: B takes A's target); [A, B] again (A added back before B: A takes B's target,
# such as a sata disk added where a cdrom sits). Each device is numbered, so that it keeps its
# own file through the steps.
STEPS = {
    "A": lambda a, b: [(0, a)],
    "A+B": lambda a, b: [(0, a), (1, b)],
    "B+A": lambda a, b: [(1, b), (0, a)],
    "B": lambda a, b: [(1, b)],
    "A+B again": lambda a, b: [(0, a), (1, b)],
}


@pytest.fixture(scope="module")
def merges(host):
    host.run_test("mkdir -p /mnt/vm/iso && for n in 0 1; do truncate -s 1M %s.$n; done" % ISO)
    yield
    for i in range(len(PAIRS)):
        host.run("%sundefine merge%d --nvram" % (V, i))
    host.run("rm -f /mnt/vm/merge[0-9]*-*.qcow2 %s.*" % ISO)


@pytest.mark.usefixtures("merges")
@pytest.mark.parametrize("step", list(STEPS))
def test_devices_added_reordered_and_removed_stay_valid(host, guest, step, summary):
    specs = [spec(i, STEPS[step](a, b)) for i, (a, b) in enumerate(PAIRS)]
    run = guest(specs)
    assert run.rc == 0, run
    for i, wanted in enumerate(specs):
        root = ET.fromstring(host.check_output(V + "dumpxml --inactive merge%d" % i))
        disks = root.findall("devices/disk")
        have = [(d.get("device"), d.find("target").get("bus"),
                 (d.find("source").get("file") if d.find("source") is not None else None)) for d in disks]
        want = [("disk", d["bus"], "/mnt/vm/" + d["name"]) for d in wanted["disks"]] + [
            ("cdrom", "sata", path) for path in wanted["cdroms"]]
        assert sorted(have) == sorted(want), (step, PAIRS[i], have)
        for d in disks:
            assert (d.find("readonly") is not None) == (d.get("device") == "cdrom"), (step, PAIRS[i], ET.tostring(d))
        targets = [d.find("target").get("dev") for d in disks]
        assert len(set(targets)) == len(targets), targets
    again = guest(specs)
    assert again.rc == 0 and again.changed == 0, again
    summary["device merge cases defined"] += len(specs)
