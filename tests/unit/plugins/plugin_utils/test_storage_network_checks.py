"""Storage and network validation messages name the field and say how to fix it; sizes parse."""

from __future__ import annotations

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import spec_values
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils import storage_network_checks as spec

NET = {"name": "default", "bridge": "virbr0", "address": "192.168.122.1", "prefix": 24,
       "dhcp": {"start": "192.168.122.2", "end": "192.168.122.254"},
       "hosts": [{"name": "win11", "mac": "52:54:00:ab:93:44", "ip": "192.168.122.136"}]}
POOLS = [{"name": "vm", "path": "/mnt/vm"}, {"name": "iso", "path": "/mnt/vm/iso"},
         {"name": "default", "path": "/var/lib/libvirt/images"}]


@pytest.mark.parametrize(("value", "size"), [
    ("40G", 40 * 2**30), ("512M", 512 * 2**20), ("1.5T", int(1.5 * 2**40)), ("40GiB", 40 * 2**30),
    ("64 MB", 64 * 2**20), (1024, 1024), ("2048", 2048)])
def test_parse_size(value, size):
    assert spec_values.parse_size(value) == size


@pytest.mark.parametrize("value", ["", "forty", "40X", -1, True, None])
def test_parse_size_rejects(value):
    with pytest.raises(ValueError):
        spec_values.parse_size(value)


def test_seed_specs_are_sound():
    assert spec.network_errors([NET]) == []
    assert spec.pool_errors(POOLS) == []
    assert spec.volume_errors([{"pool": "vm", "name": "win11.qcow2", "capacity": "40G"}], POOLS) == []
    source = {"path": "/mnt/vm/iso/Tim's \"R&D\" ü.qcow2.xz", "checksum": "sha512:" + "0" * 128}
    assert spec.volume_errors([{"pool": "vm", "name": "a.qcow2", "capacity": "4G", "source": source}], POOLS) == []


@pytest.mark.parametrize(("change", "message"), [
    ({"bridge": "a-very-long-name"}, "kvmlab_networks[default].bridge: 'a-very-long-name' is 16 characters"),
    ({"bridge": ""}, "kvmlab_networks[default].bridge is missing"),
    ({"address": "192.168.122.0"}, "kvmlab_networks[default].address: 192.168.122.0 is the network's own network"),
    ({"address": "192.168.122.300"}, "kvmlab_networks[default].address: '192.168.122.300' is not an IPv4 address"),
    ({"prefix": 33}, "kvmlab_networks[default].prefix: 33 is not a prefix length"),
    ({"dhcp": {"start": "192.168.121.2", "end": "192.168.122.254"}},
     "kvmlab_networks[default].dhcp.start: 192.168.121.2 is outside 192.168.122.0/24"),
    ({"dhcp": {"start": "192.168.122.200", "end": "192.168.122.100"}},
     "kvmlab_networks[default].dhcp: start 192.168.122.200 is after end 192.168.122.100"),
    ({"hosts": [{"name": "a", "mac": "52:54:00:00:00:01", "ip": "192.168.122.1"}]},
     "kvmlab_networks[default].hosts[a].ip: 192.168.122.1 is outside 192.168.122.0/24's usable addresses"),
    ({"hosts": [{"name": "a", "mac": "52:54:00:00:00:01", "ip": "10.0.0.5"}]},
     "kvmlab_networks[default].hosts[a].ip: 10.0.0.5 is outside 192.168.122.0/24"),
    ({"hosts": [{"name": "a", "mac": "52-54-00-00-00-01", "ip": "192.168.122.5"}]},
     "kvmlab_networks[default].hosts[a].mac: '52-54-00-00-00-01' is not a MAC address"),
    ({"hosts": [{"ip": "192.168.122.5"}]}, "kvmlab_networks[default].hosts[0]: give a mac, a name or both"),
    ({"hosts": [{"name": "a", "ip": "192.168.122.5"}, {"name": "a", "ip": "192.168.122.6"}]},
     "kvmlab_networks[default].hosts[a].name: 'a' is reserved twice"),
])
def test_network_errors(change, message):
    errors = spec.network_errors([dict(NET, **change)])
    assert any(e.startswith(message) for e in errors), errors


def test_duplicates_across_networks():
    other = dict(NET, name="lab", address="10.0.0.1", dhcp=None,
                 hosts=[{"name": "x", "mac": "52:54:00:ab:93:44", "ip": "10.0.0.5"}])
    errors = spec.network_errors([NET, other])
    assert "kvmlab_networks[lab].bridge: virbr0 is already the bridge of network 'default'." in errors
    mac = "kvmlab_networks[lab].hosts[x].mac: 52:54:00:ab:93:44 is already reserved"
    assert any(e.startswith(mac) for e in errors)


def test_absent_network_needs_only_a_name():
    assert spec.network_errors([{"name": "old", "state": "absent"}]) == []


@pytest.mark.parametrize(("pools", "message"), [
    ([{"name": "vm", "path": "mnt/vm"}], "kvmlab_storage_pools[vm].path: 'mnt/vm' is relative; give an absolute path"),
    ([*POOLS, {"name": "again", "path": "/mnt/vm/"}], "kvmlab_storage_pools[again].path: /mnt/vm is already the path"),
    ([*POOLS, {"name": "vm", "path": "/srv"}], "kvmlab_storage_pools[vm].name: pool 'vm' is defined twice"),
    ([{"name": "vm"}], "kvmlab_storage_pools[vm].path is missing"),
])
def test_pool_errors(pools, message):
    errors = spec.pool_errors(pools)
    assert any(e.startswith(message) for e in errors), errors


def test_nested_pool_paths_are_fine():
    assert spec.pool_errors([{"name": "vm", "path": "/mnt/vm"}, {"name": "iso", "path": "/mnt/vm/iso"}]) == []


@pytest.mark.parametrize(("vol", "message"), [
    ({"pool": "nope", "name": "a.qcow2", "capacity": "1G"}, "kvmlab_storage_volumes[a.qcow2].pool: 'nope' is "
                                                            "not one of"),
    ({"pool": "vm", "name": "a/b.qcow2", "capacity": "1G"}, "kvmlab_storage_volumes[a/b.qcow2].name"),
    ({"pool": "vm", "name": "a.qcow2", "capacity": "lots"}, "kvmlab_storage_volumes[a.qcow2].capacity: not a size"),
    ({"pool": "vm", "name": "a.qcow2", "capacity": "0"}, "kvmlab_storage_volumes[a.qcow2].capacity must be "
                                                         "more than 0"),
    ({"pool": "vm", "name": "a.qcow2", "capacity": "1G", "backing_file": "base.qcow2"},
     "kvmlab_storage_volumes[a.qcow2].backing_file: 'base.qcow2' is relative"),
    ({"pool": "vm", "name": "a.qcow2", "capacity": "1G", "source": {"url": "ftp://x/a", "checksum": "sha256:0"}},
     "kvmlab_storage_volumes[a.qcow2].source.url: 'ftp://x/a' is not an http"),
    ({"pool": "vm", "name": "a.qcow2", "capacity": "1G", "source": {"path": "/a.qcow2", "checksum": "sha256:0"}},
     "kvmlab_storage_volumes[a.qcow2].source.checksum: 'sha256:0' is not a checksum"),
])
def test_volume_errors(vol, message):
    errors = spec.volume_errors([vol], POOLS)
    assert any(e.startswith(message) for e in errors), errors
