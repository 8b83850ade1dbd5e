# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: guest_site
short_description: All guests of a site, resolved and checked together, with their domain XML
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - The one pass the site makes over its guests, on the controller, before any change. Each spec
    gets its C(kvmlab_guest_overrides) and is normalised and checked alone (as C(guest_spec) does), then
    against every other guest, the guests libvirt has that the inventory does not list, the
    networks' reservations, the pools and the host.
  - Refused, naming both owners - a disk, NVRAM file, TPM socket or TPM state directory of two
    guests; a MAC twice, or a MAC reserved for another name; a cdrom that is another guest's
    file; a virtiofs share that holds guest data; NVRAM or TPM state outside the storage mount,
    the pools and libvirt's directories (unless C(allow_foreign_paths)); pins that collide.
  - CPU pins are computed for all pinned guests jointly (explicit ones first, then automatic
    ones in the site's order), none on the CPUs of another guest or of the housekeeping set.
  - Each resolved guest carries its disks' C(path), its C(pins), its domain C(xml) (built as a
    tree, so that no value can change the XML's structure), its C(owned_paths) and, for an
    external TPM, the systemd C(units) that run its swtpm (every value quoted as C(systemd_quote)
    does).
options:
  _input:
    description: The guest specs (see C(ansible-doc -t role kvmlab.hypervisor.guest)).
    type: list
    elements: dict
    required: true
  overrides:
    description: C(kvmlab_guest_overrides) - fields per guest name, layered over its spec.
    type: dict
  topology:
    description: The host's C(kvmlab.hypervisor.host_facts) facts (CPUs, memory, the guests and pools libvirt has).
    type: dict
  networks:
    description: C(kvmlab_networks), for the MACs their reservations give to named guests.
    type: list
    elements: dict
  pools:
    description: C(kvmlab_storage_pools), for the disks' paths (libvirt's own pools count too).
    type: list
    elements: dict
  storage_mount:
    description: The storage mount point; NVRAM and TPM state must lie under it, a pool or C(/var/lib/libvirt).
    type: str
    default: /mnt/vm
  swtpm_group:
    description: The group of the swtpm control sockets of external TPMs (C(kvmlab_guest_swtpm_socket_group)).
    type: str
    default: kvm
  reserve:
    description:
      - C(kvmlab_host_reserve) - what the host keeps for itself (C(cpus), C(memory), C(storage)); the
        guests together may use the rest. vCPUs may exceed it with C(overcommit_cpus).
    type: dict
"""

EXAMPLES = r"""
- name: Resolve the site's guests and stop on any mistake
  ansible.builtin.set_fact:
    __site: "{{ kvmlab_guests | kvmlab.hypervisor.guest_site(overrides=kvmlab_guest_overrides,
                topology=ansible_facts.kvmlab_host_facts, networks=kvmlab_networks, pools=kvmlab_storage_pools) }}"
"""

RETURN = r"""
_value:
  description: C(guests) - the resolved guests (each as C(guest_spec) returns it, plus per disk
    C(path), C(pins), C(xml), C(owned_paths) and C(units)); C(domains) - each guest's entry of
    C(kvmlab.hypervisor.libvirt_domain)'s C(guests) option; C(errors) - every mistake, each naming its field.
  type: dict
"""

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.domain_batch import PER_GUEST as DOMAIN_OPTIONS
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.site import resolve


def guest_site(specs, **context):
    guests, errors = resolve(specs, context)
    domains = [{key: g[key] for key in DOMAIN_OPTIONS} for g in guests] if not errors else []
    return {"guests": guests, "domains": domains, "errors": errors}


class FilterModule:
    def filters(self):
        return {"guest_site": guest_site}
