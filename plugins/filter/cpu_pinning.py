# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: cpu_pinning
short_description: Compute guests' CPU pins from the host's real topology
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - Takes the topology from C(kvmlab.hypervisor.host_facts) and the guests' requests, and
    returns per guest its C(vcpupin) list, C(emulatorpin) and C(iothreadpin) CPU sets, and a
    guest C(topology) (sockets, dies, cores, threads) that mirrors the host's SMT layout.
  - Policy. Keeps SMT siblings together (vCPU pairs on sibling threads), prefers performance
    cores on hybrid CPUs, stays inside one L3 group or NUMA node when it can, leaves the
    housekeeping CPUs (default core 0 and its siblings) to the host and to the guests' emulator
    and I/O threads, never lets two pinned guests share a CPU, and validates explicit maps.
  - Fails with every problem at once, each naming the guest and the CPUs.
options:
  _input:
    description: The topology (C(ansible_facts.kvmlab_host_facts)).
    type: dict
    required: true
  requests:
    description:
      - One per guest. C(name), C(vcpus), and either C(cpu_pinning) (C(auto) pins every vCPU, a
        number pins that many) or C(cpu_pins), an explicit map of vCPU to host CPU list.
      - Guests without either are left out of the result.
    type: list
    elements: dict
    required: true
  housekeeping:
    description: Host CPUs kept for the host, as a CPU list string or a list; default core 0 and its siblings.
    type: raw
  numa_strict:
    description: Fail instead of spreading a guest over NUMA nodes.
    type: bool
    default: false
  taken:
    description:
      - CPUs already pinned by other guests, as guest name to CPU list (C(pinned) from
        C(kvmlab.hypervisor.host_facts)). They are not free; guests in the requests are left out.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Pins for win11, as on the example workstation
  ansible.builtin.set_fact:
    pins: "{{ ansible_facts.kvmlab_host_facts
              | kvmlab.hypervisor.cpu_pinning([{'name': 'win11', 'vcpus': 6, 'cpu_pinning': 'auto'}]) }}"
"""

RETURN = r"""
_value:
  description:
    - Per guest name, C(vcpupin) (list of vcpu and cpuset), C(emulatorpin), C(iothreadpin),
      C(topology) and C(cpus).
  type: dict
  sample:
    win11:
      vcpupin: [{vcpu: 0, cpuset: "2"}, {vcpu: 1, cpuset: "3"}]
      emulatorpin: "0-1"
      iothreadpin: "0-1"
      topology: {sockets: 1, dies: 1, cores: 1, threads: 2}
      cpus: [2, 3]
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import compute_pinning


def cpu_pinning(topology, requests, housekeeping=None, numa_strict=False, taken=None):
    if not isinstance(topology, dict) or "cpus" not in topology:
        raise AnsibleFilterError("cpu_pinning expects the topology from kvmlab.hypervisor.host_facts")
    if not isinstance(requests, list) or not all(isinstance(r, dict) and "name" in r and "vcpus" in r
                                                 for r in requests):
        raise AnsibleFilterError("cpu_pinning: requests must be a list of dicts with name and vcpus")
    # Facts come back from the managed host through JSON: integer keys arrive as strings.
    topo = dict(topology, nodes={int(k): v for k, v in topology.get("nodes", {}).items()})
    asked = {r["name"] for r in requests}
    owners = {cpu: guest for guest, cpus in (taken or {}).items() if guest not in asked for cpu in cpus}
    results, errors = compute_pinning(topo, requests, housekeeping, bool(numa_strict), owners)
    if errors:
        raise AnsibleFilterError("CPU pinning is not possible:\n" + "\n".join(errors))
    return results


class FilterModule:
    def filters(self):
        return {"cpu_pinning": cpu_pinning}
