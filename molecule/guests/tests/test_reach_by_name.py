"""The guests reached by name from the controller: the demo's inventory source
(inventories/demo/guests.libvirt.yml) pointed at this scenario's hypervisor, and
`ansible guests -m ansible.builtin.setup` through community.libvirt's libvirt_qemu connection
(the guest agent; no SSH into the guests). The host report shows the agents' addresses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import hypervisor_vars
from guest_agent import GUESTS

ROOT = Path(__file__).resolve().parents[3]


def ansible(tool: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([str(Path(sys.executable).parent / tool), *args], capture_output=True, text=True,
                          env=env, check=False, timeout=600)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The demo's inventory source with this scenario's URI."""
    host = hypervisor_vars()
    key = host.get("ansible_ssh_private_key_file") or host["ansible_private_key_file"]
    config = yaml.safe_load((ROOT / "examples/workstation/inventories/demo/guests.libvirt.yml").read_text())
    config["uri"] = "qemu+ssh://%s@%s:%s/system?keyfile=%s&no_verify=1" % (
        host.get("ansible_user", "root"), host["ansible_host"], host["ansible_port"], key)
    directory = tmp_path_factory.mktemp("guests")
    (directory / "guests.libvirt.yml").write_text(yaml.safe_dump(config))
    return directory


def test_setup_through_the_guest_agent(guests, source):
    run = ansible("ansible", "-i", str(source), "guests", "-m", "ansible.builtin.setup",
                  "-a", "gather_subset=!all,network", "-o")
    assert run.returncode == 0, run.stdout + run.stderr
    facts = {}
    for line in run.stdout.splitlines():
        name, _sep, rest = line.partition(" | SUCCESS => ")
        if rest:
            facts[name] = json.loads(rest)["ansible_facts"]
    assert set(facts) == set(GUESTS), run.stdout
    assert facts["win11"]["ansible_default_ipv4"]["address"] == "192.168.122.136"
    for name in GUESTS:
        mac = guests.xml(name).find("devices/interface/mac").get("address").lower()
        assert facts[name]["ansible_default_ipv4"]["macaddress"] == mac, name


def test_inventory_addresses_come_from_the_agents(guests, source):
    run = ansible("ansible-inventory", "-i", str(source), "--list")
    assert run.returncode == 0, run.stderr
    hostvars = json.loads(run.stdout)["_meta"]["hostvars"]

    def plain(value):
        return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value

    for name in GUESTS:
        interface = hostvars[name]["libvirt_interfaces"][0]
        inside = guests.sh(name, "ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1").split()
        assert [plain(a) for a in interface["agent"]] == inside, (name, interface)
        assert [plain(a) for a in hostvars[name]["libvirt_addresses"]] == inside
    assert plain(hostvars["win11"]["guest_address"]) == "192.168.122.136"


def test_report_shows_agents_and_their_addresses(guests, tmp_path):
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    run = ansible("ansible-playbook", "-i", inventory, "-e", "report_dir=%s" % tmp_path, "kvmlab.hypervisor.report")
    assert run.returncode == 0, run.stdout + run.stderr
    report = next(tmp_path.glob("*.md")).read_text()
    assert "| win11 | %s | default | 192.168.122.136 (agent) |" % guests.xml("win11").find(
        "devices/interface/mac").get("address").lower() in report, report
    for name in ("arch", "kali"):
        assert "(agent)" in next(line for line in report.splitlines() if line.startswith("| %s | 52:54" % name))
    assert "| Guest agent | answering | answering | answering |" in report.replace("  ", " ")
    assert "no lease yet" not in report
