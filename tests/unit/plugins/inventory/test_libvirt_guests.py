"""kvmlab.hypervisor.libvirt_guests: community.libvirt's host variables plus MACs and addresses,
on a fake libvirt connection."""

from __future__ import annotations

import libvirt
import pytest
from ansible.errors import AnsibleError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible_collections.community.libvirt.plugins.inventory import libvirt as upstream
from ansible_collections.kvmlab.hypervisor.plugins.inventory import libvirt_guests as plugin

DOMAIN = """<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid>{cputune}<devices>
  <interface type='network'><mac address='{mac}'/><source network='default' bridge='virbr0'/></interface>
  {extra}</devices></domain>"""
NETWORK = """<network><name>default</name><ip address='192.168.122.1' prefix='24'><dhcp>
  <range start='192.168.122.2' end='192.168.122.254'/>
  <host mac='52:54:00:AB:93:44' name='win11' ip='192.168.122.136'/>
  <host name='byname' ip='192.168.122.9'/>
</dhcp></ip></network>"""


class FakeDomain:
    def __init__(self, name, uuid, state, xml, agent=None):
        self._name, self._uuid, self._state, self._xml, self._agent = name, uuid, state, xml, agent

    def name(self):
        return self._name

    def UUIDString(self):
        return self._uuid

    def info(self):
        return [self._state, 2097152, 2097152, 1, 0]

    def XMLDesc(self, _flags=0):
        return self._xml

    def guestInfo(self, types=0):
        if self._state != 1:
            raise libvirt.libvirtError(plugin.NOT_RUNNING)
        raise libvirt.libvirtError("Guest agent is not responding")

    def interfaceAddresses(self, source):
        if self._state != 1:
            raise libvirt.libvirtError(plugin.NOT_RUNNING)
        if self._agent is None:
            raise libvirt.libvirtError("Guest agent is not responding")
        return self._agent


class FakeNetwork:
    def name(self):
        return "default"

    def isActive(self):
        return True

    def XMLDesc(self, _flags=0):
        return NETWORK

    def DHCPLeases(self):
        return [{"mac": "52:54:00:00:00:02", "ipaddr": "192.168.122.50", "type": 0},
                {"mac": "52:54:00:00:00:02", "ipaddr": "fd00::50", "type": 1}]


class FakeConnection:
    def __init__(self):
        pin = "<cputune><vcpupin vcpu='0' cpuset='1'/></cputune>"
        self.domains = [
            FakeDomain("win11", "5abcc79e-0000-0000-0000-000000000001", 1,
                       DOMAIN.format(name="win11", uuid="u1", cputune=pin, mac="52:54:00:ab:93:44", extra="")),
            FakeDomain("arch", "5abcc79e-0000-0000-0000-000000000002", 5,
                       DOMAIN.format(name="arch", uuid="u2", cputune="", mac="52:54:00:00:00:02",
                                     extra="<interface type='user'><mac address='52:54:00:00:00:03'/></interface>")),
            FakeDomain("kali", "5abcc79e-0000-0000-0000-000000000003", 1,
                       DOMAIN.format(name="kali", uuid="u3", cputune="", mac="52:54:00:00:00:04", extra="")),
            # A booted guest whose agent answers: its address, though the network has none for it.
            FakeDomain("deb", "5abcc79e-0000-0000-0000-000000000004", 1,
                       DOMAIN.format(name="deb", uuid="u4", cputune="", mac="52:54:00:00:00:05", extra=""),
                       agent={"enp1s0": {"hwaddr": "52:54:00:00:00:05",
                                         "addrs": [{"addr": "192.168.122.201", "prefix": 24, "type": 0}]}}),
        ]

    def getType(self):
        return "QEMU"

    def listAllDomains(self):
        return self.domains

    # Set to a libvirt error code to fail getAllDomainStats with it; `partial`: guests whose
    # record lacks the balloon fields (a busy QEMU under NOWAIT).
    stats_error: int | None = None
    partial: tuple = ()

    def getAllDomainStats(self, stats, flags):
        assert flags == libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
        if self.stats_error is not None:
            raise GoneError(self.stats_error)
        records = []
        for domain in self.domains:
            state, max_kb, memory_kb, vcpus, _cpu_ns = domain.info()
            record = {"state.state": state, "state.reason": 0, "vcpu.current": vcpus, "vcpu.maximum": vcpus}
            if domain.name() not in self.partial:
                record.update({"balloon.maximum": max_kb, "balloon.current": memory_kb})
            # As libvirt 9 reports it for a shut-off domain too: a growing figure, not the guest's.
            record["cpu.time"] = 123456789
            records.append((domain, record))
        return records

    def listAllNetworks(self):
        return [FakeNetwork()]

    def lookupByUUIDString(self, uuid):
        return next(d for d in self.domains if d.UUIDString() == uuid)

    def close(self):
        return 0


SOURCE = """\
plugin: kvmlab.hypervisor.libvirt_guests
uri: "qemu+ssh://root@hv/system?keyfile={{ inventory_dir }}/key"
groups:
  guests: true
  guests_pinned: "'<vcpupin ' in xml_desc"
keyed_groups:
  - key: info.state
    prefix: guests
compose:
  ansible_host: libvirt_addresses | first
"""


@pytest.fixture
def parse(tmp_path, monkeypatch):
    """Parse an inventory source (SOURCE by default) against FakeConnection: the plugin as
    Ansible's loader sets it up (its options from DOCUMENTATION), a hypervisor already in the
    inventory; returns the inventory and the URIs opened."""
    uris = []

    def fake_open(uri):
        uris.append(uri)
        return FakeConnection()

    monkeypatch.setattr(libvirt, "open", fake_open)
    name = "kvmlab.hypervisor.libvirt_guests"
    inventory_loader._load_config_defs(name, plugin, plugin.__file__)

    def run(text=SOURCE, cache=True):
        source = tmp_path / "guests.libvirt.yml"
        source.write_text(text)
        obj = plugin.InventoryModule()
        obj._load_name = name
        data = InventoryData()
        data.add_group("hypervisors")
        data.add_host("hv", group="hypervisors")
        obj.parse(data, DataLoader(), str(source), cache=cache)
        if obj.get_option("cache"):
            obj.update_cache_if_changed()  # as Ansible's InventoryManager does after a Cacheable's parse
        return data, uris

    return run


def hostvars(data, name):
    return data.get_host(name).get_vars()


def members(data, group):
    return sorted(h.name for h in data.groups[group].get_hosts()) if group in data.groups else []


def test_groups_and_addresses(parse, tmp_path):
    data, uris = parse()
    # One connection for the guests and the networks.
    assert uris == ["qemu+ssh://root@hv/system?keyfile=%s/key" % tmp_path]
    assert members(data, "guests") == ["arch", "deb", "kali", "win11"]
    assert members(data, "guests_running") == ["deb", "kali", "win11"]
    assert members(data, "guests_shutoff") == ["arch"]
    assert members(data, "guests_pinned") == ["win11"]
    assert members(data, "hypervisors") == ["hv"]
    win11 = hostvars(data, "win11")
    # community.libvirt's variables stay.
    assert win11["info"]["state"] == "running" and "<vcpupin " in win11["xml_desc"]
    assert win11["ansible_connection"] == "community.libvirt.libvirt_qemu"
    # The reservation, matched case-insensitively on the MAC.
    assert win11["libvirt_macs"] == ["52:54:00:ab:93:44"]
    assert win11["libvirt_addresses"] == ["192.168.122.136"]
    assert win11["ansible_host"] == "192.168.122.136"
    assert win11["libvirt_interfaces"] == [{
        "mac": "52:54:00:ab:93:44", "type": "network", "network": "default", "bridge": "virbr0",
        "agent": [], "lease": [], "reservation": ["192.168.122.136"], "addresses": ["192.168.122.136"]}]
    # A lease (IPv4 first); a user-mode interface has none.
    arch = hostvars(data, "arch")
    assert arch["libvirt_macs"] == ["52:54:00:00:00:02", "52:54:00:00:00:03"]
    assert arch["libvirt_addresses"] == ["192.168.122.50", "fd00::50"]
    assert arch["ansible_host"] == "192.168.122.50"
    assert arch["libvirt_interfaces"][1]["addresses"] == []
    # Neither: no ansible_host, and the composed one is skipped without an error.
    kali = hostvars(data, "kali")
    assert kali["libvirt_addresses"] == [] and "ansible_host" not in kali
    deb = hostvars(data, "deb")
    assert deb["libvirt_addresses"] == ["192.168.122.201"] and deb["libvirt_interfaces"][0]["agent"] == deb[
        "libvirt_addresses"]


def test_strict_compose_sees_the_added_variables(parse):
    # compose runs once a guest's variables are all set, so strict mode does not fail on them.
    data, _uris = parse(SOURCE + "strict: true\ncompose:\n  first_mac: libvirt_macs[0]\n")
    assert hostvars(data, "kali")["first_mac"] == "52:54:00:00:00:04"


def test_inventory_hostname_uuid(parse):
    data, _uris = parse(SOURCE + "inventory_hostname: uuid\n")
    assert hostvars(data, "5abcc79e-0000-0000-0000-000000000001")["libvirt_macs"] == ["52:54:00:ab:93:44"]


def test_verify_file(tmp_path):
    obj = plugin.InventoryModule()
    for name, ok in [("guests.libvirt.yml", True), ("libvirt.yaml", True), ("hosts.yml", False)]:
        (tmp_path / name).write_text("plugin: kvmlab.hypervisor.libvirt_guests\n")
        assert obj.verify_file(str(tmp_path / name)) is ok


def test_reservations_and_interfaces():
    assert plugin.reservations_of(NETWORK) == {"52:54:00:ab:93:44": ["192.168.122.136"]}
    bridged = "<domain><devices><interface type='bridge'><mac address='52:54:00:AA:00:01'/>" \
              "<source bridge='br0'/></interface></devices></domain>"
    interfaces = plugin.interfaces_of(bridged)
    assert interfaces == [{"mac": "52:54:00:aa:00:01", "type": "bridge", "network": None, "bridge": "br0"}]
    # An interface on a bridge counts the network whose bridge it is, and only that one.
    reservations = {"a": {"52:54:00:aa:00:01": ["10.0.0.9"]}, "b": {"52:54:00:aa:00:01": ["10.0.0.5"]}}
    assert plugin.add_addresses(interfaces, {}, reservations, bridges={"br0": "b", "virbr1": "a"}) == ["10.0.0.5"]
    assert plugin.add_addresses(interfaces, {}, reservations, bridges={"virbr1": "a"}) == []
    assert plugin.bridge_of("<network><name>b</name><bridge name='br0' stp='on'/></network>") == "br0"


def test_a_lease_on_another_network_never_takes_an_interfaces_address():
    """A spoofing guest on another network with win11's MAC gets a lease there: win11's interface
    keeps its own network's reservation."""
    interfaces = plugin.interfaces_of(DOMAIN.format(name="w", uuid="u", cputune="", mac="52:54:00:ab:93:44", extra=""))
    leases = {"isolated": {"52:54:00:ab:93:44": ["10.66.0.2"]}}
    reservations = {"default": {"52:54:00:ab:93:44": ["192.168.122.136"]}, "isolated": {}}
    assert plugin.add_addresses(interfaces, leases, reservations, {}, {"virbr0": "default"}) == ["192.168.122.136"]
    assert interfaces[0]["lease"] == []


def test_agent_addresses_come_first():
    answer = {
        "lo": {"hwaddr": "00:00:00:00:00:00", "addrs": [{"addr": "127.0.0.1", "prefix": 8, "type": 0}]},
        "enp1s0": {"hwaddr": "52:54:00:AB:93:44", "addrs": [
            {"addr": "fe80::5054:ff:feab:9344", "prefix": 64, "type": 1},
            {"addr": "192.168.122.136", "prefix": 24, "type": 0},
            {"addr": "not an address", "prefix": 24, "type": 0}]},
        "broken": "x",
    }
    agent = plugin.agent_addresses_of(answer)
    assert agent == {"52:54:00:ab:93:44": ["192.168.122.136"]}
    # Without an answering agent (community.libvirt's {"error": ...}, or nothing): none.
    assert plugin.agent_addresses_of({"error": "Guest agent is not responding"}) == {}
    assert plugin.agent_addresses_of("") == {}
    interfaces = plugin.interfaces_of(DOMAIN.format(name="w", uuid="u", cputune="", mac="52:54:00:ab:93:44", extra=""))
    leases = {"default": {"52:54:00:ab:93:44": ["192.168.122.77"]}}
    reservations = {"default": {"52:54:00:ab:93:44": ["192.168.122.136"]}}
    assert plugin.add_addresses(interfaces, leases, reservations, {"52:54:00:ab:93:44": ["192.168.122.99"]}) \
        == ["192.168.122.99"]
    assert interfaces[0]["agent"] == ["192.168.122.99"] and interfaces[0]["lease"] == ["192.168.122.77"]
    assert plugin.add_addresses(interfaces, leases, reservations, {}) == ["192.168.122.77"]
    assert plugin.add_addresses(interfaces, {}, reservations) == ["192.168.122.136"]


class GoneError(libvirt.libvirtError):
    def __init__(self, code=libvirt.VIR_ERR_NO_DOMAIN):
        super().__init__("gone (code %d)" % code)
        self.code = code

    def get_error_code(self):
        return self.code


def vanish(_flags=0):
    raise GoneError()


@pytest.mark.parametrize("call", ["info", "XMLDesc", "guestInfo", "interfaceAddresses"])
def test_a_guest_that_goes_while_it_is_read_is_left_out(parse, monkeypatch, call):
    """A guest undefined between listAllDomains and any of its reads is left out of the listing
    (no play reaches it by a stale name, no address is made up); the others are listed."""
    def fake_open(uri):
        conn = FakeConnection()
        conn.stats_error = libvirt.VIR_ERR_NO_SUPPORT  # so that info() is read guest by guest
        setattr(conn.domains[2], call, lambda *args, **kwargs: vanish())
        return conn

    monkeypatch.setattr(libvirt, "open", fake_open)
    data, _uris = parse()
    assert data.get_host("kali") is None
    assert members(data, "guests") == ["arch", "deb", "win11"]
    assert hostvars(data, "win11")["libvirt_addresses"] == ["192.168.122.136"]


def test_a_network_that_goes_while_it_is_read_gives_no_addresses(parse, monkeypatch):
    class GoneNetwork(FakeNetwork):
        def XMLDesc(self, _flags=0):
            raise GoneError(libvirt.VIR_ERR_NO_NETWORK)

    monkeypatch.setattr(FakeConnection, "listAllNetworks", lambda self: [GoneNetwork()])
    data, _uris = parse()
    assert hostvars(data, "win11")["libvirt_addresses"] == []
    assert hostvars(data, "deb")["libvirt_addresses"] == ["192.168.122.201"]  # its agent's


def test_any_other_libvirt_error_fails_naming_it_and_closes_the_connection(parse, monkeypatch):
    closed = []

    def fake_open(uri):
        conn = FakeConnection()

        def broken(_flags=0):
            raise GoneError(libvirt.VIR_ERR_RPC)

        conn.domains[1].XMLDesc = broken
        conn.close = lambda: closed.append(True)
        return conn

    monkeypatch.setattr(libvirt, "open", fake_open)
    with pytest.raises(AnsibleError, match="libvirt_guests: gone"):
        parse()
    assert closed == [True]


def test_a_guest_without_an_answering_agent_gets_the_error_as_community_libvirt_sets_it(parse):
    data, _uris = parse()
    assert hostvars(data, "kali")["interface_addresses"] == {"error": "Guest agent is not responding"}
    assert hostvars(data, "kali")["guest_info"] == {"error": "Guest agent is not responding"}


def test_every_variable_community_libvirt_sets_is_set_the_same(parse, tmp_path):
    """A source written for community.libvirt.libvirt keeps working: its plugin, run against the
    same connection, sets no host variable this plugin does not set with the same value."""
    ours, uris = parse()
    name = "community.libvirt.libvirt"
    inventory_loader._load_config_defs(name, upstream, upstream.__file__)
    obj = upstream.InventoryModule()
    obj._load_name = name
    source = tmp_path / "upstream.libvirt.yml"
    source.write_text("plugin: community.libvirt.libvirt\nuri: '%s'\n" % uris[0])
    theirs = InventoryData()
    obj.parse(theirs, DataLoader(), str(source))
    assert sorted(theirs.hosts) == ["arch", "deb", "kali", "win11"]
    for guest in theirs.hosts:
        expected = theirs.get_host(guest).vars
        assert {"info", "xml_desc", "guest_info", "interface_addresses", "ansible_connection",
                "ansible_libvirt_uri"} <= set(expected)
        got = hostvars(ours, guest)
        assert {key: got.get(key) for key in expected} == expected


def test_values_from_libvirt_are_never_templated(parse, monkeypatch):
    hostile = "{{ 7 * 6 }}"
    original = FakeConnection.__init__

    def init(self):
        original(self)
        self.domains[0]._xml = self.domains[0]._xml.replace("network='default'", "network='%s'" % hostile)

    monkeypatch.setattr(FakeConnection, "__init__", init)
    data, _uris = parse(SOURCE + "  net: libvirt_interfaces[0].network\n")
    assert hostvars(data, "win11")["net"] == hostile


@pytest.mark.parametrize("stats_error,partial", [(None, ()), (None, ("arch",)), (libvirt.VIR_ERR_NO_SUPPORT, ())])
def test_info_is_the_same_from_one_stats_call_from_a_partial_one_and_guest_by_guest(parse, monkeypatch,
                                                                                    stats_error, partial):
    """One getAllDomainStats call gives every shut-off guest's info (CPU time 0, as info() has it);
    a guest in another state and a record without a field are read with info(), and a libvirt
    without the call guest by guest: the same variables each way."""
    calls = []

    def fake_open(uri):
        conn = FakeConnection()
        conn.stats_error, conn.partial = stats_error, partial
        for domain in conn.domains:
            name = domain.name()
            original = domain.info
            domain.info = lambda original=original, name=name: calls.append(name) or original()
        return conn

    monkeypatch.setattr(libvirt, "open", fake_open)
    data, _uris = parse()
    for name, state in (("win11", "running"), ("arch", "shutoff"), ("kali", "running")):
        info = hostvars(data, name)["info"]
        assert info == {"state_number": 1 if state == "running" else 5, "state": state, "maxMem_kb": 2097152,
                        "memory_kb": 2097152, "nrVirtCpu": 1, "cpuTime_ns": 0}
    # The fake's stats call runs info() once per guest; the plugin runs it again for the running
    # guests and the partial records (without the call, once per guest itself).
    again = sorted({name for name in calls if calls.count(name) == 2})
    assert again == ([] if stats_error is not None else sorted(["win11", "kali", "deb", *partial]))


def test_another_stats_error_fails_naming_it(parse, monkeypatch):
    def fake_open(uri):
        conn = FakeConnection()
        conn.stats_error = libvirt.VIR_ERR_RPC
        return conn

    monkeypatch.setattr(libvirt, "open", fake_open)
    with pytest.raises(AnsibleError, match="libvirt_guests: gone"):
        parse()


def test_a_guest_that_is_not_running_gets_libvirts_error_without_an_agent_call(parse, monkeypatch):
    asked = []
    monkeypatch.setattr(FakeDomain, "guestInfo", lambda self, types=0: asked.append(self._name) or {})
    data, _uris = parse()
    assert hostvars(data, "arch")["guest_info"] == {"error": plugin.NOT_RUNNING}
    assert hostvars(data, "arch")["interface_addresses"] == {"error": plugin.NOT_RUNNING}
    assert sorted(asked) == ["deb", "kali", "win11"]


CACHED = """\
plugin: kvmlab.hypervisor.libvirt_guests
uri: "qemu+ssh://root@hv/system?keyfile={{{{ inventory_dir }}}}/key"
cache: true
cache_plugin: jsonfile
cache_connection: {dir}
groups:
  guests: true
  guests_pinned: "'<vcpupin ' in xml_desc"
keyed_groups:
  - key: info.state
    prefix: guests
  - key: libvirt_macs | first
    prefix: mac
    parent_group: by_mac
compose:
  ansible_host: libvirt_addresses | first
"""


def listing(data) -> dict:
    """Every guest's variables and every group's guests and parents: what a play sees."""
    guests = sorted(h for h in data.hosts if h != "hv")
    return {"vars": {g: hostvars(data, g) for g in guests},
            "groups": {name: (members(data, name), sorted(p.name for p in group.parent_groups))
                       for name, group in data.groups.items()}}


@pytest.fixture
def constructed(monkeypatch):
    """The guests that compose, groups and keyed_groups were templated for, run by run."""
    names: list = []
    original = plugin.InventoryModule._construct
    monkeypatch.setattr(plugin.InventoryModule, "_construct",
                        lambda self, name: names.append(name) or original(self, name))
    return names


def test_the_cache_gives_the_same_inventory_without_templating_again(parse, tmp_path, constructed):
    source = CACHED.format(dir=tmp_path / "c")
    first, _uris = parse(source)
    assert sorted(constructed) == ["arch", "deb", "kali", "win11"]
    assert members(first, "mac_52_54_00_ab_93_44") == ["win11"]
    assert [p.name for p in first.groups["mac_52_54_00_ab_93_44"].parent_groups] == ["by_mac"]
    constructed.clear()
    again, _uris = parse(source)
    assert constructed == []
    assert listing(again) == listing(first)
    # --flush-cache: every guest is templated again, and the result is the same.
    flushed, _uris = parse(source, cache=False)
    assert sorted(constructed) == ["arch", "deb", "kali", "win11"]
    assert listing(flushed) == listing(first)


def test_a_guest_changed_added_or_removed_is_seen_on_the_next_run(parse, tmp_path, monkeypatch, constructed):
    """Each guest's cached result is keyed by everything read for it: two guests swapping MACs
    (and with them their reservation's and lease's addresses), a new guest and a removed one are
    seen at once, and no guest keeps another's address."""
    source = CACHED.format(dir=tmp_path / "c")
    parse(source)
    assert sorted(constructed) == ["arch", "deb", "kali", "win11"]
    constructed.clear()

    def swapped(uri):
        conn = FakeConnection()
        win11, arch = conn.domains[0], conn.domains[1]
        win11._xml, arch._xml = (win11._xml.replace("52:54:00:ab:93:44", "52:54:00:00:00:02"),
                                 arch._xml.replace("52:54:00:00:00:02", "52:54:00:ab:93:44"))
        conn.domains = [d for d in conn.domains if d.name() != "kali"]
        conn.domains.append(FakeDomain("new", "5abcc79e-0000-0000-0000-000000000009", 5,
                                       DOMAIN.format(name="new", uuid="u9", cputune="", mac="52:54:00:00:00:09",
                                                     extra="")))
        return conn

    monkeypatch.setattr(libvirt, "open", swapped)
    data, _uris = parse(source)
    assert sorted(constructed) == ["arch", "new", "win11"]
    assert data.get_host("kali") is None
    assert hostvars(data, "win11")["ansible_host"] == "192.168.122.50"  # the lease of its new MAC
    assert hostvars(data, "arch")["ansible_host"] == "192.168.122.136"  # the reservation of its new MAC
    assert members(data, "mac_52_54_00_ab_93_44") == ["arch"]
    assert members(data, "mac_52_54_00_00_00_02") == ["win11"]
    assert members(data, "guests_shutoff") == ["arch", "new"]
    # What a fresh read (no cache) makes of the same libvirt: the same listing.
    constructed.clear()
    fresh, _uris = parse(source, cache=False)
    assert listing(fresh) == listing(data)


def test_a_changed_option_constructs_every_guest_again(parse, tmp_path, constructed):
    source = CACHED.format(dir=tmp_path / "c")
    parse(source)
    constructed.clear()
    data, _uris = parse(source.replace("prefix: mac", "prefix: nic"))
    assert sorted(constructed) == ["arch", "deb", "kali", "win11"]
    assert members(data, "nic_52_54_00_ab_93_44") == ["win11"]
    assert "mac_52_54_00_ab_93_44" not in data.groups


@pytest.mark.parametrize("expression", ["lookup('ansible.builtin.env', 'HOME')", "now().year", "query('x') | length"])
def test_expressions_that_read_more_than_the_guest_are_never_cached(parse, tmp_path, constructed, expression):
    source = CACHED.format(dir=tmp_path / "c").replace("compose:\n", "compose:\n  outside: \"%s\"\n" % expression)
    parse(source)
    constructed.clear()
    parse(source)
    assert sorted(constructed) == ["arch", "deb", "kali", "win11"]
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").iterdir())  # nothing written


def test_a_corrupt_cache_file_costs_only_the_cache(parse, tmp_path, constructed):
    """A cache file that does not parse (written by hand, a broken disk): the guests are listed as
    without a cache, and the next run writes a good one."""
    source = CACHED.format(dir=tmp_path / "c")
    first, _uris = parse(source)
    [cache_file] = list((tmp_path / "c").iterdir())
    cache_file.write_text('{"__payload__": {"config": ')
    constructed.clear()
    data, _uris = parse(source)
    assert sorted(constructed) == ["arch", "deb", "kali", "win11"]
    assert listing(data) == listing(first)
    constructed.clear()
    parse(source)
    assert constructed == []
