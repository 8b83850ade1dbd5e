# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""All guests of a site, resolved and checked together, on the controller, before any change.

`resolve(specs, ...)` is the one pass the site makes over its guests: each spec gets the
inventory's `kvmlab_guest_overrides`, is normalised and checked alone (plugin_utils/guest.py), and then
against every other guest, the guests libvirt already has that the inventory does not list, the
networks' reservations, the pools and the host:

- a disk, NVRAM file, TPM socket or TPM state directory belongs to one guest only; a cdrom or a
  virtiofs share must not expose another guest's files;
- a MAC belongs to one interface, and a MAC reserved for a name belongs to that guest;
- NVRAM and TPM state lie where the site keeps guest data (the storage mount, a pool, libvirt's
  own directories) unless the spec opts out with `allow_foreign_paths`;
- CPU pins are computed for all pinned guests jointly, none on another's CPUs.

Each resolved guest carries its disks' paths, its pins and its libvirt domain XML
(plugin_utils/domain_render.py), so nothing is computed twice.
"""

from __future__ import annotations

import posixpath

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.spec_values import CONTROL_RE, parse_size
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.systemd import swtpm_units
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import compute_pinning
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.domain_render import render_domain
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.guest import normalize

LIBVIRT_DIRS = ("/var/lib/libvirt",)
NVRAM_DIR = "/var/lib/libvirt/qemu/nvram"


def _under(path: str, roots) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _pool_paths(pools, topology: dict) -> dict:
    """Pool name -> directory: libvirt's pools, overridden by the inventory's kvmlab_storage_pools."""
    paths = dict((topology or {}).get("pools") or {})
    for pool in pools or []:
        if isinstance(pool, dict) and pool.get("name") and isinstance(pool.get("path"), str):
            if pool.get("state", "present") == "absent":
                paths.pop(pool["name"], None)
            else:
                paths[pool["name"]] = posixpath.normpath(pool["path"])
    return paths


class _Owners:
    """Who owns each file, directory and MAC, so a second claim names both owners."""

    def __init__(self, errors: list):
        self.errors = errors
        self.by_key: dict = {}

    def claim(self, kind: str, key: str, owner: str, label: str | None) -> None:
        """label None: a claim read from libvirt, which is recorded but never reported."""
        held = self.by_key.get(key)
        if held and held[0] != owner and label:
            self.errors.append("%s: %s is already the %s of %s; two guests must never share a %s."
                               % (label, key, held[1], held[0], kind))
        elif not held:
            self.by_key[key] = (owner, kind)


def _merge(spec, overrides, errors: list) -> dict | None:
    if not isinstance(spec, dict):
        errors.append("kvmlab_guests: each guest must be a mapping with at least a name, got %r." % (spec,))
        return None
    name = spec.get("name")
    extra = (overrides or {}).get(name) if isinstance(name, str) and isinstance(overrides, dict) else None
    if extra is None:
        return spec
    if not isinstance(extra, dict):
        errors.append("kvmlab_guest_overrides.%s: must be a mapping of fields, got %r." % (name, extra))
        return spec
    return dict(spec, **extra)


def _files(g: dict) -> list[tuple]:
    """(kind, path, field) of everything on the host that belongs to this guest alone."""
    out = [("disk", d["path"], "disks[%d]" % i) for i, d in enumerate(g["disks"]) if d.get("path")]
    if g["firmware"] == "uefi":
        out.append(("NVRAM file", g["nvram"] or "%s/%s_VARS.fd" % (NVRAM_DIR, g["name"]), "nvram"))
    else:
        # libvirt's NVRAM file of a guest by this name (left from a UEFI past: a switch to BIOS
        # with reset_nvram backs it up, purge deletes it, as `virsh undefine --nvram` would).
        out.append(("NVRAM file", "%s/%s_VARS.fd" % (NVRAM_DIR, g["name"]), "firmware"))
    if g["tpm"] == "external":
        out.append(("TPM socket", g["tpm_socket"], "tpm_socket"))
        out.append(("TPM state directory", g["tpm_state_dir"], "tpm_state_dir"))
    return out


def _locations(g: dict, label: str, roots: list, errors: list) -> None:
    """NVRAM and TPM state where the site keeps guest data, unless the spec opts out; the TPM
    state directory one of the guest's own (swtpm's unit hands it to tss at every start)."""
    state = g["tpm_state_dir"] if g["tpm"] == "external" else None
    held = [root for root in roots if isinstance(state, str) and _under(root, [state])]
    if held:
        errors.append("%s.tpm_state_dir: %s is or holds %s, which swtpm's unit would hand to tss; give the TPM "
                      "state a directory of its own, such as %s/tpm/%s."
                      % (label, state, held[0], roots[0].rstrip("/") if roots else "/mnt/vm", g["name"]))
    if g["allow_foreign_paths"]:
        return
    fields = [("nvram", g["nvram"])] if g["firmware"] == "uefi" and g["nvram"] else []
    if g["tpm"] == "external":
        fields += [("tpm_socket", g["tpm_socket"]), ("tpm_state_dir", g["tpm_state_dir"])]
    for field, path in fields:
        if isinstance(path, str) and not _under(path, roots):
            errors.append("%s.%s: %s lies outside the storage mount, the pools and libvirt's directories (%s); "
                          "keep guest data there, or set allow_foreign_paths: true."
                          % (label, field, path, ", ".join(roots)))


def _exposure(g: dict, label: str, owned: dict, errors: list) -> None:
    """A cdrom must not be another guest's file; a share or a TPM state directory must not hold
    another guest's data."""
    for i, cd in enumerate(g["cdroms"]):
        held = owned.get(cd["path"])
        if held:
            errors.append("%s.cdroms[%d]: %s is the %s of %s; a cdrom must be an ISO image, not guest data."
                          % (label, i, cd["path"], held[1], held[0]))
    for i, disk in enumerate(g["disks"]):
        held = owned.get(disk["backing_file"]) if disk["backing_file"] else None
        if held:
            errors.append("%s.disks[%d].backing_file: %s is the %s of %s; a backing file must be a base image of "
                          "its own, never a guest's live data." % (label, i, disk["backing_file"], held[1], held[0]))
    for i, fs in enumerate(g["filesystems"]):
        source = str(fs["source"])
        if fs["allow_system_dir"]:
            continue
        for path, (owner, kind) in sorted(owned.items()):
            if _under(path, [source]):
                errors.append("%s.filesystems[%d].source: %s holds %s, the %s of %s; share a directory of its own."
                              % (label, i, source, path, kind, owner))
                break
    if g["tpm"] == "external":
        state = str(g["tpm_state_dir"])
        for path, (owner, kind) in sorted(owned.items()):
            if owner != "guest %s" % g["name"] and path != state and _under(path, [state]):
                errors.append("%s.tpm_state_dir: %s holds %s, the %s of %s; give the TPM state a directory of its own."
                              % (label, state, path, kind, owner))
                break


def _macs(g: dict, label: str, owners: _Owners, reserved: dict, errors: list) -> None:
    for i, nic in enumerate(g["interfaces"]):
        owners.claim("MAC", nic["mac"], "guest %s" % g["name"], "%s.interfaces[%d].mac" % (label, i))
        holder = reserved.get(nic["mac"])
        if holder and holder[0] != g["name"]:
            errors.append("%s.interfaces[%d].mac: %s is reserved for %s in %s; give this guest another MAC."
                          % (label, i, nic["mac"], holder[0], holder[1]))


def _reservations(networks) -> dict:
    out = {}
    for net in networks or []:
        if not isinstance(net, dict) or not isinstance(net.get("hosts"), list):
            continue
        for host in net["hosts"]:
            if isinstance(host, dict) and host.get("mac") and host.get("name"):
                out[str(host["mac"]).lower()] = (host["name"], "kvmlab_networks[%s].hosts" % net.get("name"))
    return out


def _pins(guests: list[dict], labels: dict, topology: dict, errors: list) -> None:
    """Pins for every pinned guest, computed jointly: explicit maps first, then automatic ones in
    the site's order; each guest's CPUs are taken for the next."""
    asked = {g["name"] for g in guests}
    taken = {cpu: name for name, cpus in (topology.get("pinned") or {}).items() if name not in asked
             for cpu in cpus}
    topo = dict(topology, nodes={int(k): v for k, v in (topology.get("nodes") or {}).items()})
    pinned = [g for g in guests if g["pinned"] and g["state"] != "absent"]
    for g in sorted(pinned, key=lambda g: not g["cpu_pins"]):
        request = {"name": g["name"], "vcpus": g["vcpus"], "cpu_pinning": g["cpu_pinning"], "cpu_pins": g["cpu_pins"]}
        results, pin_errors = compute_pinning(topo, [request], g["cpu_housekeeping"], g["numa_strict"], taken)
        errors.extend("%s.cpu_pinning: %s" % (labels[g["name"]], e) for e in pin_errors)
        g["pins"] = results.get(g["name"])
        for cpu in (g["pins"] or {}).get("cpus", []):
            taken[cpu] = g["name"]


def _specs(specs: list, context: dict, errors: list) -> tuple[list[dict], dict]:
    """Each spec with its overrides, normalised and checked alone; (guests, labels by name)."""
    guests, labels = [], {}
    for raw in specs:
        spec = _merge(raw, context.get("overrides"), errors)
        if spec is None:
            continue
        name = spec.get("name")
        shown = name if isinstance(name, str) and not CONTROL_RE.search(name) else repr(name)
        label = "guest_spec" if context.get("single") else "kvmlab_guests[%s]" % shown
        g, own = normalize(spec, label)
        errors += own
        if own:
            continue
        if name in labels:
            errors.append("%s.name: two specs define the guest %s; give each guest its own name." % (label, name))
            continue
        labels[name] = label
        guests.append(g)
    return guests, labels


def _disk_paths(guests: list[dict], labels: dict, paths: dict, errors: list) -> None:
    for g in guests:
        for i, disk in enumerate(g["disks"]):
            if disk["pool"] in paths:
                disk["path"] = "%s/%s" % (paths[disk["pool"]].rstrip("/"), disk["name"])
            else:
                errors.append("%s.disks[%d].pool: %r is neither in kvmlab_storage_pools nor a libvirt pool on "
                              "the host (%s)."
                              % (labels[g["name"]], i, disk["pool"], ", ".join(sorted(paths)) or "none"))


def _ownership(guests: list[dict], labels: dict, context: dict, roots: list, errors: list) -> None:
    """Files, directories and MACs of one guest only; none exposed to another guest."""
    owners = _Owners(errors)
    # The guests libvirt has that the inventory does not list own their files and MACs too.
    for name, dom in sorted((context["topology"].get("domains") or {}).items()):
        if name in labels:
            continue
        owner = "guest %s (defined in libvirt, not in the inventory)" % name
        for path in dom.get("files") or []:
            owners.claim("file", path, owner, None)
        for mac in dom.get("macs") or []:
            owners.claim("MAC", mac.lower(), owner, None)
    for g in guests:
        files = _files(g)
        for kind, path, field in files:
            owners.claim(kind, path, "guest %s" % g["name"], "%s.%s" % (labels[g["name"]], field))
        # What purge may delete and reset_nvram replace (libvirt_domain checks it again on the host).
        g["owned_paths"] = [path for kind, path, _field in files if kind in ("disk", "NVRAM file")]
    reserved = _reservations(context.get("networks"))
    for g in guests:
        _locations(g, labels[g["name"]], roots, errors)
        _macs(g, labels[g["name"]], owners, reserved, errors)
    owned = {k: v for k, v in owners.by_key.items() if k.startswith("/")}
    for g in guests:
        _exposure(g, labels[g["name"]], owned, errors)


RESERVE_KEYS = ("cpus", "memory", "storage", "overcommit_cpus")


def _gib(size: int) -> str:
    return "%.1fG" % (size / 1024 ** 3)


def reserve_errors(guests: list[dict], reserve, topology: dict, storage_mount: str) -> list[str]:
    """What the guests ask for together against what the host has left after kvmlab_host_reserve (the
    host report's "available for VMs"): vCPUs against threads (unless overcommit_cpus), memory, and the
    disks' capacities against the storage mount's filesystem. A figure the host did not report
    (before the first read) is not checked."""
    if not reserve:
        return []
    if not isinstance(reserve, dict) or set(reserve) - set(RESERVE_KEYS):
        return ["kvmlab_host_reserve: must be a mapping with the keys %s, got %r." % (", ".join(RESERVE_KEYS), reserve)]
    try:
        keep = {"cpus": int(reserve.get("cpus") or 0), "memory": parse_size(reserve.get("memory") or 0),
                "storage": parse_size(reserve.get("storage") or 0)}
    except (TypeError, ValueError) as exc:
        return ["kvmlab_host_reserve: %s; give cpus as a number and memory and storage as sizes such as 16G." % exc]
    live = [g for g in guests if g["state"] != "absent"]
    errors = []
    threads = len(topology.get("online") or [])
    vcpus = sum(g["vcpus"] for g in live)
    left = max(threads - keep["cpus"], 0)
    if threads and not reserve.get("overcommit_cpus") and vcpus > threads - keep["cpus"]:
        errors.append("kvmlab_host_reserve.cpus: the guests ask for %d vCPUs together, but the host has %d threads and "
                      "keeps %d for itself, leaving %d; give the guests fewer vCPUs, lower "
                      "kvmlab_host_reserve.cpus, or "
                      "set kvmlab_host_reserve.overcommit_cpus: true." % (vcpus, threads, keep["cpus"], left))
    total = ((topology.get("memory") or {}).get("total_kib") or 0) * 1024
    memory = sum(g["memory_kib"] for g in live) * 1024
    if total and memory > total - keep["memory"]:
        errors.append("kvmlab_host_reserve.memory: the guests ask for %s of memory together, but the host has "
                      "%s and keeps "
                      "%s for itself, leaving %s; give the guests less memory or lower kvmlab_host_reserve.memory."
                      % (_gib(memory), _gib(total), _gib(keep["memory"]), _gib(max(total - keep["memory"], 0))))
    size = ((topology.get("filesystems") or {}).get(storage_mount) or {}).get("size") or 0
    disks = sum(parse_size(d["size"]) for g in live for d in g["disks"] if d.get("size") is not None)
    if size and disks > size - keep["storage"]:
        errors.append("kvmlab_host_reserve.storage: the guests' disks hold up to %s together, but the "
                      "filesystem of %s has "
                      "%s and keeps %s for the host, leaving %s; give the guests smaller disks or lower "
                      "kvmlab_host_reserve.storage." % (_gib(disks), storage_mount, _gib(size), _gib(keep["storage"]),
                                                        _gib(max(size - keep["storage"], 0))))
    return errors


def resolve(specs, context: dict | None = None) -> tuple[list[dict], list[str]]:
    """The site's guests, resolved and checked together; returns (guests, errors).

    context (every key optional): `overrides` (kvmlab_guest_overrides), `topology`
    (kvmlab.hypervisor.host_facts's facts: the host's CPUs and memory, the pins, files and MACs
    of the guests libvirt has, its pools, the size of the storage mount's filesystem; None before
    the host is read), `networks` (kvmlab_networks), `pools` (kvmlab_storage_pools), `storage_mount`,
    `swtpm_group` (the group of the swtpm control sockets, kvmlab_guest_swtpm_socket_group), `reserve`
    (kvmlab_host_reserve: what the host keeps for itself), and `single` (name the one spec `guest_spec`
    in messages, as the filter guest_errors does, instead of `kvmlab_guests[NAME]`).

    Each resolved guest carries its disks' `path`, its `pins`, its domain `xml`, its
    `owned_paths` and, for an external TPM, the `units` that run its swtpm.
    """
    context = dict(context or {})
    context["topology"] = topology = context.get("topology") or {}
    if not isinstance(specs, list):
        return [], ["guest specs: must be a list of guest specs, got %r." % (specs,)]
    errors: list[str] = []
    guests, labels = _specs(specs, context, errors)
    paths = _pool_paths(context.get("pools"), topology)
    roots = sorted({context.get("storage_mount") or "/mnt/vm", *paths.values(), *LIBVIRT_DIRS})
    _disk_paths(guests, labels, paths, errors)
    _ownership(guests, labels, context, roots, errors)
    total = (topology.get("memory") or {}).get("total_kib") or 0
    for g in guests:
        if total and g["memory_kib"] > total:
            errors.append("%s.memory: guest %s asks for %s, but the host has %.1fG in total; give it less memory."
                          % (labels[g["name"]], g["name"], g["memory"], total / 1024 / 1024))
    errors += reserve_errors(guests, context.get("reserve"), topology, context.get("storage_mount") or "/mnt/vm")
    if topology.get("cpus"):
        _pins(guests, labels, topology, errors)
    if not errors:
        for g in guests:
            try:
                g["xml"] = render_domain(g) if g["state"] != "absent" else None
                g["units"] = (swtpm_units(g, context.get("swtpm_group", "kvm"))
                              if g["state"] != "absent" and g["tpm"] == "external" else [])
            except ValueError as exc:  # a value the checks let through that XML or a unit cannot carry
                errors.append("%s.%s" % (labels[g["name"]], exc) if str(exc).startswith("tpm_")
                              else "%s: %s" % (labels[g["name"]], exc))
    return guests, errors
