#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cpu_topology
short_description: Read the host's CPU topology for pinning guests
version_added: 0.1.0
description:
  - Reads C(/sys/devices/system/cpu), C(/sys/devices/system/node), the hybrid core types
    (C(/sys/devices/cpu_core/cpus), C(/sys/devices/cpu_atom/cpus)), L3 cache groups, huge pages
    and the C(isolcpus) and C(nohz_full) kernel options, and returns them as one structure.
  - Feed RV(ansible_facts.kvmlab_cpu_topology) to the C(kvmlab.hypervisor.cpu_pinning) filter.
author:
  - kvmlab developers (@kvmlab)
options: {}
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Reads only; there is nothing to diff.
  facts:
    support: full
    description: Sets C(kvmlab_cpu_topology).
"""

EXAMPLES = r"""
- name: Read the CPU topology
  kvmlab.hypervisor.cpu_topology:

- name: Pin win11 from it
  ansible.builtin.debug:
    msg: "{{ ansible_facts.kvmlab_cpu_topology
             | kvmlab.hypervisor.cpu_pinning([{'name': 'win11', 'vcpus': 6, 'cpu_pinning': 'auto'}]) }}"
"""

RETURN = r"""
ansible_facts:
  description: The topology.
  returned: always
  type: complex
  contains:
    kvmlab_cpu_topology:
      description:
        - C(cpus) (id, online, core_id, package, die, siblings, node, l3, type), C(online),
          C(threads_per_core), C(nodes), C(l3_groups), C(hybrid), C(core_types), C(isolcpus),
          C(nohz_full) and C(hugepages) (per page size in kB, total and free).
      type: dict
      returned: always
      sample:
        online: [0, 1]
        threads_per_core: 1
        nodes: {"0": [0, 1]}
        hybrid: false
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import read_topology


def main() -> None:
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    try:
        with open("/proc/cmdline", encoding="utf-8") as f:
            cmdline = f.read()
    except OSError:
        cmdline = ""
    module.exit_json(changed=False, ansible_facts={"kvmlab_cpu_topology": read_topology(cmdline=cmdline)})


if __name__ == "__main__":
    main()
