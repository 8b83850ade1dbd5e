"""The collection's filters, as Ansible calls them."""

from __future__ import annotations

import json
import re

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.kvmlab.hypervisor.plugins.filter import cpu_pinning, guest_mac, network_errors, storage_errors
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import topology

from ..module_utils import sysfs


def test_guest_mac_is_deterministic_and_local_to_qemu():
    mac = guest_mac.guest_mac("win11")
    assert mac == guest_mac.guest_mac("win11", 0)
    assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", mac)
    # A fixed value: hosts and runs must agree forever, so a change of algorithm fails here.
    assert mac == "52:54:00:ab:93:44"
    assert guest_mac.guest_mac("win11", 1) != mac
    assert guest_mac.guest_mac("arch") != mac


@pytest.mark.parametrize(("name", "index"), [("", 0), (None, 0), ("win11", -1), ("win11", True), ("win11", "0")])
def test_guest_mac_rejects(name, index):
    with pytest.raises(AnsibleFilterError):
        guest_mac.guest_mac(name, index)


def test_filters_are_registered():
    assert set(guest_mac.FilterModule().filters()) == {"guest_mac"}
    assert set(network_errors.FilterModule().filters()) == {"network_errors"}
    assert set(storage_errors.FilterModule().filters()) == {"storage_errors"}


def test_error_filters_name_the_field_of_a_wrong_shape():
    assert network_errors.network_errors({"name": "default"}) == [
        "kvmlab_networks: must be a list of mappings, got {'name': 'default'}."]
    assert storage_errors.storage_errors("vm") == ["kvmlab_storage_pools: must be a list of mappings, got 'vm'."]
    assert network_errors.network_errors([{"name": "default", "hosts": "win11"}]) == [
        "kvmlab_networks[default].hosts: must be a list of mappings, got 'win11'."]


def test_storage_errors_combines_pools_and_volumes():
    errors = storage_errors.storage_errors([{"name": "vm", "path": "vm"}], [{"pool": "x", "name": "a", "capacity": 1}])
    assert len(errors) == 2


def test_cpu_pinning_filter_takes_facts_through_json(tmp_path):
    args = sysfs.hybrid_laptop(tmp_path)
    facts = json.loads(json.dumps(topology.read_topology(args["cpu_dir"], args["node_dir"], args["devices_dir"])))
    result = cpu_pinning.cpu_pinning(facts, [{"name": "win11", "vcpus": 6, "cpu_pinning": "auto"}])
    assert [p["cpuset"] for p in result["win11"]["vcpupin"]] == ["2", "3", "4", "5", "6", "7"]
    with pytest.raises(AnsibleFilterError, match="guest win11: 30 vCPUs to pin"):
        cpu_pinning.cpu_pinning(facts, [{"name": "win11", "vcpus": 30, "cpu_pinning": "auto"}])
    with pytest.raises(AnsibleFilterError):
        cpu_pinning.cpu_pinning({"no": "topology"}, [])
