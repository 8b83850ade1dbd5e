"""The guests by name: inventories/demo/guests.libvirt.yml (kvmlab.hypervisor.libvirt_guests, on
community.libvirt's inventory plugin) pointed at this scenario's hypervisor, checked against what
virsh says about the guests."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from conftest import hypervisor_vars

ROOT = Path(__file__).resolve().parents[3]
V = "virsh -c qemu:///system "
GUESTS = ("win11", "arch", "kali")
# virsh domstate's words, as libvirt's state names (community.libvirt's info.state).
STATES = {"no state": "nostate", "running": "running", "idle": "blocked", "paused": "paused",
          "in shutdown": "shutdown", "shut off": "shutoff", "crashed": "crashed", "pmsuspended": "pmsuspended"}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The demo's inventory source with this scenario's URI: its address, port and key."""
    host = hypervisor_vars()
    key = host.get("ansible_ssh_private_key_file") or host["ansible_private_key_file"]
    config = yaml.safe_load((ROOT / "examples/workstation/inventories/demo/guests.libvirt.yml").read_text())
    config["uri"] = "qemu+ssh://%s@%s:%s/system?keyfile=%s&no_verify=1" % (
        host.get("ansible_user", "root"), host["ansible_host"], host["ansible_port"], key)
    directory = tmp_path_factory.mktemp("guests")
    (directory / "guests.libvirt.yml").write_text(yaml.safe_dump(config))
    return directory


def ansible(tool: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([str(Path(sys.executable).parent / tool), *args],
                          capture_output=True, text=True, env=env, check=False)


@pytest.fixture(scope="module")
def listed(source) -> dict:
    """ansible-inventory --list of the scenario's inventory and the guests' source together."""
    run = ansible("ansible-inventory", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-i", str(source), "--list")
    assert run.returncode == 0, run.stderr
    assert "Unable to parse" not in run.stderr, run.stderr
    return plain(json.loads(run.stdout))


def plain(value):
    """ansible-inventory --list writes the inventory plugins' strings as {"__ansible_unsafe": ...}."""
    if isinstance(value, dict):
        return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else {
            k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def members(listed: dict, group: str) -> set:
    return set(listed.get(group, {}).get("hosts", []))


def test_guests_listed_and_grouped_by_state(host, listed):
    assert members(listed, "guests") == set(GUESTS)
    for name in GUESTS:
        state = STATES[host.check_output(V + "domstate " + name)]
        assert name in members(listed, "guests_" + state), (name, state)
        assert listed["_meta"]["hostvars"][name]["info"]["state"] == state


def test_pinned_group(host, listed):
    for name in GUESTS:
        pinned = ET.fromstring(host.check_output(V + "dumpxml " + name)).find("cputune/vcpupin") is not None
        assert (name in members(listed, "guests_pinned")) is pinned, name
    # The demo pins win11 (cpu_pinning: auto) and not kali.
    assert "win11" in members(listed, "guests_pinned")
    assert "kali" not in members(listed, "guests_pinned")


def test_win11_mac_and_reserved_address(host, listed):
    win11 = listed["_meta"]["hostvars"]["win11"]
    # virsh domiflist: Interface Type Source Model MAC, after two header lines.
    rows = [line.split() for line in host.check_output(V + "domiflist win11").splitlines()[2:] if line.strip()]
    assert win11["libvirt_macs"] == [row[4] for row in rows]
    mac = rows[0][4]
    network = ET.fromstring(host.check_output(V + "net-dumpxml default"))
    reserved = [h.get("ip") for h in network.findall("ip/dhcp/host") if h.get("mac", "").lower() == mac]
    assert reserved == ["192.168.122.136"]
    leases = host.check_output(V + "net-dhcp-leases default --mac " + mac)
    if "ipv4" not in leases:  # not booted (the demo's guests have no OS): the reservation
        assert win11["libvirt_addresses"] == reserved
        assert win11["guest_address"] == "192.168.122.136"
    assert win11["libvirt_interfaces"][0]["reservation"] == reserved
    assert win11["libvirt_interfaces"][0]["network"] == "default"


def test_guests_are_not_hypervisors(source, listed):
    assert not members(listed, "hypervisors") & set(GUESTS)
    graph = ansible("ansible-inventory", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-i", str(source), "--graph")
    assert graph.returncode == 0, graph.stderr
    section = graph.stdout.split("@hypervisors:")[1].split("|--@")[0]
    assert not any(name in section for name in GUESTS), graph.stdout
    hosts = ansible("ansible-playbook", "--list-hosts", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
                    "-i", str(source), "kvmlab.hypervisor.site")
    assert hosts.returncode == 0, hosts.stdout + hosts.stderr
    assert not any(name in hosts.stdout.split("hosts (")[1] for name in GUESTS), hosts.stdout


def test_unreachable_libvirt_leaves_the_site_inventory(source, tmp_path):
    """A hypervisor whose libvirt cannot be reached (the first run on a fresh host): Ansible
    warns about the source and keeps the rest of the inventory."""
    config = yaml.safe_load((source / "guests.libvirt.yml").read_text())
    config["uri"] = "qemu+ssh://root@127.0.0.1:1/system?no_verify=1"
    (tmp_path / "guests.libvirt.yml").write_text(yaml.safe_dump(config))
    run = ansible("ansible-inventory", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-i", str(tmp_path), "--list")
    assert run.returncode == 0, run.stderr
    assert "Unable to parse %s" % (tmp_path / "guests.libvirt.yml") in run.stderr
    listed = json.loads(run.stdout)
    assert members(listed, "hypervisors") and not members(listed, "guests")


RACER = ("<domain type='qemu'><name>kvmlab-racer</name><memory unit='MiB'>64</memory>"
         "<os><type arch='x86_64'>hvm</type></os></domain>")
# One virsh session defining and undefining the racer every 10 ms: far more churn than any host
# sees, so that listings meet it (much faster, every listing would; the retries are bounded).
RACE = """import subprocess, time
virsh = subprocess.Popen(["virsh", "-c", "qemu:///system"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, text=True)
while True:
    for command in ("define /run/kvmlab-racer.xml", "undefine kvmlab-racer"):
        virsh.stdin.write(command + "\\n")
        virsh.stdin.flush()
        time.sleep(0.01)
"""


def test_guests_defined_and_undefined_during_listing_never_break_the_source(host, source, summary, tmp_path):
    """A guest defined and undefined hundreds of times a second while the source lists: every
    listing succeeds, holds the real guests, and the racer is either absent or whole."""
    host.run_test("cat > /run/kvmlab-racer.xml <<'EOF'\n%s\nEOF" % RACER)
    host.run_test("systemd-run --unit kvmlab-racer python3 -c %s" % shlex.quote(RACE))
    seen = again = 0
    try:
        for listing in range(30):  # until a listing met the racer going, after 5 at least
            if listing >= 5 and again:
                break
            output = tmp_path / "listed.json"
            run = ansible("ansible-inventory", "-vvv", "-i", str(source), "--list", "--output", str(output))
            again += run.stdout.count("went while listed") + run.stderr.count("went while listed")
            assert run.returncode == 0 and "Unable to parse" not in run.stdout + run.stderr, run.stderr
            listed = plain(json.loads(output.read_text()))
            assert set(GUESTS) <= members(listed, "guests"), listed
            racer = listed["_meta"]["hostvars"].get("kvmlab-racer")
            if racer is not None:
                seen += 1
                assert "ERROR" not in racer and "xml_desc" in racer and "libvirt_interfaces" in racer, racer
            summary["inventory listings raced"] += 1
    finally:
        host.run("systemctl stop kvmlab-racer; systemctl reset-failed kvmlab-racer")
        host.run(V + "undefine kvmlab-racer; rm -f /run/kvmlab-racer.xml")
    assert host.run(V + "dominfo kvmlab-racer").rc != 0
    # The racer flipped under the listings: some met it going while they read it, and left it out.
    assert seen < listing + 1 and again > 0, (seen, again)
    summary["inventory listings that met a guest going"] += again
