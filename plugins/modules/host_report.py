#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_report
short_description: Read a hypervisor host's live state for a report, in one call
version_added: 0.1.0
description:
  - Reads what the host really has, from libvirt and the system, never from inventory variables -
    the host's threads, memory and VM storage; each guest's state, vCPUs, memory, disks, MACs and
    addresses (from the guest agent, else the DHCP lease, else the static reservation), guest agent
    state and features (UEFI, Secure Boot, TPM 2.0, virtio
    disk, virtio network, SPICE, virtiofs, CPU pinning); the networks; the storage pools with
    their volumes and nodatacow state; the libvirt services.
  - A guest's agent is asked only when libvirt reports its channel connected (the agent runs in the
    guest), so a guest without an agent, or one still booting, is never waited for; an agent that
    is connected but does not answer costs libvirt's agent timeout (5 seconds) at most.
  - C(playbooks/report.yml) renders it as markdown.
author:
  - kvmlab developers (@kvmlab)
extends_documentation_fragment:
  - kvmlab.hypervisor.libvirt
  - kvmlab.hypervisor.attributes.read_only
options:
  storage_path:
    description: The VM storage whose size and free space the report shows.
    type: path
    default: /mnt/vm
  agent_wait:
    description:
      - Seconds to wait, at most, for the guest agents of the running guests that have an agent
        channel to answer (guests that are booting, such as right after a converge), so that the
        report shows the addresses the guests have. A guest without an agent channel is never
        waited for. When the time passes, the report is read as it is, with a warning naming the
        guests whose agents did not answer. 0 does not wait.
    type: int
    default: 0
  units:
    description: systemd units for the services table; C(kvmlab-swtpm-*) units are added.
    type: list
    elements: str
    default: [libvirtd.service, libvirtd.socket, libvirtd-ro.socket, libvirtd-admin.socket, virtlogd.socket,
              virtlockd.socket]
"""

EXAMPLES = r"""
- name: Read the host
  kvmlab.hypervisor.host_report:
  register: live
"""

RETURN = r"""
host:
  description: hostname, threads, memory_kib, storage (path, size_bytes, free_bytes), libvirt and qemu versions.
  returned: always
  type: dict
guests:
  description: Per guest - name, state, autostart, virt_type, vcpus, memory_kib, disks, interfaces
    (mac, network, model, ip, ip_source - agent, lease or reservation), agent (none - no channel,
    disconnected, answering, not answering, or not asked on a read-only connection), features and vcpupin.
  returned: always
  type: list
  elements: dict
networks:
  description: Per network - name, bridge, active, autostart, address, prefix, reservations.
  returned: always
  type: list
  elements: dict
pools:
  description: Per pool - name, path, active, autostart, nodatacow, volumes (name, capacity, allocation).
  returned: always
  type: list
  elements: dict
services:
  description: Per unit - unit, enabled (unit file state) and active state.
  returned: always
  type: list
  elements: dict
"""

import ipaddress
import os
import socket
import time
import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.fsflags import is_nocow
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import URI_OPTION, libvirt

STATES = {1: "running", 2: "blocked", 3: "paused", 4: "shutting down", 5: "shut off", 6: "crashed", 7: "suspended"}


def version(number: int) -> str:
    return "%d.%d.%d" % (number // 1000000, number // 1000 % 1000, number % 1000)


def features(root: ET.Element) -> dict:
    os_el = root.find("os")
    loader = os_el.find("loader") if os_el is not None else None
    uefi = os_el is not None and (os_el.get("firmware") == "efi" or (loader is not None
                                                                     and loader.get("type") == "pflash"))
    secure = (loader is not None and loader.get("secure") == "yes") or any(
        f.get("name") == "secure-boot" and f.get("enabled") == "yes" for f in root.findall("os/firmware/feature"))
    tpm = root.find("devices/tpm")
    tpm_version = None
    if tpm is not None:
        backend = tpm.find("backend")
        # The external backend has no version attribute; libvirt only connects TPM 2.0 to it.
        tpm_version = backend.get("version", "2.0") if backend is not None else None
    return {
        "uefi": bool(uefi),
        "secure_boot": bool(uefi and secure),
        "tpm": tpm_version,
        "virtio_disk": any(t.get("bus") == "virtio" for t in root.findall("devices/disk[@device='disk']/target")),
        "virtio_net": any(m.get("type") == "virtio" for m in root.findall("devices/interface/model")),
        "spice": root.find("devices/graphics[@type='spice']") is not None,
        "virtiofs": root.find("devices/filesystem/driver[@type='virtiofs']") is not None,
        "cpu_pinning": root.find("cputune/vcpupin") is not None,
    }


def addresses(conn) -> tuple[dict, dict]:
    """MAC -> IP from the networks' DHCP leases, and from their static reservations."""
    leases, reserved = {}, {}
    for net in conn.listAllNetworks():
        try:
            for lease in net.DHCPLeases() if net.isActive() else []:
                leases[lease["mac"].lower()] = lease["ipaddr"]
        except libvirt.libvirtError:
            pass
        for host in ET.fromstring(net.XMLDesc(0)).findall("ip/dhcp/host"):
            if host.get("mac") and host.get("ip"):
                reserved[host.get("mac").lower()] = host.get("ip")
    return leases, reserved


AGENT_CHANNEL = "devices/channel/target[@name='org.qemu.guest_agent.0']"


def agent_of(dom, live) -> tuple[str, dict]:
    """The guest agent's state, and MAC -> IPv4 address as the agent reports them. libvirt marks
    the channel state='connected' while the agent holds it open, so only then is it asked."""
    channel = live.find(AGENT_CHANNEL)
    if channel is None:
        return "none", {}
    if channel.get("state") != "connected":
        return "disconnected", {}
    try:
        answer = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_DENIED:
            return "not asked (read-only connection)", {}
        return "not answering", {}
    found = {}
    for iface in answer.values():
        for entry in iface.get("addrs") or []:
            try:
                ip = ipaddress.ip_address(entry.get("addr"))
            except ValueError:
                continue
            if ip.version == 4 and not (ip.is_loopback or ip.is_link_local) and iface.get("hwaddr"):
                found.setdefault(iface["hwaddr"].lower(), str(ip))
    return "answering", found


def wait_for_agents(module, domains: list, seconds: int) -> None:
    """Wait up to `seconds` for the agents of the running guests that have an agent channel."""
    if seconds <= 0:
        return
    deadline = time.monotonic() + seconds
    waiting = [d for d in domains if d.isActive() and ET.fromstring(d.XMLDesc(0)).find(AGENT_CHANNEL) is not None]
    while waiting:
        waiting = [d for d in waiting if d.isActive() and agent_of(d, ET.fromstring(d.XMLDesc(0)))[0] != "answering"]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(min(2, max(0.1, deadline - time.monotonic())))
    if waiting:
        module.warn("the guest agents of %s did not answer within %d seconds (agent_wait); the report shows "
                    "them as they are." % (", ".join(d.name() for d in waiting), seconds))


def guest(conn, dom, leases: dict, reserved: dict) -> dict:
    live = ET.fromstring(dom.XMLDesc(0))
    agent, from_agent = agent_of(dom, live)
    disks = []
    for disk in live.findall("devices/disk"):
        source = disk.find("source")
        path = source.get("file") if source is not None else None
        capacity = None
        if path and disk.get("device") == "disk":
            try:
                capacity = dom.blockInfo(path)[0]
            except libvirt.libvirtError:
                capacity = None
        disks.append({"device": disk.get("device"), "target": disk.find("target").get("dev"),
                      "bus": disk.find("target").get("bus"), "path": path, "capacity_bytes": capacity})
    interfaces = []
    for nic in live.findall("devices/interface"):
        mac = nic.find("mac").get("address").lower()
        source = nic.find("source")
        origin = next((o for o, found in (("agent", from_agent), ("lease", leases), ("reservation", reserved))
                       if mac in found), None)
        ip = {"agent": from_agent, "lease": leases, "reservation": reserved}[origin][mac] if origin else None
        interfaces.append({"mac": mac, "network": source.get("network") if source is not None else None,
                           "model": (nic.find("model").get("type") if nic.find("model") is not None else None),
                           "ip": ip, "ip_source": origin})
    state = dom.state()[0]
    return {
        "name": dom.name(), "state": STATES.get(state, str(state)), "autostart": bool(dom.autostart()),
        "virt_type": live.get("type"), "vcpus": int(live.findtext("vcpu") or 0),
        "memory_kib": int(live.findtext("memory") or 0), "disks": disks, "interfaces": interfaces,
        "agent": agent, "features": features(live),
        "vcpupin": [{"vcpu": int(p.get("vcpu")), "cpuset": p.get("cpuset")} for p in live.findall("cputune/vcpupin")],
    }


def pools(conn) -> list:
    out = []
    for pool in conn.listAllStoragePools():
        root = ET.fromstring(pool.XMLDesc(0))
        path = root.findtext("target/path")
        volumes = []
        if pool.isActive():
            for vol in pool.listAllVolumes():
                kind, capacity, allocation = vol.info()
                if kind == libvirt.VIR_STORAGE_VOL_DIR:
                    continue  # a directory in the pool (iso/, tpm/), not a volume
                volumes.append({"name": vol.name(), "capacity": capacity, "allocation": allocation})
        out.append({"name": pool.name(), "path": path, "active": bool(pool.isActive()),
                    "autostart": bool(pool.autostart()), "nodatacow": is_nocow(path) if path else None,
                    "volumes": sorted(volumes, key=lambda v: v["name"])})
    return sorted(out, key=lambda p: p["name"])


def prefix(ip: ET.Element):
    if ip.get("prefix"):
        return int(ip.get("prefix"))
    if ip.get("netmask"):
        return ipaddress.IPv4Network("0.0.0.0/" + ip.get("netmask")).prefixlen
    return None


def memory_kib() -> int:
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 0


def networks(conn) -> list:
    out = []
    for net in conn.listAllNetworks():
        root = ET.fromstring(net.XMLDesc(0))
        ip = root.find("ip")
        out.append({"name": net.name(), "bridge": root.find("bridge").get("name") if root.find("bridge") is not None
                    else None, "active": bool(net.isActive()), "autostart": bool(net.autostart()),
                    "forward": root.find("forward").get("mode") if root.find("forward") is not None else "isolated",
                    "address": ip.get("address") if ip is not None else None,
                    "prefix": prefix(ip) if ip is not None else None,
                    "reservations": [dict(h.attrib) for h in root.findall("ip/dhcp/host")]})
    return sorted(out, key=lambda n: n["name"])


def services(module, units: list) -> list:
    swtpm = module.run_command(["systemctl", "list-unit-files", "--no-legend", "kvmlab-swtpm-*.socket"])[1]
    units = list(units) + [line.split()[0] for line in swtpm.splitlines() if line.strip()]
    rc, out, _err = module.run_command(["systemctl", "show", "--property=Id,UnitFileState,ActiveState", *units])
    rows, current = [], {}
    for line in [*(out if rc == 0 else "").splitlines(), ""]:
        if not line.strip():
            if current:
                rows.append({"unit": current.get("Id"), "enabled": current.get("UnitFileState"),
                             "active": current.get("ActiveState")})
            current = {}
            continue
        key, _sep, value = line.partition("=")
        current[key] = value
    return rows


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "storage_path": {"type": "path", "default": "/mnt/vm"},
            "agent_wait": {"type": "int", "default": 0},
            "units": {"type": "list", "elements": "str", "default": [
                "libvirtd.service", "libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket",
                "virtlogd.socket", "virtlockd.socket"]},
            **URI_OPTION,
        },
        supports_check_mode=True,
    )
    if libvirt is None:
        module.fail_json(msg="libvirt's Python binding is not installed; converge the host first (site.yml).")
    # Read-write when allowed: libvirt asks a guest agent for nothing on a read-only connection
    # ("read only access prevents virDomainInterfaceAddresses"). Nothing here writes.
    try:
        conn = libvirt.open(module.params["uri"])
    except libvirt.libvirtError:
        try:
            conn = libvirt.openReadOnly(module.params["uri"])
        except libvirt.libvirtError as exc:
            module.fail_json(msg="cannot connect to libvirt at %s: %s" % (module.params["uri"], exc))
    leases, reserved = addresses(conn)
    path = module.params["storage_path"]
    try:
        st = os.statvfs(path)
        storage = {"path": path, "size_bytes": st.f_blocks * st.f_frsize, "free_bytes": st.f_bavail * st.f_frsize}
    except OSError:
        storage = {"path": path, "size_bytes": None, "free_bytes": None}
    info = conn.getInfo()
    host = {"hostname": socket.gethostname(), "threads": os.cpu_count() or info[2], "memory_kib": memory_kib(),
            "storage": storage, "libvirt": version(conn.getLibVersion()), "qemu": version(conn.getVersion())}
    domains = sorted(conn.listAllDomains(), key=lambda d: d.name())
    wait_for_agents(module, domains, module.params["agent_wait"])
    module.exit_json(changed=False, host=host, guests=[guest(conn, d, leases, reserved) for d in domains],
                     networks=networks(conn), pools=pools(conn), services=services(module, module.params["units"]))


if __name__ == "__main__":
    main()
