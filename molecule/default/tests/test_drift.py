"""Drift is repaired: for each item broken on the host, a check run reports it and changes
nothing, a real run repairs it, and the next run changes nothing."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import pytest

V = "virsh -c qemu:///system "


@dataclass
class Drift:
    breaks: str  # shell command that breaks the item
    broken: str  # shell command that succeeds while the item is broken
    shows: str  # what the check run's output must show
    guests: bool = False  # whether the guests take part (else the runs skip them, to be quicker)


def reservation(host) -> str:
    xml = host.check_output(V + "net-dumpxml default")
    start = xml.index("<host ")
    return xml[start:xml.index("/>", start) + 2]


CASES = {
    # The guests (and win11's swtpm) hold files on /mnt/vm: stop them to unmount it.
    "subvolume unmounted": Drift(
        "for g in win11 arch kali; do " + V + "destroy $g; done; "
        "systemctl stop kvmlab-swtpm-win11.socket kvmlab-swtpm-win11.service && umount /mnt/vm",
        "! findmnt /mnt/vm", "mount /mnt/vm", guests=True),
    # vm_storage's fstab line for it, deleted while the subvolume stays mounted: written back, remounted.
    "fstab line deleted": Drift("sed -i '\\# /mnt/vm #d' /etc/fstab", "! grep -q ' /mnt/vm ' /etc/fstab",
                                "fstab /mnt/vm"),
    # The host role's qemu.conf key and udev rule, which it skips without a remote call when
    # host_info read them as they would be written: a changed line or rule must not be skipped.
    "qemu.conf key changed": Drift(
        "sed -i 's/^swtpm_user = \"tss\"/swtpm_user = \"root\"/' /etc/libvirt/qemu.conf",
        "grep -q '^swtpm_user = \"root\"' /etc/libvirt/qemu.conf", '+swtpm_user = "tss"'),
    "udev rule changed": Drift("echo '# nothing' > /etc/udev/rules.d/65-kvmlab-kvm.rules",
                               "! grep -q 'MODE=\"0660\"' /etc/udev/rules.d/65-kvmlab-kvm.rules",
                               '+KERNEL=="kvm", GROUP="kvm", MODE="0660"'),
    "guest stopped": Drift(V + "destroy kali", V + "domstate kali | grep -q 'shut off'", "+state: running",
                           guests=True),
    "guest memory changed": Drift(
        V + "setmem kali 1048576 --config && " + V + "setmaxmem kali 1048576 --config",
        V + "dumpxml --inactive kali | grep -q \"<memory unit='KiB'>1048576<\"",
        '-  <memory unit="KiB">1048576</memory>', guests=True),
    "nodatacow removed": Drift("chattr -C /mnt/vm", "lsattr -d /mnt/vm | cut -d' ' -f1 | grep -qv C",
                               "nodatacow: false"),
    # kvmlab.hypervisor.vm_storage's directories: the TPM states' directory, opened up and given away.
    "tpm directory mode widened": Drift("chmod 0777 /mnt/vm/tpm", "test $(stat -c %a /mnt/vm/tpm) = 777",
                                        "directory /mnt/vm/tpm"),
    "tpm directory owner changed": Drift("chown root:root /mnt/vm/tpm", "test $(stat -c %U:%G /mnt/vm/tpm) = root:root",
                                         "directory /mnt/vm/tpm"),
    "pool undefined": Drift(V + "pool-destroy iso && " + V + "pool-undefine iso", "! " + V + "pool-info iso",
                            "defined: false"),
    "pool stopped": Drift(V + "pool-destroy vm", V + "pool-info vm | grep -q 'State: *inactive'",
                          "-        active: false"),
    "pool autostart off": Drift(V + "pool-autostart default --disable",
                                V + "pool-info default | grep -q 'Autostart: *no'", "-        autostart: false"),
    "pool path changed": Drift(
        V + "pool-dumpxml --inactive iso | sed 's#<path>/mnt/vm/iso</path>#<path>/srv/iso</path>#' > /tmp/iso.xml"
        " && " + V + "pool-define /tmp/iso.xml",
        V + "pool-dumpxml --inactive iso | grep -q /srv/iso", "-        path: /srv/iso"),
    "reservation deleted": Drift(
        V + "net-update default delete ip-dhcp-host \"$(" + V + "net-dumpxml default | grep -o '<host .*/>')\""
        " --live --config",
        "! " + V + "net-dumpxml default | grep -q win11 && ! " + V + "net-dumpxml --inactive default | grep -q win11",
        "win11 192.168.122.136"),
    "network stopped": Drift(V + "net-destroy default", V + "net-info default | grep -q 'Active: *no'",
                             "-        active: false"),
    "network autostart off": Drift(V + "net-autostart default --disable",
                                   V + "net-info default | grep -q 'Autostart: *no'", "-        autostart: false"),
    "dhcp range changed": Drift(
        V + "net-update default delete ip-dhcp-range \"<range start='192.168.122.2' end='192.168.122.254'/>\""
        " --live --config && " + V + "net-update default add ip-dhcp-range "
        "\"<range start='192.168.122.100' end='192.168.122.200'/>\" --live --config",
        V + "net-dumpxml default | grep -q \"start='192.168.122.100'\"",
        "-            dhcp_range: 192.168.122.100 - 192.168.122.200"),
    "forwarding off": Drift("sysctl -qw net.ipv4.ip_forward=0", "test $(sysctl -n net.ipv4.ip_forward) = 0",
                            "sysctl net.ipv4.ip_forward"),
}


# The cases without guests are broken in batches, three site runs per batch instead of three per
# case. No two cases of a batch touch the same object, and none of a batch repairs another's as a
# side effect (a started network would turn IP forwarding back on itself: "network stopped" has a
# batch of its own; the reservation is repaired apart from the DHCP range, which a redefinition
# would restore with it). The guest cases each break what the others need, so they stay alone.
BATCHES = [
    ("nodatacow removed", "tpm directory mode widened", "pool stopped", "pool autostart off", "pool undefined",
     "reservation deleted", "forwarding off"),
    ("tpm directory owner changed", "pool path changed", "network autostart off", "dhcp range changed",
     "fstab line deleted", "qemu.conf key changed", "udev rule changed"),
    ("network stopped",),
    *((case,) for case, drift in CASES.items() if drift.guests),
]


def test_every_case_is_in_one_batch():
    assert sorted(case for batch in BATCHES for case in batch) == sorted(CASES)
    assert not any(CASES[case].guests for batch in BATCHES if len(batch) > 1 for case in batch)


@pytest.mark.parametrize("batch", BATCHES, ids=" + ".join)
def test_drift_is_reported_then_repaired(host, site, summary, batch):
    drifts = [CASES[case] for case in batch]
    skip = () if any(drift.guests for drift in drifts) else ("--skip-tags", "guests")
    for drift in drifts:
        host.run_test(drift.breaks)
        host.run_test(drift.broken)

    check = site("--check", "--diff", *skip)
    assert check.rc == 0, check
    assert check.changed and check.changed > 0, check
    for case, drift in zip(batch, drifts, strict=True):
        assert drift.shows in check.stdout, (case, check)
        host.run_test(drift.broken)  # the check run changed nothing
    summary["drift reported"] += len(batch)

    real = site("--diff", *skip)
    assert real.rc == 0, real
    assert real.changed > 0, real
    for case, drift in zip(batch, drifts, strict=True):
        assert host.run(drift.broken).rc != 0, "%s: still broken after a real run" % case
    summary["drift repaired"] += len(batch)

    again = site(*skip)
    assert again.rc == 0 and again.changed == 0, again
    summary["drift changed=0 after"] += len(batch)


def test_reservation_modified_in_place(host, site):
    """A changed reservation reaches the running network and the definition, without a restart."""
    pid = host.check_output("pgrep -f 'dnsmasq.*default.conf' | head -n1")
    bridge_since = host.check_output("stat -c %Z /sys/class/net/virbr0")
    spec = json.loads(host.check_output(
        "python3 -c \"import json,xml.etree.ElementTree as E;"
        "h=E.fromstring(open('/etc/libvirt/qemu/networks/default.xml').read()).find('ip/dhcp/host');"
        "print(json.dumps(h.attrib))\""))
    net = {"name": "default", "bridge": "virbr0", "address": "192.168.122.1", "prefix": 24,
           "dhcp": {"start": "192.168.122.2", "end": "192.168.122.254"},
           "hosts": [dict(spec, ip="192.168.122.137")]}
    run = site("--diff", "-e", json.dumps({"kvmlab_networks": [net]}))
    assert run.rc == 0 and run.changed == 1, run
    for flags in ("", "--inactive "):
        assert "ip='192.168.122.137'" in host.check_output(V + "net-dumpxml " + flags + "default")
    assert host.check_output("stat -c %Z /sys/class/net/virbr0") == bridge_since, "the bridge was recreated"
    assert host.run("kill -0 " + pid).rc == 0 or pid, "dnsmasq may be reloaded, but the network stays up"
    restored = site()
    assert restored.rc == 0 and restored.changed == 1, restored
    assert "ip='192.168.122.136'" in host.check_output(V + "net-dumpxml default")


def test_bridge_change_waits_for_allow_restart(host, site):
    net = {"name": "default", "bridge": "virbr9", "address": "192.168.122.1", "prefix": 24,
           "dhcp": {"start": "192.168.122.2", "end": "192.168.122.254"},
           "hosts": [{"name": "win11", "mac": json.loads(host.check_output(
               "python3 -c \"import json,xml.etree.ElementTree as E;print(json.dumps(E.fromstring("
               "open('/etc/libvirt/qemu/networks/default.xml').read()).find('ip/dhcp/host').get('mac')))\"")),
               "ip": "192.168.122.136"}]}
    extra = json.dumps({"kvmlab_networks": [net]})
    held = site("-e", extra)
    assert held.rc == 0 and held.changed == 1, held
    assert "kvmlab_network_allow_restart" in held.stderr + held.stdout, held  # the warning says how
    assert "<bridge name='virbr9'" in host.check_output(V + "net-dumpxml --inactive default")
    assert "<bridge name='virbr0'" in host.check_output(V + "net-dumpxml default"), "restarted without opt-in"
    assert site("-e", extra).changed == 0  # the pending restart is not a change on every run

    applied = site("-e", extra, "-e", "kvmlab_network_allow_restart=true")
    assert applied.rc == 0 and applied.changed == 1, applied
    assert host.interface("virbr9").exists
    assert not host.interface("virbr0").exists

    back = site("-e", "kvmlab_network_allow_restart=true")
    assert back.rc == 0 and back.changed == 1, back
    assert host.interface("virbr0").exists
    assert site().changed == 0


def test_volumes_never_shrink_and_grow_only_when_asked(host, site):
    name = "grow-%s.qcow2" % uuid.uuid4().hex[:8]

    def volumes(capacity, **kw):
        return json.dumps({"kvmlab_storage_volumes": [dict({"pool": "vm", "name": name, "capacity": capacity}, **kw)]})

    def size():
        return json.loads(host.check_output("qemu-img info --output=json /mnt/vm/" + name))["virtual-size"]

    try:
        created = site("-e", volumes("64M"))
        assert created.rc == 0 and created.changed == 1, created
        assert size() == 64 * 2**20

        shrink = site("-e", volumes("32M"))
        assert shrink.rc != 0, shrink
        assert "would shrink it" in shrink.stdout + shrink.stderr, shrink
        assert size() == 64 * 2**20

        held = site("-e", volumes("128M"))
        assert held.rc == 0 and held.changed == 0, held
        assert "set allow_grow: true to grow it" in held.stdout + held.stderr, held
        assert size() == 64 * 2**20

        grown = site("-e", volumes("128M", allow_grow=True))
        assert grown.rc == 0 and grown.changed == 1, grown
        assert size() == 128 * 2**20
    finally:
        host.run(V + "vol-delete --pool vm " + name)


def test_volume_copied_in_by_hand_is_kept_and_overlays_are_created(host, site):
    base, overlay = "base-%s.qcow2" % uuid.uuid4().hex[:8], "overlay-%s.qcow2" % uuid.uuid4().hex[:8]
    # Made outside libvirt, which does not list it until its pool is rescanned.
    host.run_test("qemu-img create -q -f qcow2 /mnt/vm/%s 32M" % base)
    digest = host.check_output("sha256sum /mnt/vm/" + base)
    spec = json.dumps({"kvmlab_storage_volumes": [
        {"pool": "vm", "name": base, "capacity": "32M"},
        {"pool": "vm", "name": overlay, "capacity": "32M", "backing_file": "/mnt/vm/" + base}]})
    try:
        check = site("--check", "--diff", "-e", spec)
        assert check.rc == 0 and check.changed == 1, check
        assert overlay in check.stdout and base + ":" not in check.stdout, check
        run = site("-e", spec)
        assert run.rc == 0 and run.changed == 1, run
        assert host.check_output("sha256sum /mnt/vm/" + base) == digest, "the hand-made image was rewritten"
        info = json.loads(host.check_output("qemu-img info --output=json /mnt/vm/" + overlay))
        assert info["backing-filename"] == "/mnt/vm/" + base
        assert site("-e", spec).changed == 0
    finally:
        host.run("%svol-delete --pool vm %s; %svol-delete --pool vm %s" % (V, overlay, V, base))
