# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: libvirt_guests
short_description: libvirt guests with community.libvirt's host variables plus their MACs and addresses
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - The guests of one libvirt hypervisor, with the host variables C(community.libvirt.libvirt)
    sets (C(info) with C(info.state), C(xml_desc), C(guest_info), C(interface_addresses),
    C(ansible_connection), C(ansible_libvirt_uri)), so a source written for that plugin keeps its
    C(compose), C(groups) and C(keyed_groups) when its C(plugin) line is changed.
  - Adds what that plugin does not expose, read over the same connection,
    C(libvirt_interfaces), C(libvirt_macs) and C(libvirt_addresses). An interface's addresses are
    those its guest agent reports for its MAC (C(virsh domifaddr --source agent), without loopback
    and link-local ones), else its DHCP lease on a libvirt network (C(virsh net-dhcp-leases)), else
    the network's DHCP reservation for its MAC (C(<host mac= ip=>) in C(virsh net-dumpxml)), so an
    address is known before the guest has booted and without a guest agent.
  - A lease or reservation counts only on the interface's own network (its C(source network), or
    the libvirt network whose bridge it is on), so a guest on another network with the same MAC
    cannot take an interface's address. An interface on a bridge that is no libvirt network's
    gets addresses from its agent only.
  - The guests and networks are read over one connection; a guest or network that disappears
    while it is read is left out of this listing, not an error. Every value read from libvirt is
    marked unsafe (never templated).
  - Why not C(community.libvirt.libvirt) itself? Its 2.x plugin applies C(compose) while it lists,
    before any variable of this plugin exists, adds a group named after each guest's UUID (or
    name, with O(inventory_hostname=uuid)) that Ansible warns about on every run, and offers no
    hook to add variables; extending it means overriding its private methods. This plugin lists
    the guests itself and uses community.libvirt's public surface, its C(libvirt_qemu) and
    C(libvirt_lxc) connection plugins.
  - The guests are reached by name through the connection plugin set as C(ansible_connection)
    (community.libvirt's C(libvirt_qemu) for QEMU, the guest agent, no SSH); that connection finds
    the guest by C(ansible_host), so leave C(ansible_host) alone for it (compose it from
    C(libvirt_addresses) only with C(ansible_connection=ssh)).
  - O(uri) is a template; C(inventory_dir) is the directory of the inventory source, and
    lookups work (C(lookup('ansible.builtin.env', ...))).
  - The source file's name must end in C(libvirt.yml) or C(libvirt.yaml), for example
    C(guests.libvirt.yml).
  - libvirt's own error messages (a guest without a guest agent) are not printed on stderr.
  - Every guest's information comes from one C(getAllDomainStats) call, and only running guests'
    agents are asked (the others get libvirt's own C(domain is not running) error, as
    community.libvirt sets it).
  - With O(cache) on (Ansible's inventory cache), the guests are still read from libvirt on every
    run, because nothing cheaper tells that a guest was redefined, renumbered or re-addressed;
    what is cached is what O(compose), O(groups) and O(keyed_groups) made of each guest, keyed by a
    digest of everything read for it (state, definition, agent answers, leases and reservations)
    and of those options. A guest whose reading changed in any way, a guest added, and a changed
    option are constructed again, and a removed guest is gone, on the very next run; a cached
    result is only ever used for the same reading of the same guest, so it cannot give a guest
    another guest's address. At 1000 guests this saves most of the controller's time in this source,
    which is spent templating those options for each guest.
  - Nothing is cached when an option's expression uses a lookup, C(query) or C(now), or with
    O(use_extra_vars), since their results depend on more than the guest.
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks the file as a source for this plugin.
    required: true
    choices: [kvmlab.hypervisor.libvirt_guests]
  uri:
    description:
      - libvirt connection URI of the hypervisor, for example
        C(qemu+ssh://root@hv.example.com/system?keyfile=/path/to/key).
      - Templated, with C(inventory_dir).
    required: true
    type: str
  inventory_hostname:
    description: Register guests by C(name) or by C(uuid), as in community.libvirt's plugin.
    type: str
    choices: [name, uuid]
    default: name
requirements:
  - the collection community.libvirt 2.0.0 or later, for its connection plugins
  - libvirt-python on the controller (built from source with pip; needs the libvirt headers,
    pkg-config and a C compiler)
"""

EXAMPLES = r"""
# examples/workstation/inventories/demo/guests.libvirt.yml (the example project)
plugin: kvmlab.hypervisor.libvirt_guests
uri: "qemu+ssh://root@127.0.0.1:22220/system?keyfile={{ inventory_dir }}/../../.kvmlab/ssh/id_ed25519&no_verify=1"
groups:
  guests: true
  guests_pinned: "'<vcpupin ' in xml_desc"
keyed_groups:
  - key: info.state
    prefix: guests
compose:
  guest_address: libvirt_addresses | first
"""

import hashlib
import ipaddress
import json
import os
import re
import xml.etree.ElementTree as ET

from ansible.errors import AnsibleError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.display import Display
from ansible.utils.unsafe_proxy import wrap_var

display = Display()

try:
    import libvirt
except ImportError as exc:
    LIBVIRT_ERROR: ImportError | None = exc
else:
    LIBVIRT_ERROR = None


def interfaces_of(xml_desc: str) -> list[dict]:
    """The network interfaces of a domain XML, in its order: MAC, type, and the libvirt network
    or bridge they are on."""
    result = []
    for iface in ET.fromstring(xml_desc).findall("devices/interface"):
        mac = iface.find("mac")
        source = iface.find("source")
        source = {} if source is None else source.attrib
        result.append({
            "mac": None if mac is None else mac.get("address", "").lower() or None,
            "type": iface.get("type"),
            "network": source.get("network"),
            "bridge": source.get("bridge"),
        })
    return result


def bridge_of(network_xml: str) -> str | None:
    """A libvirt network's bridge device (<bridge name=>), if it has one."""
    bridge = ET.fromstring(network_xml).find("bridge")
    return None if bridge is None else bridge.get("name")


def reservations_of(network_xml: str) -> dict[str, list[str]]:
    """A libvirt network's DHCP reservations by MAC (<ip><dhcp><host mac= ip=>), IPv4 and IPv6."""
    result: dict[str, list[str]] = {}
    for host in ET.fromstring(network_xml).findall("ip/dhcp/host"):
        if host.get("mac") and host.get("ip"):
            result.setdefault(host.get("mac").lower(), []).append(host.get("ip"))
    return result


def _ip_order(address: str) -> tuple:
    ip = ipaddress.ip_address(address)
    return (ip.version, ip)


def agent_addresses_of(interface_addresses) -> dict[str, list[str]]:
    """The addresses a guest agent reports, by MAC, from community.libvirt's
    `interface_addresses` (libvirt's interfaceAddresses with the agent source: name ->
    {hwaddr, addrs: [{addr, prefix, type}]}, or {"error": ...} without an answering agent).
    Loopback and link-local addresses are left out: they reach nothing from outside."""
    result: dict[str, list[str]] = {}
    if not isinstance(interface_addresses, dict):
        return result
    for iface in interface_addresses.values():
        if not isinstance(iface, dict) or not isinstance(iface.get("hwaddr"), str):
            continue
        for entry in iface.get("addrs") or []:
            try:
                ip = ipaddress.ip_address(str(entry.get("addr")).split("%", maxsplit=1)[0])
            except (AttributeError, ValueError):
                continue
            if not (ip.is_loopback or ip.is_link_local):
                result.setdefault(iface["hwaddr"].lower(), []).append(str(ip))
    return result


def add_addresses(interfaces: list[dict], leases: dict[str, dict], reservations: dict[str, dict],
                  agent: dict[str, list[str]] | None = None, bridges: dict[str, str] | None = None) -> list[str]:
    """Give each interface its `agent`, `lease` and `reservation` addresses (lists, IPv4 first)
    and its `addresses`: the agent's, else the leases, else the reservations. agent: MAC ->
    addresses; leases and reservations: network name -> MAC -> addresses, looked up in the
    interface's own network only (its source network, or the network whose bridge it is on,
    bridges: bridge name -> network name). Returns the guest's addresses in interface order,
    without repeats."""
    result: list[str] = []
    for iface in interfaces:
        mac = iface["mac"]
        network = iface["network"] if iface["network"] is not None else (bridges or {}).get(iface["bridge"])
        lease = sorted(set(leases.get(network, {}).get(mac, [])), key=_ip_order)
        reserved = reservations.get(network, {}).get(mac, [])
        iface["agent"] = sorted(set((agent or {}).get(mac, [])), key=_ip_order)
        iface["lease"] = lease
        iface["reservation"] = sorted(set(reserved), key=_ip_order)
        iface["addresses"] = iface["agent"] or lease or iface["reservation"]
        result.extend(ip for ip in iface["addresses"] if ip not in result)
    return result


# libvirt's virDomainState, by number, as community.libvirt names them in `info.state`.
STATES = ["nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended"]
# community.libvirt's connection plugins, by libvirt driver (getType()).
CONNECTIONS = {"QEMU": "community.libvirt.libvirt_qemu", "LXC": "community.libvirt.libvirt_lxc"}


def _vanished(error) -> bool:
    """Whether a libvirt error says the guest or network went away while it was read."""
    return error.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_NETWORK)


def _quiet(_ctx, _err):
    """libvirt's default error handler prints every error on stderr, including the expected
    'guest agent is not connected' of each guest; the errors are still raised."""


def _agent(call):
    """What a guest-agent call returns, or {"error": ...} as community.libvirt sets it when the
    guest has no answering agent."""
    try:
        return call()
    except libvirt.libvirtError as e:
        if _vanished(e):
            raise
        return {"error": str(e)}


# What libvirt answers a guest-agent call on a guest that is not running (VIR_ERR_OPERATION_INVALID).
NOT_RUNNING = "Requested operation is not valid: domain is not running"


def stats_info(stats: dict) -> tuple | None:
    """A shut-off domain's info() tuple (state, maximum and current memory in KiB, vCPUs, CPU time
    in ns) from its getAllDomainStats record, as virDomainGetInfo gives it (CPU time 0: the
    record's cpu.time of a shut-off domain is not its own, it grows from run to run). None for a
    domain in any other state, or a record without a field: read with info()."""
    if stats.get("state.state") != libvirt.VIR_DOMAIN_SHUTOFF:
        return None
    try:
        return (stats["state.state"], stats["balloon.maximum"], stats["balloon.current"], stats["vcpu.current"], 0)
    except KeyError:
        return None


# The getAllDomainStats groups that hold info()'s fields but the CPU time.
INFO_STATS = ("VIR_DOMAIN_STATS_STATE", "VIR_DOMAIN_STATS_BALLOON", "VIR_DOMAIN_STATS_VCPU")


def list_guests(connection) -> list[tuple]:
    """Every domain, with its info() tuple where one getAllDomainStats call (NOWAIT: nothing waits
    on a busy guest) gives it (shut-off guests), else None (read with info()). One round trip
    instead of one per shut-off guest; a libvirt without the call (VIR_ERR_NO_SUPPORT) is listed
    as before."""
    flags = 0
    for name in INFO_STATS:
        flags |= getattr(libvirt, name)
    try:
        found = connection.getAllDomainStats(flags, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
    except libvirt.libvirtError as e:
        if e.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
        return [(domain, None) for domain in connection.listAllDomains()]
    return [(domain, stats_info(stats)) for domain, stats in found]


def read_guest(domain, by: str, info: tuple | None = None) -> tuple[str, dict]:
    """One guest's inventory name and the variables community.libvirt sets for it. Only a
    running guest's agent is asked: libvirt refuses the call for any other (the error set is the
    one it gives), and a paused guest's agent could only time out. At 1000 guests, mostly shut
    off, that is 2000 round trips fewer."""
    state, max_kb, memory_kb, vcpus, cpu_ns = info if info is not None else domain.info()
    running = state == libvirt.VIR_DOMAIN_RUNNING
    return (domain.UUIDString() if by == "uuid" else domain.name()), {
        "info": {"state_number": state, "state": STATES[state] if 0 <= state < len(STATES) else "last",
                 "maxMem_kb": max_kb, "memory_kb": memory_kb, "nrVirtCpu": vcpus, "cpuTime_ns": cpu_ns},
        "xml_desc": domain.XMLDesc(0),
        "guest_info": _agent(lambda: domain.guestInfo(types=0)) if running else {"error": NOT_RUNNING},
        "interface_addresses": _agent(lambda: domain.interfaceAddresses(
            source=libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT)) if running else {"error": NOT_RUNNING},
    }


def read_networks(connection) -> tuple[dict, dict, dict]:
    """The libvirt networks' DHCP leases and reservations (network -> MAC -> addresses) and
    bridges (bridge -> network)."""
    leases: dict[str, dict] = {}
    reservations: dict[str, dict] = {}
    bridges: dict[str, str] = {}
    for network in connection.listAllNetworks():
        try:
            name, xml_desc = network.name(), network.XMLDesc()
            reserved, bridge = reservations_of(xml_desc), bridge_of(xml_desc)
            found = [lease for lease in (network.DHCPLeases() if network.isActive() else [])
                     if lease.get("mac") and lease.get("ipaddr")]
        except libvirt.libvirtError as e:
            if not _vanished(e):
                raise
            continue
        reservations[name] = reserved
        bridges.setdefault(bridge, name)
        for lease in found:
            leases.setdefault(name, {}).setdefault(lease["mac"].lower(), []).append(lease["ipaddr"])
    return leases, reservations, bridges


def read_libvirt(uri: str, by: str) -> dict[str, dict]:
    """Every guest's host variables, from one connection: community.libvirt's, the connection
    plugin, and the interfaces with their addresses. A guest or network that goes away while it is
    read is left out."""
    connection = libvirt.open(uri)
    try:
        plugin = CONNECTIONS.get(connection.getType())
        leases, reservations, bridges = read_networks(connection)
        guests = {}
        for domain, info in list_guests(connection):
            try:
                name, variables = read_guest(domain, by, info)
            except libvirt.libvirtError as e:
                if not _vanished(e):
                    raise
                display.vvv("kvmlab.hypervisor.libvirt_guests: a guest went while listed (%s): left out" % e)
                continue
            interfaces = interfaces_of(variables["xml_desc"])
            addresses = add_addresses(interfaces, leases, reservations,
                                      agent_addresses_of(variables["interface_addresses"]), bridges)
            if plugin is not None:
                variables.update(ansible_connection=plugin, ansible_libvirt_uri=uri)
            variables.update(libvirt_interfaces=interfaces, libvirt_addresses=addresses,
                             libvirt_macs=[i["mac"] for i in interfaces if i["mac"]])
            guests[name] = variables
        return guests
    finally:
        connection.close()


# Changes when what the cache holds changes shape.
CACHE_FORMAT = "kvmlab.hypervisor.libvirt_guests/1"
# Expressions whose result depends on more than the guest's variables.
OUTSIDE = re.compile(r"\b(lookup|query|q|now)\s*\(")


def reading_digest(read: dict) -> str:
    """A digest of everything read for one guest: its state, definition, agent answers and
    addresses. A guest whose reading changed in any way is constructed again."""
    return hashlib.sha256(json.dumps(read, sort_keys=True, default=str).encode()).hexdigest()


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "kvmlab.hypervisor.libvirt_guests"

    def verify_file(self, path):
        return super().verify_file(path) and os.path.basename(path).endswith(("libvirt.yml", "libvirt.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        if LIBVIRT_ERROR is not None:
            raise AnsibleError("kvmlab.hypervisor.libvirt_guests needs libvirt-python on the controller "
                               "(pip install -r requirements.txt): %s" % LIBVIRT_ERROR)
        uri = self.get_option("uri")
        if "{" in uri:
            self.templar.available_variables = {"inventory_dir": os.path.dirname(os.path.abspath(path))}
            uri = self.templar.template(uri)
        libvirt.registerErrorHandler(_quiet, None)
        try:
            guests = read_libvirt(uri, self.get_option("inventory_hostname"))
        except libvirt.libvirtError as e:
            raise AnsibleError("kvmlab.hypervisor.libvirt_guests: %s" % e) from e
        key, config = self.get_cache_key(path), self._constructed_config()
        cached = self._cached(key, cache) if config is not None else {}
        if cached.get("config") != config:
            cached = {}
        entries = {}
        for name, read in guests.items():
            self.inventory.add_host(name)
            for var, value in read.items():
                # Read from libvirt (names, MACs, addresses a guest reports): data, never templates.
                self.inventory.set_variable(name, var, wrap_var(value))
            digest = reading_digest(read)
            entry = cached.get("guests", {}).get(name)
            if entry is not None and entry.get("digest") == digest:
                self._apply(name, entry)
            else:
                entry = self._construct(name)
                entry["digest"] = digest
            entries[name] = entry
        if self.get_option("cache") and config is not None:
            self._cache[key] = {"config": config, "guests": entries}

    def _constructed_config(self) -> str | None:
        """A digest of what compose, groups and keyed_groups make of a guest's variables, or None
        when their result may depend on anything else (a lookup, the time, extra vars): then
        nothing is cached."""
        options = {name: self.get_option(name) for name in
                   ("compose", "groups", "keyed_groups", "leading_separator", "strict", "use_extra_vars")}
        text = json.dumps(options, sort_keys=True, default=str)
        if options["use_extra_vars"] or OUTSIDE.search(text):
            return None
        return hashlib.sha256(("%s\0%s" % (CACHE_FORMAT, text)).encode()).hexdigest()

    def _cached(self, key: str, cache: bool) -> dict:
        """The cache entry of this source: with the plugin's cache on, unless --flush-cache (cache
        false) or the entry expired (cache_timeout) or is not ours. An unreadable cache file (the
        cache plugin removes a corrupt one and raises) only costs this run the cache: the guests are
        constructed from libvirt's reading, as without one."""
        if not (self.get_option("cache") and cache):
            return {}
        try:
            entry = self._cache[key]
        except KeyError:
            return {}
        except AnsibleError as e:
            display.warning("kvmlab.hypervisor.libvirt_guests: the inventory cache is left aside for this run: %s" % e)
            return {}
        return entry if isinstance(entry, dict) and isinstance(entry.get("guests"), dict) else {}

    def _construct(self, name: str) -> dict:
        """compose, groups and keyed_groups for one guest, as Constructable applies them; returns
        what they set (the composed variables, the groups with their parent groups) for the cache."""
        host = self.inventory.get_host(name)
        before = {group.name for group in host.groups}
        variables = host.get_vars()
        strict = self.get_option("strict")
        compose = self.get_option("compose") or {}
        self._set_composite_vars(compose, variables, name, strict)
        self._add_host_to_composed_groups(self.get_option("groups"), variables, name, strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, name, strict)
        return {"vars": {var: host.vars[var] for var in compose if var in host.vars},
                "groups": {group.name: sorted(parent.name for parent in group.parent_groups)
                           for group in host.groups if group.name not in before}}

    def _apply(self, name: str, entry: dict) -> None:
        """What _construct recorded for the same reading of the guest, applied again."""
        for var, value in (entry.get("vars") or {}).items():
            self.inventory.set_variable(name, var, wrap_var(value))
        for group, parents in (entry.get("groups") or {}).items():
            self.inventory.add_group(group)
            for parent in parents:
                self.inventory.add_group(parent)
                self.inventory.add_child(parent, group)
            self.inventory.add_child(group, name)
