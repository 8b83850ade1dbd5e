#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_facts
short_description: Read what the guests are planned against - CPUs, memory, guests, pools, filesystems
version_added: 0.1.0
description:
  - Gathers, in one call, the host facts that the guests are checked and pinned against before
    any change. Named C(cpu_topology) before 0.1.0 (that name redirects here, with a deprecation
    warning); its fact was C(kvmlab_cpu_topology).
  - Reads C(/sys/devices/system/cpu), C(/sys/devices/system/node), the hybrid core types
    (C(/sys/devices/cpu_core/cpus), C(/sys/devices/cpu_atom/cpus)), L3 cache groups, huge pages
    and the C(isolcpus) and C(nohz_full) kernel options, and returns them as one structure.
  - Feed RV(ansible_facts.kvmlab_host_facts) to the C(kvmlab.hypervisor.cpu_pinning) filter.
  - Also returns the host's memory (C(/proc/meminfo)) and the CPUs that libvirt's guests pin
    (C(pinned)), read from their persistent definitions, so pins for one guest can avoid the
    others'.
  - With O(paths), the size and free space of the filesystem that holds each path (of its
    nearest existing parent before the path exists) in C(filesystems).
author:
  - kvmlab developers (@kvmlab)
extends_documentation_fragment:
  - kvmlab.hypervisor.attributes.read_only
options:
  uri:
    description:
      - libvirt connection URI to read the guests' pins from. When libvirt (or its Python
        binding) is not installed yet, C(pinned), C(domains) and C(pools) are empty.
      - When libvirt is installed but does not answer at a local URI (its daemon is stopped), the
        persistent definitions are read from libvirt's own files instead (C(/etc/libvirt/qemu/*.xml),
        C(/etc/libvirt/storage/*.xml)), with a warning, so the checks against the guests the host
        already has stay on. At another URI, or on any other libvirt error, the task fails naming
        it.
    type: str
    default: qemu:///system
  paths:
    description: Paths whose filesystem's size and free space to report (C(filesystems)).
    type: list
    elements: path
    default: []
attributes:
  facts:
    support: full
    description: Sets C(kvmlab_host_facts).
"""

EXAMPLES = r"""
- name: Read the host's facts (CPUs, memory, the guests and pools libvirt has)
  kvmlab.hypervisor.host_facts:

- name: Pin win11 from it
  ansible.builtin.debug:
    msg: "{{ ansible_facts.kvmlab_host_facts
             | kvmlab.hypervisor.cpu_pinning([{'name': 'win11', 'vcpus': 6, 'cpu_pinning': 'auto'}]) }}"
"""

RETURN = r"""
ansible_facts:
  description: The host's facts.
  returned: always
  type: complex
  contains:
    kvmlab_host_facts:
      description:
        - C(cpus) (id, online, core_id, package, die, siblings, node, l3, type), C(online),
          C(threads_per_core), C(nodes), C(l3_groups), C(hybrid), C(core_types), C(isolcpus),
          C(nohz_full), C(hugepages) (per page size in kB, total and free), C(memory) (C(total_kib),
          C(available_kib)), C(pinned) (guest name to the host CPUs its vCPUs are pinned to),
          C(domains) (guest name to the C(files) - disks, NVRAM, TPM socket - and C(macs) its
          persistent definition uses), C(pools) (libvirt pool name to its directory) and
          C(filesystems) (each of O(paths) to its filesystem's C(size) and C(free) bytes); the
          site checks its guests against these before any change.
      type: dict
      returned: always
      sample:
        online: [0, 1]
        threads_per_core: 1
        nodes: {"0": [0, 1]}
        hybrid: false
"""

import glob
import os
import xml.etree.ElementTree as ET

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.guest_files import exclusive_files
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.libvirt_common import LOCAL_URIS, not_installed_yet
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import parse_cpulist, read_topology

try:
    import libvirt
except ImportError:
    libvirt = None


def memory() -> dict:
    fields = {}
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                key, _sep, value = line.partition(":")
                fields[key] = int(value.split()[0]) if value.split() else 0
    except (OSError, ValueError):
        pass
    return {"total_kib": fields.get("MemTotal", 0), "available_kib": fields.get("MemAvailable", 0)}


# libvirt's own files of the persistent definitions (the daemon writes them, and reads them when it
# starts), for a host whose daemon is stopped.
DEFINITIONS = {"domains": "/etc/libvirt/qemu/*.xml", "pools": "/etc/libvirt/storage/*.xml"}


class LibvirtStateError(Exception):
    """libvirt's state could not be read; the message says why."""


def _held(root) -> tuple[list, dict]:
    """The host CPUs a definition's vCPUs are pinned to, and the files and MACs it uses."""
    cpus = set()
    for pin in root.findall("cputune/vcpupin"):
        cpus.update(parse_cpulist(pin.get("cpuset", "")))
    files = exclusive_files(root)
    macs = [el.get("address") for el in root.findall("devices/interface/mac") if el.get("address")]
    return sorted(cpus), {"files": files, "macs": macs}


def _state(domain_xmls: list, pool_xmls: list) -> tuple[dict, dict, dict]:
    pinned, owned, pools = {}, {}, {}
    for text in domain_xmls:
        root = ET.fromstring(text)
        name = root.findtext("name")
        cpus, owned[name] = _held(root)
        if cpus:
            pinned[name] = cpus
    for text in pool_xmls:
        root = ET.fromstring(text)
        if root.findtext("target/path"):
            pools[root.findtext("name")] = root.findtext("target/path")
    return pinned, owned, pools


def from_files() -> tuple[dict, dict, dict]:
    """The persistent definitions as libvirt keeps them on disk."""
    texts = {}
    for kind, pattern in DEFINITIONS.items():
        texts[kind] = []
        for path in sorted(glob.glob(pattern)):
            try:
                with open(path, encoding="utf-8") as handle:
                    texts[kind].append(handle.read())
            except OSError as exc:
                raise LibvirtStateError("cannot read libvirt's definition %s: %s" % (path, exc)) from exc
    try:
        return _state(texts["domains"], texts["pools"])
    except ET.ParseError as exc:
        raise LibvirtStateError("a libvirt definition under /etc/libvirt is not XML: %s" % exc) from exc


def libvirt_state(uri: str) -> tuple[dict, dict, dict, str]:
    """What the persistent guests hold, read from their definitions (read-only connection):
    (guest -> the host CPUs its vCPUs are pinned to, guest -> the files and MACs it uses,
    pool -> its directory, where it was read: libvirt, files or none). Empty before libvirt is
    installed; raises LibvirtStateError when it cannot be read."""
    if libvirt is None:
        return {}, {}, {}, "none"
    try:
        conn = libvirt.openReadOnly(uri)
    except libvirt.libvirtError as exc:
        if not_installed_yet(uri):
            return {}, {}, {}, "none"
        if uri in LOCAL_URIS:
            return (*from_files(), "files: libvirt does not answer at %s (%s)" % (uri, exc))
        raise LibvirtStateError("cannot read the guests and pools libvirt has at %s: %s" % (uri, exc)) from exc
    try:
        domains = []
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT):
            try:
                domains.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # else undefined meanwhile
                    raise
        pools = []
        for pool in conn.listAllStoragePools():
            try:
                pools.append(pool.XMLDesc(0))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                    raise
    except libvirt.libvirtError as exc:
        raise LibvirtStateError("cannot read the guests and pools libvirt has at %s: %s" % (uri, exc)) from exc
    return (*_state(domains, pools), "libvirt")


def filesystems(paths: list) -> dict:
    """path -> {size, free} in bytes of the filesystem that holds it (or its nearest parent)."""
    out = {}
    for path in paths:
        probe = path
        while not os.path.exists(probe) and probe not in ("/", ""):
            probe = os.path.dirname(probe)
        try:
            stat = os.statvfs(probe or "/")
        except OSError:
            continue
        out[path] = {"size": stat.f_blocks * stat.f_frsize, "free": stat.f_bavail * stat.f_frsize}
    return out


def main() -> None:
    module = AnsibleModule(argument_spec={"uri": {"type": "str", "default": "qemu:///system"},
                                          "paths": {"type": "list", "elements": "path", "default": []}},
                           supports_check_mode=True)
    try:
        with open("/proc/cmdline", encoding="utf-8") as f:
            cmdline = f.read()
    except OSError:
        cmdline = ""
    try:
        pinned, domains, pools, source = libvirt_state(module.params["uri"])
    except LibvirtStateError as exc:
        module.fail_json(msg="%s; the guest checks need it (the guests libvirt already has). Start libvirt, or "
                             "fix the URI or the permission." % exc)
    if source.startswith("files"):
        module.warn("%s; read the persistent definitions from /etc/libvirt instead." % source[len("files: "):])
    topology = dict(read_topology(cmdline=cmdline), memory=memory(), pinned=pinned, domains=domains, pools=pools,
                    filesystems=filesystems(module.params["paths"]))
    module.exit_json(changed=False, ansible_facts={"kvmlab_host_facts": topology})


if __name__ == "__main__":
    main()
