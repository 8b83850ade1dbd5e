# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure reading, comparing and editing of libvirt network XML (kvmlab.hypervisor.libvirt_network).

The module owns these parts of a network: the bridge name, the forward mode, the gateway address
and prefix, the DHCP range and the static DHCP hosts. Everything else in an existing definition
(uuid, bridge MAC, DNS entries, ...) is kept as libvirt has it.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET

# Differences that only a network restart applies (the bridge is torn down and rebuilt).
RESTART_FIELDS = ("bridge", "forward", "address", "prefix")


def _host_key(host: dict) -> tuple:
    return (str(host.get("mac") or "").lower(), str(host.get("name") or ""), str(host.get("ip") or ""))


def desired(spec: dict) -> dict:
    """The owned fields of a spec, in the shape `parse` returns."""
    dhcp = spec.get("dhcp") or {}
    return {
        "bridge": spec["bridge"],
        "forward": spec.get("forward") or "nat",
        "address": str(spec["address"]),
        "prefix": int(spec["prefix"]),
        "range": (str(dhcp["start"]), str(dhcp["end"])) if dhcp.get("start") else None,
        "hosts": sorted(_host_key(h) for h in spec.get("hosts") or []),
    }


def _ipv4(root: ET.Element) -> ET.Element | None:
    for ip in root.findall("ip"):
        if ip.get("family", "ipv4") == "ipv4":
            return ip
    return None


def parse(xml: str) -> dict:
    root = ET.fromstring(xml)
    forward = root.find("forward")
    ip = _ipv4(root)
    prefix, address, ranges, hosts = 0, "", [], []
    if ip is not None:
        address = ip.get("address", "")
        if ip.get("prefix"):
            prefix = int(ip.get("prefix"))
        elif ip.get("netmask"):
            prefix = ipaddress.IPv4Network("0.0.0.0/%s" % ip.get("netmask")).prefixlen
        ranges = [(r.get("start", ""), r.get("end", "")) for r in ip.findall("dhcp/range")]
        hosts = sorted(_host_key(h.attrib) for h in ip.findall("dhcp/host"))
    return {
        "bridge": root.find("bridge").get("name", "") if root.find("bridge") is not None else "",
        "forward": (forward.get("mode") or "nat") if forward is not None else "isolated",
        "address": address,
        "prefix": prefix,
        "ranges": ranges,
        "range": ranges[0] if len(ranges) == 1 else None,
        "hosts": hosts,
    }


def restart_differences(current: dict, want: dict) -> list[str]:
    return [f for f in RESTART_FIELDS if current[f] != want[f]]


def dhcp_updates(current: dict, want: dict) -> list[tuple]:
    """net-update steps turning current's DHCP range and hosts into want's, deletions first.

    Each step is (command, section, xml) with command "delete" or "add" and section "range" or
    "host". A changed reservation is a delete of the old entry and an add of the new one: libvirt
    deletes only entries whose every attribute matches, and refuses an add that clashes.
    """
    steps: list[tuple] = []
    want_ranges = [want["range"]] if want["range"] else []
    for r in current["ranges"]:
        if r not in want_ranges:
            steps.append(("delete", "range", "<range start='%s' end='%s'/>" % r))
    cur_hosts, want_hosts = set(current["hosts"]), set(want["hosts"])
    for h in sorted(cur_hosts - want_hosts):
        steps.append(("delete", "host", host_xml(h)))
    for r in want_ranges:
        if r not in current["ranges"]:
            steps.append(("add", "range", "<range start='%s' end='%s'/>" % r))
    for h in sorted(want_hosts - cur_hosts):
        steps.append(("add", "host", host_xml(h)))
    return steps


def host_xml(key: tuple) -> str:
    host = ET.Element("host")
    for i, attr in enumerate(("mac", "name", "ip")):
        if key[i]:
            host.set(attr, key[i])
    return ET.tostring(host, encoding="unicode")


def new_xml(spec: dict) -> str:
    """A complete definition for a network that does not exist yet."""
    root = ET.Element("network")
    ET.SubElement(root, "name").text = spec["name"]
    return edit_xml(ET.tostring(root, encoding="unicode"), spec)


def _set_forward(root: ET.Element, mode: str) -> None:
    forward = root.find("forward")
    if mode == "isolated":
        if forward is not None:
            root.remove(forward)
        return
    if forward is None:
        forward = ET.Element("forward")
        root.insert(_after(list(root), ("name", "uuid", "metadata")), forward)
    if (forward.get("mode") or "nat") != mode:
        for child in list(forward):
            forward.remove(child)
    forward.set("mode", mode)


def _set_bridge(root: ET.Element, name: str) -> None:
    bridge = root.find("bridge")
    if bridge is None:
        bridge = ET.Element("bridge")
        root.insert(_after(list(root), ("name", "uuid", "metadata", "forward")), bridge)
    bridge.set("name", name)
    bridge.attrib.setdefault("stp", "on")
    bridge.attrib.setdefault("delay", "0")


def _set_ip(root: ET.Element, current: dict, want: dict) -> None:
    ip = _ipv4(root)
    if ip is None:
        ip = ET.SubElement(root, "ip")
    if (current["address"], current["prefix"]) != (want["address"], want["prefix"]):
        ip.attrib.pop("netmask", None)
        ip.set("address", want["address"])
        ip.set("prefix", str(want["prefix"]))
    dhcp = ip.find("dhcp")
    if dhcp is not None:
        for child in dhcp.findall("range") + dhcp.findall("host"):
            dhcp.remove(child)
    if want["range"] or want["hosts"]:
        if dhcp is None:
            dhcp = ET.SubElement(ip, "dhcp")
        if want["range"]:
            dhcp.insert(0, ET.Element("range", start=want["range"][0], end=want["range"][1]))
        for key in want["hosts"]:
            dhcp.append(ET.fromstring(host_xml(key)))
    elif dhcp is not None and len(dhcp) == 0:
        ip.remove(dhcp)


def edit_xml(xml: str, spec: dict) -> str:
    """`xml` with the owned parts replaced by the spec's; the rest is kept."""
    want = desired(spec)
    root = ET.fromstring(xml)
    _set_forward(root, want["forward"])
    _set_bridge(root, want["bridge"])
    _set_ip(root, parse(xml), want)
    return ET.tostring(root, encoding="unicode")


def _after(children: list, names: tuple) -> int:
    """Index just after the last child whose tag is in names (libvirt's element order)."""
    index = 0
    for i, child in enumerate(children):
        if child.tag in names:
            index = i + 1
    return index


def summary(fields: dict) -> dict:
    """A readable view of parsed or desired fields for diffs."""
    return {
        "bridge": fields["bridge"], "forward": fields["forward"],
        "ip": "%s/%s" % (fields["address"], fields["prefix"]),
        "dhcp_range": "%s - %s" % fields["range"] if fields.get("range") else (
            ", ".join("%s - %s" % r for r in fields.get("ranges", [])) or None),
        "hosts": [" ".join(v for v in h if v) for h in fields["hosts"]],
    }


# Tailnet subnet routing (roles/network/files/kvmlab-tailnet-hook.py is what applies it).
IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def tailnet_errors(routes, interface="tailscale0"):
    """Mistakes in kvmlab_network_tailscale_routes and kvmlab_network_tailscale_interface, each naming its field."""
    errors = []
    if not isinstance(routes, list):
        return ["kvmlab_network_tailscale_routes must be a list of subnets such as 192.168.122.0/24."]
    for i, route in enumerate(routes):
        try:
            net = ipaddress.ip_network(str(route), strict=True)
        except ValueError as exc:
            errors.append("kvmlab_network_tailscale_routes[%d]: %r is not a subnet (%s); write it as 192.168.122.0/24."
                          % (i, route, exc))
            continue
        if not isinstance(route, str) or str(net) != route:
            errors.append("kvmlab_network_tailscale_routes[%d]: write %r as %s." % (i, route, net))
    if not isinstance(interface, str) or not IFNAME_RE.fullmatch(interface):
        errors.append("kvmlab_network_tailscale_interface: %r is not a network interface name (at most 15 letters, "
                      "digits, '.', '_' or '-'), such as tailscale0." % (interface,))
    return errors


def tailnet_config(networks, routes, interface="tailscale0"):
    out = {}
    wanted = [ipaddress.ip_network(r) for r in routes]
    for net in networks:
        if net.get("state", "present") == "absent" or (net.get("forward") or "nat") != "nat":
            continue
        subnet = ipaddress.IPv4Network("%s/%s" % (net["address"], net["prefix"]), strict=False)
        allowed = []
        for route in wanted:
            if route.version != 4 or not route.overlaps(subnet):
                continue
            narrow = str(route if route.subnet_of(subnet) else subnet)
            if narrow not in allowed:
                allowed.append(narrow)
        if allowed:
            out[net["name"]] = {"bridge": net["bridge"], "routes": allowed}
    return {"interface": interface, "networks": out}
