#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: libvirt_network
short_description: Converge libvirt networks, their static DHCP reservations and IP forwarding, all in one call
version_added: 0.1.0
description:
  - Makes each listed network defined, active and autostarted with the given bridge, forward mode,
    gateway address, prefix, DHCP range and static DHCP hosts.
  - Reconciles the persistent definition and the running network separately. DHCP range and host
    changes (add, modify, delete) reach the running network through C(virNetworkUpdate), without a
    restart, so guests stay connected.
  - A change of bridge, forward mode, address or prefix needs a restart, which cuts running guests
    off. Without O(allow_restart) the persistent definition is updated (it applies at the next
    start of the network), a warning says so and RV(restart_required) lists the network.
  - With O(ip_forward), IPv4 forwarding (C(net.ipv4.ip_forward = 1)), which NAT and routed networks
    need, is kept on now and at boot, in O(ip_forward_file).
  - Parts of an existing definition the module does not own (uuid, bridge MAC, DNS entries, ...)
    are kept. When nothing differs it calls no write API.
  - Written because C(community.libvirt.virt_net) can add or modify DHCP hosts but not delete them,
    never repairs an existing network's range or bridge, and updates only one of the live and
    persistent configurations at a time.
author:
  - kvmlab developers (@kvmlab)
extends_documentation_fragment:
  - kvmlab.hypervisor.libvirt
options:
  networks:
    description: The networks.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Network name.
        type: str
        required: true
      state:
        description: Whether the network should exist. C(absent) stops and undefines it.
        type: str
        choices: [present, absent]
        default: present
      bridge:
        description: Bridge device name, at most 15 characters.
        type: str
      forward:
        description: C(nat), C(route), or C(isolated) (no forwarding).
        type: str
        choices: [nat, route, isolated]
        default: nat
      address:
        description: The host's (gateway) IPv4 address on the network.
        type: str
      prefix:
        description: Prefix length of the subnet.
        type: int
        default: 24
      dhcp:
        description: The DHCP range, as C(start) and C(end) addresses; omit for no dynamic range.
        type: dict
      hosts:
        description: Static DHCP reservations, each with C(ip) and a C(mac), a C(name) or both.
        type: list
        elements: dict
        default: []
      active:
        description: Whether the network should be running.
        type: bool
        default: true
      autostart:
        description: Whether libvirt starts the network at boot.
        type: bool
        default: true
  allow_restart:
    description: Restart a running network to apply a bridge, forward, address or prefix change.
    type: bool
    default: false
  ip_forward:
    description:
      - Keep C(net.ipv4.ip_forward) at C(1) - now, under C(/proc/sys), and at boot, as the last line
        for it in O(ip_forward_file) (rewritten in place or appended; the file's other lines are kept).
        libvirt turns it on when it starts a NAT network, but nothing turns it back on when something
        else turns it off.
      - C(false) leaves the setting alone; it never turns forwarding off.
    type: bool
    default: false
  ip_forward_file:
    description: The sysctl.d file that keeps O(ip_forward) at boot.
    type: path
    default: /etc/sysctl.d/90-kvmlab-forwarding.conf
  exists:
    description:
      - Paths whose existence is reported in RV(exists), read in the same call, so that a role keys
        a task on a file without a remote call of its own (the network role's tailnet clean-up
        runs only while the hook's settings file exists).
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
    description: Reports what it would do and calls no write API.
  diff_mode:
    support: full
    description:
      - Shows the owned fields of each changed network (persistent and running) before and after,
        keyed by network name, and with O(ip_forward) the live and boot values of the setting, keyed
        C(sysctl net.ipv4.ip_forward).
"""

EXAMPLES = r"""
- name: The example workstation's NAT network with win11's reservation
  kvmlab.hypervisor.libvirt_network:
    networks:
      - name: default
        bridge: virbr0
        address: 192.168.122.1
        prefix: 24
        dhcp: {start: 192.168.122.2, end: 192.168.122.254}
        hosts:
          - {name: win11, mac: "52:54:00:6e:3b:c9", ip: 192.168.122.136}
    ip_forward: true
"""

RETURN = r"""
actions:
  description: What was done (or would be done in check mode), per network.
  returned: always
  type: dict
  sample: {default: ["update live: add host <host mac='52:54:00:6e:3b:c9' ip='192.168.122.136'/>"]}
ip_forward:
  description: Whether O(ip_forward) changed the live value or the file (or would, in check mode).
  returned: always
  type: bool
  sample: false
exists:
  description: Whether each of O(exists) exists (a broken symbolic link counts), read before any change.
  returned: always
  type: dict
  sample: {/etc/libvirt/hooks/kvmlab-tailnet.json: false}
restart_required:
  description: Networks whose running configuration differs in a way only a restart applies.
  returned: always
  type: list
  elements: str
  sample: [default]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import network as netxml
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import sysctl
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import (
    LIFECYCLE_OPTIONS,
    URI_OPTION,
    connect,
    is_no_such,
    libvirt,
)

OWNED = ("bridge", "forward", "address", "prefix", "hosts")
FORWARDING = "net.ipv4.ip_forward"


def differs(current: dict, want: dict) -> bool:
    wanted_ranges = [want["range"]] if want["range"] else []
    return any(current[f] != want[f] for f in OWNED) or current["ranges"] != wanted_ranges


def plan_present(net, spec: dict, want: dict, allow_restart: bool) -> tuple:
    """(actions, live steps, restart needed but not allowed) for an existing network."""
    actions: list[str] = []
    inactive = net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
    if differs(netxml.parse(inactive), want):
        actions.append("define")
    active = bool(net.isActive())
    steps: list[tuple] = []
    blocked = False
    if active and not spec["active"]:
        actions.append("stop")
    elif not active and spec["active"]:
        actions.append("start")
    elif active:
        live = netxml.parse(net.XMLDesc(0))
        restart = netxml.restart_differences(live, want)
        if restart and allow_restart:
            actions.append("restart")
        else:
            blocked = bool(restart)
            steps = netxml.dhcp_updates(live, want)
    if bool(net.autostart()) != spec["autostart"]:
        actions.append("autostart_on" if spec["autostart"] else "autostart_off")
    return actions, steps, blocked


def apply(conn, net, spec: dict, actions: list[str], steps: list[tuple]):
    commands = {"delete": libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, "add": libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST}
    sections = {"range": libvirt.VIR_NETWORK_SECTION_IP_DHCP_RANGE, "host": libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST}
    for action in actions:
        if action == "create":
            net = conn.networkDefineXML(netxml.new_xml(spec))
        elif action == "define":
            net = conn.networkDefineXML(netxml.edit_xml(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE), spec))
        elif action == "start":
            net.create()
        elif action == "stop":
            net.destroy()
        elif action == "restart":
            net.destroy()
            net.create()
        elif action in ("autostart_on", "autostart_off"):
            net.setAutostart(1 if action == "autostart_on" else 0)
        elif action == "undefine":
            net.undefine()
    for command, section, xml in steps:
        net.update(commands[command], sections[section], -1, xml, libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE)


def snapshot(net) -> dict:
    if net is None:
        return {"defined": False}
    state = {"defined": True, "active": bool(net.isActive()), "autostart": bool(net.autostart()),
             "persistent": netxml.summary(netxml.parse(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)))}
    if state["active"]:
        state["running"] = netxml.summary(netxml.parse(net.XMLDesc(0)))
    return state


def plan(module, net, spec: dict, before: dict) -> tuple:
    """(actions, live steps, state after, restart needed but not allowed) for one network."""
    name = spec["name"]
    if spec["state"] == "absent":
        if net is None:
            return [], [], before, False
        return (["stop"] if before["active"] else []) + ["undefine"], [], {"defined": False}, False
    for field in ("bridge", "address"):
        if not spec.get(field):
            module.fail_json(msg="networks[%s].%s is required for a present network" % (name, field))
    want = netxml.desired(spec)
    after = {"defined": True, "active": spec["active"], "autostart": spec["autostart"],
             "persistent": netxml.summary(want)}
    if spec["active"]:
        after["running"] = netxml.summary(want)
    if net is None:
        actions = ["create"] + ["start"] * spec["active"] + ["autostart_on"] * spec["autostart"]
        return actions, [], after, False
    actions, steps, blocked = plan_present(net, spec, want, module.params["allow_restart"])
    if blocked:
        # The running network keeps its old bridge/address; only its DHCP part follows the spec.
        after["running"] = dict(before["running"], dhcp_range=after["running"]["dhcp_range"],
                                hosts=after["running"]["hosts"])
        module.warn("network %s: its bridge, forward mode, address or prefix changed; the running network keeps "
                    "the old ones until it restarts, which cuts running guests off. Set kvmlab_network_allow_restart: "
                    "true (allow_restart) to restart it, or restart it yourself (virsh net-destroy %s; virsh "
                    "net-start %s)." % (name, name, name))
    return actions, steps, after, blocked


def converge_one(module, conn, spec: dict, result: dict) -> None:
    name = spec["name"]
    try:
        net = conn.networkLookupByName(name)
    except libvirt.libvirtError as exc:
        if not is_no_such(exc):
            raise
        net = None
    before = snapshot(net)
    actions, steps, after, blocked = plan(module, net, spec, before)
    if blocked:
        result["restart_required"].append(name)
    described = actions + ["update live: %s %s %s" % step for step in steps]
    result["actions"][name] = described
    if not described:
        return
    result["changed"] = True
    result["diff"]["before"][name] = before
    result["diff"]["after"][name] = after
    if not module.check_mode:
        apply(conn, net, spec, actions, steps)


def core(module: AnsibleModule) -> dict:
    result = {"changed": False, "actions": {}, "restart_required": [], "ip_forward": False,
              "diff": {"before": {}, "after": {}},
              "exists": {path: os.path.lexists(path) for path in module.params["exists"]}}
    # Before the networks, so that a fresh host's check run (libvirt only predicted) still reports it.
    if module.params["ip_forward"]:
        try:
            done = sysctl.converge(module, FORWARDING, "1", module.params["ip_forward_file"])
        except OSError as exc:
            module.fail_json(msg="cannot keep %s = 1 (%s): %s" % (FORWARDING, module.params["ip_forward_file"], exc))
        if done["changed"]:
            result.update(changed=True, ip_forward=True)
            result["diff"]["before"]["sysctl " + FORWARDING] = done["before"]
            result["diff"]["after"]["sysctl " + FORWARDING] = done["after"]
    conn = connect(module, module.params["uri"], "would define the networks", partial=result)
    for spec in module.params["networks"]:
        try:
            converge_one(module, conn, spec, result)
        except libvirt.libvirtError as exc:
            module.fail_json(msg="network %s: %s" % (spec["name"], exc), **result)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "networks": {
                "type": "list", "elements": "dict", "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "bridge": {"type": "str"},
                    "forward": {"type": "str", "choices": ["nat", "route", "isolated"], "default": "nat"},
                    "address": {"type": "str"},
                    "prefix": {"type": "int", "default": 24},
                    "dhcp": {"type": "dict"},
                    "hosts": {"type": "list", "elements": "dict", "default": []},
                    **LIFECYCLE_OPTIONS,
                },
            },
            "allow_restart": {"type": "bool", "default": False},
            "ip_forward": {"type": "bool", "default": False},
            "ip_forward_file": {"type": "path", "default": "/etc/sysctl.d/90-kvmlab-forwarding.conf"},
            "exists": {"type": "list", "elements": "path", "default": []},
            **URI_OPTION,
        },
        supports_check_mode=True,
    )
    module.exit_json(**core(module))


if __name__ == "__main__":
    main()
