# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: libvirt_guests
short_description: community.libvirt's libvirt inventory, plus each guest's MACs and addresses
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - The guests of one libvirt hypervisor, as C(community.libvirt.libvirt) lists them, with the
    host variables it sets (C(info) with C(info.state), C(xml_desc), C(guest_info),
    C(interface_addresses), C(ansible_connection), C(ansible_libvirt_uri)).
  - Adds what that plugin does not expose, read from libvirt over the same URI
    C(libvirt_interfaces), C(libvirt_macs) and C(libvirt_addresses). An interface's addresses are
    those its guest agent reports for its MAC (C(virsh domifaddr --source agent), without loopback
    and link-local ones), else its DHCP lease on a libvirt network (C(virsh net-dhcp-leases)), else
    the network's DHCP reservation for its MAC (C(<host mac= ip=>) in C(virsh net-dumpxml)), so an
    address is known before the guest has booted and without a guest agent.
  - A lease or reservation counts only on the interface's own network (its C(source network), or
    the libvirt network whose bridge it is on), so a guest on another network with the same MAC
    cannot take an interface's address. An interface on a bridge that is no libvirt network's
    gets addresses from its agent only.
  - A guest that appears or disappears while the source lists them is left out of this listing,
    not an error. Every value read from libvirt is marked unsafe (never templated).
  - The guests are reached by name through community.libvirt's C(libvirt_qemu) connection (the
    guest agent, no SSH), which that plugin sets as C(ansible_connection); that connection finds
    the guest by C(ansible_host), so leave C(ansible_host) alone for it (compose it from
    C(libvirt_addresses) only with C(ansible_connection=ssh)).
  - C(compose), C(groups) and C(keyed_groups) are applied after these variables are set, so they
    can use them (community.libvirt's plugin applies them while it lists the guests).
  - O(uri) is a template; C(inventory_dir) is the directory of the inventory source, and
    lookups work (C(lookup('ansible.builtin.env', ...))).
  - The source file's name must end in C(libvirt.yml) or C(libvirt.yaml), for example
    C(guests.libvirt.yml).
  - libvirt's own error messages (a guest without a guest agent) are not printed on stderr.
extends_documentation_fragment:
  - constructed
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
  - the collection community.libvirt
  - libvirt-python on the controller (built from source with pip; needs the libvirt headers,
    pkg-config and a C compiler)
"""

EXAMPLES = r"""
# inventories/demo/guests.libvirt.yml
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

import ipaddress
import os
import xml.etree.ElementTree as ET

from ansible.errors import AnsibleError
from ansible.utils.unsafe_proxy import wrap_var

try:
    from ansible_collections.community.libvirt.plugins.inventory.libvirt import InventoryModule as LibvirtInventory
except ImportError as exc:  # the collection community.libvirt is a dependency (galaxy.yml)
    COMMUNITY_LIBVIRT_ERROR: ImportError | None = exc
    from ansible.plugins.inventory import BaseInventoryPlugin, Constructable

    class LibvirtInventory(BaseInventoryPlugin, Constructable):  # type: ignore[no-redef]
        NAME = "community.libvirt.libvirt"

else:
    COMMUNITY_LIBVIRT_ERROR = None

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


# How many times community.libvirt's listing is tried while guests vanish under it.
LISTINGS = 5


def _vanished(error) -> bool:
    """Whether a libvirt error says the guest or network went away while it was listed."""
    return error.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_NETWORK)


def _quiet(_ctx, _err):
    """libvirt's default error handler prints every error on stderr, including the expected
    'guest agent is not connected' of each guest; the errors are still raised."""


class _WithoutAliasGroups:
    """The inventory as community.libvirt's parse sees it: its only groups there are the per-guest
    aliases (keyed and composed groups are deferred), which are dropped."""

    def __init__(self, inventory):
        self._inventory = inventory
        self.added: set[str] = set()  # the hosts this listing brought (none of another source)

    def add_host(self, host, *args, **kwargs):
        if self._inventory.get_host(host) is None:
            self.added.add(host)
        return self._inventory.add_host(host, *args, **kwargs)

    def half_listed(self) -> set[str]:
        """The guests community.libvirt could not read (undefined under it): an ERROR variable."""
        return {name for name in self.added if "ERROR" in self._inventory.get_host(name).vars}

    def forget(self, names=None) -> None:
        """Take the hosts this listing brought (or `names` of them) out of the inventory again."""
        for name in set(self.added if names is None else names):
            self._inventory.remove_host(self._inventory.get_host(name))
            self.added.discard(name)

    def add_group(self, group):
        return group

    def add_child(self, group, child):
        return False

    def __getattr__(self, attr):
        return getattr(self._inventory, attr)


class InventoryModule(LibvirtInventory):
    NAME = "kvmlab.hypervisor.libvirt_guests"

    def __init__(self):
        super().__init__()
        # community.libvirt's parse applies compose/groups/keyed_groups guest by guest, before
        # the variables below exist: defer them until they are set.
        self._construct_now = True

    def verify_file(self, path):
        return super().verify_file(path) and os.path.basename(path).endswith(("libvirt.yml", "libvirt.yaml"))

    def get_option(self, option, hostvars=None):
        value = super().get_option(option, hostvars)
        if option == "uri" and isinstance(value, str) and "{" in value:
            self.templar.available_variables = {"inventory_dir": os.path.dirname(os.path.abspath(self._source))}
            value = self.templar.template(value)
        return value

    def _set_composite_vars(self, *args, **kwargs):
        if self._construct_now:
            super()._set_composite_vars(*args, **kwargs)

    def _add_host_to_composed_groups(self, *args, **kwargs):
        if self._construct_now:
            super()._add_host_to_composed_groups(*args, **kwargs)

    def _add_host_to_keyed_groups(self, *args, **kwargs):
        if self._construct_now:
            super()._add_host_to_keyed_groups(*args, **kwargs)

    def _read_libvirt(self) -> tuple[dict, dict, dict, dict]:
        """The guests' XML by name, and the networks' leases, reservations and bridges, from one
        connection; what vanishes while it is read is left out."""
        try:
            connection = libvirt.open(self.get_option("uri"))
            guests = {}
            for domain in connection.listAllDomains():
                try:
                    name = domain.UUIDString() if self.get_option("inventory_hostname") == "uuid" else domain.name()
                    guests[name] = domain.XMLDesc()
                except libvirt.libvirtError as e:
                    if not _vanished(e):
                        raise
            leases: dict[str, dict] = {}
            reservations: dict[str, dict] = {}
            bridges: dict[str, str] = {}
            for network in connection.listAllNetworks():
                try:
                    name, xml_desc = network.name(), network.XMLDesc()
                    reservations[name] = reservations_of(xml_desc)
                    bridges.setdefault(bridge_of(xml_desc), name)
                    for lease in network.DHCPLeases() if network.isActive() else []:
                        if lease.get("mac") and lease.get("ipaddr"):
                            leases.setdefault(name, {}).setdefault(lease["mac"].lower(), []).append(lease["ipaddr"])
                except libvirt.libvirtError as e:
                    if not _vanished(e):
                        raise
            connection.close()
        except libvirt.libvirtError as e:
            raise AnsibleError("kvmlab.hypervisor.libvirt_guests: %s" % e) from e

        return guests, leases, reservations, bridges

    def parse(self, inventory, loader, path, cache=True):
        if COMMUNITY_LIBVIRT_ERROR is not None:
            raise AnsibleError("kvmlab.hypervisor.libvirt_guests needs the collection community.libvirt: %s"
                               % COMMUNITY_LIBVIRT_ERROR)
        if LIBVIRT_ERROR is not None:
            raise AnsibleError("kvmlab.hypervisor.libvirt_guests needs libvirt-python on the controller "
                               "(pip install -r requirements.txt): %s" % LIBVIRT_ERROR)
        self._source = path
        libvirt.registerErrorHandler(_quiet, None)
        self._construct_now = False
        view = _WithoutAliasGroups(inventory)
        try:
            # community.libvirt also makes a group per guest named after its UUID (its own TODO:
            # "Invalid characters were found in group names" on every run); those are left out.
            # A guest undefined between its calls for a guest makes its listing fail, or leaves
            # the guest with only an ERROR variable: listed again, from scratch, up to LISTINGS
            # times; a guest still half-listed after that is left out.
            for attempt in range(1, LISTINGS + 1):
                try:
                    super().parse(view, loader, path, cache=cache)
                except libvirt.libvirtError as e:
                    if not _vanished(e) or attempt == LISTINGS:
                        raise AnsibleError("kvmlab.hypervisor.libvirt_guests: %s" % e) from e
                    self.display.vvv("kvmlab.hypervisor.libvirt_guests: a guest went while listed (%s): listed again"
                                     % e)
                    view.forget()
                    continue
                if not view.half_listed() or attempt == LISTINGS:
                    break
                self.display.vvv("kvmlab.hypervisor.libvirt_guests: %s went while listed: listed again"
                                 % ", ".join(sorted(view.half_listed())))
                view.forget()
            view.forget(view.half_listed())
        finally:
            self._construct_now = True
            self.inventory = inventory

        guests, leases, reservations, bridges = self._read_libvirt()
        for name in view.added - set(guests):  # undefined since community.libvirt listed it
            inventory.remove_host(inventory.get_host(name))
        for name, xml_desc in guests.items():
            if self.inventory.get_host(name) is None:
                continue  # defined after community.libvirt's listing: the next listing has it
            interfaces = interfaces_of(xml_desc)
            agent = agent_addresses_of(self.inventory.get_host(name).get_vars().get("interface_addresses"))
            addresses = add_addresses(interfaces, leases, reservations, agent, bridges)
            # Read from libvirt (names, MACs, addresses a guest reports): data, never templates.
            self.inventory.set_variable(name, "libvirt_interfaces", wrap_var(interfaces))
            self.inventory.set_variable(name, "libvirt_macs", wrap_var([i["mac"] for i in interfaces if i["mac"]]))
            self.inventory.set_variable(name, "libvirt_addresses", wrap_var(addresses))
            variables = self.inventory.get_host(name).get_vars()
            strict = self.get_option("strict")
            self._set_composite_vars(self.get_option("compose"), variables, name, strict)
            self._add_host_to_composed_groups(self.get_option("groups"), variables, name, strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, name, strict)
