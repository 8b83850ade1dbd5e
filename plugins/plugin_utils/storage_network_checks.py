# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of the storage and network specs, run on the controller before any change.

Each function returns a list of messages; each message names the inventory field and says how
to fix it. An empty list means the spec is sound.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.image import source_errors
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.spec_values import MAC_RE, parse_size, text_errors

BRIDGE_MAX = 15  # IFNAMSIZ - 1


def _label(items: list[dict], index: int, key: str = "name") -> str:
    name = items[index].get(key) if isinstance(items[index], dict) else None
    return str(name) if name else str(index)


def pool_errors(pools: list[dict], var: str = "kvmlab_storage_pools") -> list[str]:
    errors = _shape_errors(pools, var) or text_errors(pools, var)
    if errors:
        return errors
    seen_names: dict[str, int] = {}
    seen_paths: dict[str, str] = {}
    for i, pool in enumerate(pools):
        label = "%s[%s]" % (var, _label(pools, i))
        name, path = pool.get("name"), pool.get("path")
        if not name:
            errors.append("%s.name is missing: every pool needs a name." % label)
        elif name in seen_names:
            errors.append("%s.name: pool %r is defined twice; give each pool its own name." % (label, name))
        else:
            seen_names[name] = i
        if pool.get("state", "present") == "absent":
            continue
        if not path:
            errors.append("%s.path is missing: give the pool's directory as an absolute path." % label)
            continue
        if not posixpath.isabs(path):
            errors.append("%s.path: %r is relative; give an absolute path such as /%s."
                          % (label, path, path.lstrip("./")))
            continue
        norm = posixpath.normpath(path)
        if norm in seen_paths:
            errors.append("%s.path: %s is already the path of pool %r; two pools cannot share a "
                          "directory." % (label, norm, seen_paths[norm]))
        else:
            seen_paths[norm] = name
    return errors


def volume_errors(volumes: list[dict], pools: list[dict], var: str = "kvmlab_storage_volumes") -> list[str]:
    errors = _shape_errors(volumes, var) or text_errors(volumes, var)
    if errors:
        return errors
    pool_names = {p.get("name") for p in pools}
    seen: set[tuple] = set()
    for i, vol in enumerate(volumes):
        label = "%s[%s]" % (var, _label(volumes, i))
        name = vol.get("name") or ""
        if not name or "/" in name:
            errors.append("%s.name: %r must be a file name without '/'." % (label, name))
        if vol.get("pool") not in pool_names:
            errors.append("%s.pool: %r is not one of the pools (%s)."
                          % (label, vol.get("pool"), ", ".join(sorted(n for n in pool_names if n))))
        key = (vol.get("pool"), name)
        if key in seen:
            errors.append("%s: volume %s/%s is listed twice." % (label, key[0], key[1]))
        seen.add(key)
        try:
            if parse_size(vol.get("capacity")) <= 0:
                errors.append("%s.capacity must be more than 0." % label)
        except ValueError as exc:
            errors.append("%s.capacity: %s" % (label, exc))
        backing = vol.get("backing_file")
        if backing and not posixpath.isabs(backing):
            errors.append("%s.backing_file: %r is relative; give an absolute path." % (label, backing))
        if vol.get("source") is not None:
            errors += source_errors(vol["source"], label + ".source", vol.get("format") or "qcow2")
    return errors


def _address(value, label: str, errors: list[str]):
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        errors.append("%s: %r is not an IPv4 address." % (label, value))
        return None


def _host_errors(hosts: list[dict], label: str, subnet, reserved: set, macs: dict) -> list[str]:
    errors: list[str] = []
    ips: dict[str, str] = {}
    names: set[str] = set()
    for j, host in enumerate(hosts):
        hlabel = "%s.hosts[%s]" % (label, _label(hosts, j))
        mac = str(host.get("mac") or "").lower()
        if not mac and not host.get("name"):
            errors.append("%s: give a mac, a name or both to match the guest." % hlabel)
        if mac:
            if not MAC_RE.fullmatch(mac):
                errors.append("%s.mac: %r is not a MAC address like 52:54:00:12:34:56." % (hlabel, host.get("mac")))
            elif mac in macs:
                errors.append("%s.mac: %s is already reserved for %s." % (hlabel, mac, macs[mac]))
            else:
                macs[mac] = hlabel
        if host.get("name"):
            if host["name"] in names:
                errors.append("%s.name: %r is reserved twice in this network." % (hlabel, host["name"]))
            names.add(host["name"])
        ip = _address(host.get("ip"), hlabel + ".ip", errors)
        if ip is None:
            continue
        if ip not in subnet or ip in reserved:
            errors.append("%s.ip: %s is outside %s's usable addresses (%s - %s)."
                          % (hlabel, ip, subnet, subnet.network_address + 1, subnet.broadcast_address - 1))
        elif str(ip) in ips:
            errors.append("%s.ip: %s is already reserved for %s." % (hlabel, ip, ips[str(ip)]))
        else:
            ips[str(ip)] = hlabel
    return errors


def _dhcp_errors(dhcp: dict, label: str, subnet, reserved: set) -> list[str]:
    errors: list[str] = []
    start = _address(dhcp.get("start"), label + ".dhcp.start", errors)
    end = _address(dhcp.get("end"), label + ".dhcp.end", errors)
    for key, addr in (("start", start), ("end", end)):
        if addr is not None and (addr not in subnet or addr in reserved):
            errors.append("%s.dhcp.%s: %s is outside %s's usable addresses (%s - %s)."
                          % (label, key, addr, subnet, subnet.network_address + 1, subnet.broadcast_address - 1))
    if start is not None and end is not None and start > end:
        errors.append("%s.dhcp: start %s is after end %s." % (label, start, end))
    return errors


def _bridge_errors(bridge: str, label: str, name: str, bridges: dict) -> list[str]:
    if not bridge:
        return ["%s.bridge is missing: name the bridge device, e.g. virbr0." % label]
    if not isinstance(bridge, str) or not re.match(r"^[A-Za-z0-9_.-]+\Z", bridge):
        return ["%s.bridge: %r is not a device name; use letters, digits, '.', '_' or '-'." % (label, bridge)]
    if len(bridge) > BRIDGE_MAX:
        return ["%s.bridge: %r is %d characters; Linux allows at most %d. Use a shorter name."
                % (label, bridge, len(bridge), BRIDGE_MAX)]
    if bridge in bridges:
        return ["%s.bridge: %s is already the bridge of network %r." % (label, bridge, bridges[bridge])]
    bridges[bridge] = name
    return []


def _shape_errors(items, var: str, lists: tuple = ()) -> list[str]:
    """`items` must be a list of mappings, and each field in `lists` a list of mappings too."""
    if not isinstance(items, list):
        return ["%s: must be a list of mappings, got %r." % (var, items)]
    errors = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append("%s[%d]: must be a mapping, got %r." % (var, i, item))
            continue
        for field in lists:
            value = item.get(field)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
                errors.append("%s[%s].%s: must be a list of mappings, got %r." % (var, _label(items, i), field, value))
    return errors


def network_errors(networks: list[dict], var: str = "kvmlab_networks") -> list[str]:
    errors: list[str] = _shape_errors(networks, var, ("hosts",)) or text_errors(networks, var)
    if errors:
        return errors
    bridges: dict[str, str] = {}
    macs: dict[str, str] = {}
    names: set = set()
    subnets: dict = {}
    for i, net in enumerate(networks):
        label = "%s[%s]" % (var, _label(networks, i))
        if not net.get("name"):
            errors.append("%s.name is missing: every network needs a name." % label)
        elif net["name"] in names:
            errors.append("%s.name: network %r is defined twice; give each network its own name."
                          % (label, net["name"]))
        elif not isinstance(net["name"], str) or "/" in net["name"]:
            errors.append("%s.name: %r must be a name without '/'." % (label, net["name"]))
        names.add(net.get("name"))
        if net.get("state", "present") == "absent":
            continue
        errors += _bridge_errors(net.get("bridge") or "", label, net.get("name"), bridges)
        gateway = _address(net.get("address"), label + ".address", errors)
        try:
            subnet = ipaddress.IPv4Network("%s/%s" % (net.get("address"), net.get("prefix")), strict=False)
        except ValueError:
            errors.append("%s.prefix: %r is not a prefix length between 0 and 32." % (label, net.get("prefix")))
            continue
        if gateway is None:
            continue
        for other, other_net in subnets.items():
            if subnet.overlaps(other_net):
                errors.append("%s: %s overlaps %s of network %r; give each network its own subnet."
                              % (label, subnet, other_net, other))
        subnets[net.get("name")] = subnet
        if gateway in (subnet.network_address, subnet.broadcast_address):
            errors.append("%s.address: %s is the network's own %s address; use a host address such as %s."
                          % (label, gateway, "network" if gateway == subnet.network_address else "broadcast",
                             subnet.network_address + 1))
        reserved = {subnet.network_address, subnet.broadcast_address, gateway}
        if net.get("dhcp"):
            errors += _dhcp_errors(net["dhcp"], label, subnet, reserved)
        errors += _host_errors(net.get("hosts") or [], label, subnet, reserved, macs)
    return errors
