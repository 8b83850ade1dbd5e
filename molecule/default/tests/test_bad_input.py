"""Bad input stops the site before any change, with a message that names the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

DEMO_VARS = Path(__file__).resolve().parents[3] / "inventories/demo/group_vars/hypervisors.yml"
DEMO_OVERRIDES = yaml.safe_load(DEMO_VARS.read_text())["guest_overrides"]


def override(guest: str, **fields) -> dict:
    """The demo inventory's guest_overrides with `fields` changed for `guest`."""
    return dict(DEMO_OVERRIDES, **{guest: dict(DEMO_OVERRIDES.get(guest, {}), **fields)})


NET = {"name": "default", "bridge": "virbr0", "forward": "nat", "address": "192.168.122.1", "prefix": 24,
       "dhcp": {"start": "192.168.122.2", "end": "192.168.122.254"}}
POOLS = [{"name": "vm", "path": "/mnt/vm"}, {"name": "iso", "path": "/mnt/vm/iso"},
         {"name": "default", "path": "/var/lib/libvirt/images"}]
A = "52:54:00:00:00:0a"
B = "52:54:00:00:00:0b"

CASES = {
    "ip outside the subnet": (
        {"network_networks": [dict(NET, hosts=[{"name": "win11", "mac": A, "ip": "192.168.123.5"}])]},
        "network_networks[default].hosts[win11].ip: 192.168.123.5 is outside 192.168.122.0/24"),
    "duplicate ip": (
        {"network_networks": [dict(NET, hosts=[{"name": "a", "mac": A, "ip": "192.168.122.50"},
                                               {"name": "b", "mac": B, "ip": "192.168.122.50"}])]},
        "network_networks[default].hosts[b].ip: 192.168.122.50 is already reserved for"),
    "duplicate mac": (
        {"network_networks": [dict(NET, hosts=[{"name": "a", "mac": A, "ip": "192.168.122.50"},
                                               {"name": "b", "mac": A, "ip": "192.168.122.51"}])]},
        "network_networks[default].hosts[b].mac: 52:54:00:00:00:0a is already reserved for"),
    "bridge name over 15 characters": (
        {"network_networks": [dict(NET, bridge="kvmlab-bridge-01")]},
        "network_networks[default].bridge: 'kvmlab-bridge-01' is 16 characters; Linux allows at most 15"),
    "dhcp range outside the subnet": (
        {"network_networks": [dict(NET, dhcp={"start": "192.168.122.2", "end": "192.168.123.254"})]},
        "network_networks[default].dhcp.end: 192.168.123.254 is outside 192.168.122.0/24"),
    "relative pool path": (
        {"storage_pools": [*POOLS[:2], {"name": "default", "path": "var/lib/libvirt/images"}]},
        "storage_pools[default].path: 'var/lib/libvirt/images' is relative"),
    "pool path collision": (
        {"storage_pools": [*POOLS, {"name": "more", "path": "/mnt/vm/iso/"}]},
        "storage_pools[more].path: /mnt/vm/iso is already the path of pool 'iso'"),
    # Extra vars replace guest_overrides whole: each case keeps the demo inventory's.
    "guest memory not a size": (
        {"guest_overrides": override("kali", memory="lots")},
        "guest_spec.memory: not a size: 'lots'"),
    "secure boot without q35": (
        {"guest_overrides": override("arch", machine="pc")},
        "guest_spec.machine: Secure Boot needs the q35 machine (for SMM), got 'pc'"),
    "nvram on a BIOS guest": (
        {"guest_overrides": override("kali", nvram="/mnt/vm/kali_VARS.fd")},
        "guest_spec.nvram: needs firmware uefi; this guest has firmware bios"),
    "misspelt guest field": (
        {"guest_overrides": override("win11", cpu_pin={0: "1"})},
        "guest_spec.cpu_pin: unknown field"),
    "pin beyond the guest's vCPUs": (
        {"guest_overrides": override("kali", cpu_pins={"5": "1"})},
        "guest_spec.cpu_pins: '5': '1' is not a vCPU (0-1)"),
    "more vCPUs pinned than the host has free": (
        {"guest_overrides": override("win11", vcpus=4, cpu_threads=2)},
        "guest_spec.cpu_pinning: guest win11: 4 vCPUs to pin, but only"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_before_any_change(host, site, case):
    extra_vars, message = CASES[case]
    state = ("virsh -c qemu:///system net-dumpxml --inactive default; virsh -c qemu:///system pool-list --all "
             "--name; for g in win11 arch kali; do virsh -c qemu:///system dumpxml --inactive $g; done")
    before = host.check_output(state)
    run = site("-e", json.dumps(extra_vars))
    assert run.rc != 0, run
    assert message in run.stderr, run
    assert run.changed == 0, run
    # It stopped in the checks that come first: no task ran on the host.
    assert "kvmlab.hypervisor.host : Read the host" not in run.stdout, run
    assert host.check_output(state) == before


def test_preflight_rejects_missing_admin_user(site):
    run = site("-e", '{"host_libvirt_admins": ["kvmlab", "nosuchuser"]}')
    assert run.rc != 0, run
    # ansible-core prints the unfolded error message on stderr.
    assert "host_libvirt_admins: nosuchuser do not exist" in run.stderr, run
    assert run.changed == 0, run


def test_preflight_rejects_unsupported_os(host, site):
    host.run_test("printf 'ID=fedora\\nVERSION_ID=41\\nPRETTY_NAME=\"Fedora Linux 41\"\\n' "
                  "> /run/fake-os-release && mount --bind /run/fake-os-release /etc/os-release")
    try:
        run = site()
    finally:
        host.run_test("umount /etc/os-release")
    assert run.rc != 0, run
    assert "runs Fedora Linux 41. kvmlab.hypervisor.host supports Debian 12, Debian 13 and Arch Linux." \
        in run.stderr, run
    assert run.changed == 0, run
