# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest spec: defaults, normalisation and validation, all pure (no host access).

`normalize(spec)` returns the spec with every default filled in and derived values computed
(memory in KiB, disk target devices, deterministic MACs, cdrom bus), plus the list of mistakes,
each naming its field and the fix. The role `kvmlab.hypervisor.guest` runs it on the controller
(filter `guest_spec`) before any change and renders `templates/domain.xml.j2` from the result.

DEFAULTS mirrors `roles/guest/meta/argument_specs.yml`; a unit test keeps the two in sync.
"""

from __future__ import annotations

import hashlib
import re

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.spec import parse_size
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import (
    compute_pinning,
    format_cpulist,
    parse_cpulist,
)

DEFAULTS = {
    "name": None,
    "memory": "2G",
    "vcpus": 2,
    "machine": "q35",
    "virt_type": "kvm",
    "cpu_mode": "host-passthrough",
    "cpu_model": None,
    "cpu_threads": 1,
    "firmware": "uefi",
    "secure_boot": False,
    "enrolled_keys": None,
    "nvram": None,
    "tpm": "none",
    "tpm_model": "crb",
    "tpm_socket": "/mnt/vm/swtpm-sock",
    "tpm_state_dir": "/mnt/vm/tpm",
    "disks": [],
    "cdroms": [],
    "interfaces": [{"network": "default"}],
    "graphics": "spice",
    "graphics_listen": "127.0.0.1",
    "video": "virtio",
    "filesystems": [],
    "windows": False,
    "cpu_pinning": "none",
    "cpu_pins": {},
    "emulator_pins": None,
    "cpu_housekeeping": None,
    "numa_strict": False,
    "iothreads": 0,
    "hugepages": False,
    "boot": None,
    "autostart": False,
    "state": "running",
    "shutdown_timeout": 120,
    "force_stop": False,
    "allow_restart": False,
    "purge": False,
    "reset_nvram": False,
}
DISK_DEFAULTS = {"name": None, "pool": "vm", "size": None, "format": "qcow2", "bus": "virtio",
                 "backing_file": None, "backing_format": "qcow2", "allow_grow": False}
INTERFACE_DEFAULTS = {"network": "default", "mac": None, "model": "virtio", "boot_rom": True}
FILESYSTEM_DEFAULTS = {"source": None, "target": None}
CHOICES = {
    "virt_type": ("kvm", "qemu"),
    "cpu_mode": ("host-passthrough", "host-model", "maximum", "custom"),
    "firmware": ("uefi", "bios"),
    "tpm": ("none", "emulator", "external"),
    "tpm_model": ("crb", "tis"),
    "graphics": ("spice", "vnc", "none"),
    "video": ("virtio", "qxl", "vga", "bochs", "none"),
    "state": ("running", "shutdown", "absent"),
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
BOOL_FIELDS = ("secure_boot", "windows", "autostart", "force_stop", "allow_restart", "purge", "reset_nvram",
               "numa_strict")


def guest_mac(name: str, index: int = 0) -> str:
    """52:54:00 plus the first three bytes of sha256("<name>/<index>")."""
    digest = hashlib.sha256(("%s/%d" % (name, index)).encode("utf-8")).digest()
    return "52:54:00:" + ":".join("%02x" % b for b in digest[:3])


def _dev(prefix: str, index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


def _items(spec: dict, field: str, defaults: dict, errors: list, var: str) -> list[dict]:
    value = spec.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append("%s.%s: must be a list, got %r." % (var, field, value))
        return []
    out = []
    for i, item in enumerate(value):
        if field == "cdroms" and isinstance(item, str):
            item = {"path": item}  # noqa: PLW2901
        if not isinstance(item, dict):
            errors.append("%s.%s[%d]: must be a mapping, got %r." % (var, field, i, item))
            continue
        known = set(defaults) | ({"path"} if field == "cdroms" else set())
        for key in sorted(set(item) - known):
            errors.append("%s.%s[%d].%s: unknown field; known fields are %s."
                          % (var, field, i, key, ", ".join(sorted(known))))
        merged = dict(defaults)
        merged.update({k: v for k, v in item.items() if v is not None})
        out.append(merged)
    return out


def _firmware(g: dict, spec: dict, name: str, errors: list, var: str) -> None:
    # Firmware. Secure Boot needs SMM, which only q35 has.
    if g["enrolled_keys"] is None:
        g["enrolled_keys"] = bool(g["secure_boot"])
    if g["firmware"] == "bios":
        for key in ("secure_boot", "enrolled_keys", "nvram"):
            if g[key]:
                errors.append("%s.%s: needs firmware uefi; this guest has firmware bios." % (var, key))
    if g["secure_boot"] and not str(g["machine"]).startswith(("q35", "pc-q35")):
        errors.append("%s.machine: Secure Boot needs the q35 machine (for SMM), got %r." % (var, g["machine"]))
    if g["enrolled_keys"] and not g["secure_boot"]:
        errors.append("%s.enrolled_keys: enrolled keys only make sense with secure_boot: true." % var)
    if g["nvram"] is not None and not str(g["nvram"]).startswith("/"):
        errors.append("%s.nvram: %r is relative; give an absolute path such as /mnt/vm/%s_VARS.fd."
                      % (var, g["nvram"], name))
    g["q35"] = str(g["machine"]).startswith(("q35", "pc-q35"))
    if g["tpm"] == "external":
        for key in ("tpm_socket", "tpm_state_dir"):
            if not str(g[key]).startswith("/"):
                errors.append("%s.%s: %r is relative; give an absolute path." % (var, key, g[key]))


def _disks(g: dict, spec: dict, name: str, errors: list, var: str) -> None:
    # Disks: sized volumes in libvirt pools, with their target devices.
    g["disks"] = _items(g, "disks", DISK_DEFAULTS, errors, var)
    letters = {"virtio": 0, "sata": 0}
    seen = set()
    for i, disk in enumerate(g["disks"]):
        label = "%s.disks[%d]" % (var, i)
        if not disk["name"] or "/" in str(disk["name"]):
            errors.append("%s.name: give the volume's file name in its pool, such as %s.qcow2." % (label, name))
        if (disk["pool"], disk["name"]) in seen:
            errors.append("%s: %s/%s is listed twice." % (label, disk["pool"], disk["name"]))
        seen.add((disk["pool"], disk["name"]))
        try:
            parse_size(disk["size"] if disk["size"] is not None else "missing")
        except ValueError as exc:
            errors.append("%s.size: %s; give the disk's capacity such as 40G." % (label, exc))
        if disk["format"] not in ("qcow2", "raw"):
            errors.append("%s.format: %r is not one of qcow2, raw." % (label, disk["format"]))
        if disk["bus"] not in ("virtio", "sata"):
            errors.append("%s.bus: %r is not one of virtio, sata." % (label, disk["bus"]))
            disk["bus"] = "virtio"
        disk["dev"] = _dev("vd" if disk["bus"] == "virtio" else "sd", letters[disk["bus"]])
        letters[disk["bus"]] += 1
        disk["volume"] = {k: disk[k] for k in ("pool", "name", "format", "backing_file", "allow_grow")}
        disk["volume"]["capacity"] = disk["size"]
        if disk["backing_file"]:
            disk["volume"]["backing_format"] = disk["backing_format"]
        else:
            del disk["volume"]["backing_file"]


def _cdroms(g: dict, spec: dict, name: str, errors: list, var: str) -> None:
    # ISO images as cdroms: SATA on q35 (it has no IDE), IDE on i440fx, after the SATA disks.
    sata = sum(1 for d in g["disks"] if d["bus"] == "sata")
    cd_bus = "sata" if g["q35"] else "ide"
    g["cdroms"] = _items(g, "cdroms", {"path": None}, errors, var)
    for i, cd in enumerate(g["cdroms"]):
        if not str(cd["path"] or "").startswith("/"):
            errors.append("%s.cdroms[%d]: %r is not an absolute path to an ISO image such as /mnt/vm/iso/%s.iso."
                          % (var, i, cd["path"], name))
        cd["bus"] = cd_bus
        cd["dev"] = _dev("sd", sata + i) if cd_bus == "sata" else _dev("hd", i)


def _interfaces(g: dict, spec: dict, name: str, errors: list, var: str) -> None:
    g["interfaces"] = _items(g, "interfaces", INTERFACE_DEFAULTS, errors, var)
    macs = set()
    for i, nic in enumerate(g["interfaces"]):
        nic["mac"] = str(nic["mac"] or guest_mac(name, i)).lower()
        if not MAC_RE.match(nic["mac"]):
            errors.append("%s.interfaces[%d].mac: %r is not a MAC address such as 52:54:00:12:34:56."
                          % (var, i, nic["mac"]))
        if nic["mac"] in macs:
            errors.append("%s.interfaces[%d].mac: %s is used twice." % (var, i, nic["mac"]))
        macs.add(nic["mac"])
        if nic["model"] not in ("virtio", "e1000e", "e1000", "rtl8139"):
            errors.append("%s.interfaces[%d].model: %r is not one of virtio, e1000e, e1000, rtl8139."
                          % (var, i, nic["model"]))

    g["filesystems"] = _items(g, "filesystems", FILESYSTEM_DEFAULTS, errors, var)
    targets = set()
    for i, fs in enumerate(g["filesystems"]):
        if not str(fs["source"] or "").startswith("/"):
            errors.append("%s.filesystems[%d].source: %r is not an absolute host directory." % (var, i, fs["source"]))
        if not fs["target"]:
            errors.append("%s.filesystems[%d].target: missing; give the mount tag the guest mounts, such as "
                          "share." % (var, i))
        elif fs["target"] in targets:
            errors.append("%s.filesystems[%d].target: %r is used twice." % (var, i, fs["target"]))
        targets.add(fs["target"])


def _pins(g: dict, spec: dict, name: str, errors: list, var: str) -> None:
    # Explicit pins: {vCPU: host CPU list}; computed pins come from the cpu_pinning filter.
    pins = g["cpu_pins"] if isinstance(g["cpu_pins"], dict) else None
    if pins is None:
        errors.append("%s.cpu_pins: must be a mapping of vCPU to host CPUs, such as {0: '2', 1: '3'}." % var)
        pins = {}
    g["vcpupin"] = []
    for vcpu, cpus in sorted(pins.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else -1):
        try:
            vcpu_i = int(vcpu)
            cpuset = format_cpulist(parse_cpulist(str(cpus)))
            if not cpuset or not 0 <= vcpu_i < g["vcpus"]:
                raise ValueError
        except ValueError:
            errors.append("%s.cpu_pins: %r: %r is not a vCPU (0-%d) with a host CPU list such as '2' or '2-3'."
                          % (var, vcpu, cpus, g["vcpus"] - 1))
            continue
        g["vcpupin"].append({"vcpu": vcpu_i, "cpuset": cpuset})
    mode = g["cpu_pinning"]
    if mode not in ("none", "auto") and (isinstance(mode, bool) or not isinstance(mode, int)
                                         or not 1 <= mode <= g["vcpus"]):
        errors.append("%s.cpu_pinning: %r must be none, auto (pin every vCPU) or a number of vCPUs to pin "
                      "(1-%d)." % (var, mode, g["vcpus"]))
    if mode != "none" and pins:
        errors.append("%s.cpu_pinning: give either cpu_pinning (computed pins) or cpu_pins (explicit ones), "
                      "not both." % var)
    # The host's topology is read (one remote task) to compute pins, or to check explicit ones.
    g["pinned"] = mode != "none" or bool(pins)
    if g["cpu_housekeeping"] is not None:
        try:
            g["cpu_housekeeping"] = format_cpulist(parse_cpulist(str(g["cpu_housekeeping"])))
        except ValueError:
            errors.append("%s.cpu_housekeeping: %r is not a host CPU list such as '0,10'."
                          % (var, g["cpu_housekeeping"]))


def _tuning(g: dict, spec: dict, name: str, errors: list, var: str) -> None:
    """I/O threads and huge pages."""
    iothreads = g["iothreads"]
    if isinstance(iothreads, bool) or not isinstance(iothreads, int) or not 0 <= iothreads <= 16:
        errors.append("%s.iothreads: must be a number from 0 to 16, got %r." % (var, iothreads))
        g["iothreads"] = 0
    virtio = [d for d in g["disks"] if d["bus"] == "virtio"]
    for i, disk in enumerate(virtio):
        disk["iothread"] = i % g["iothreads"] + 1 if g["iothreads"] else None
    pages = g["hugepages"]
    if pages is not False and pages is not True and (not isinstance(pages, int) or pages not in (2048, 1048576)):
        errors.append("%s.hugepages: %r must be true (2 MiB pages), 2048 or 1048576 (KiB), or false."
                      % (var, pages))
    elif pages is True:
        g["hugepages"] = 2048
    if g["hugepages"] and g["filesystems"]:
        errors.append("%s.hugepages: virtiofs needs memfd shared memory; drop hugepages or the filesystems."
                      % var)
    if g["emulator_pins"] is not None:
        try:
            g["emulator_pins"] = format_cpulist(parse_cpulist(str(g["emulator_pins"])))
        except ValueError:
            errors.append("%s.emulator_pins: %r is not a host CPU list such as '0-1'." % (var, g["emulator_pins"]))


def normalize(spec, var: str = "guest_spec") -> tuple[dict, list[str]]:
    """The spec with defaults and derived values, and the list of mistakes in it."""
    errors: list[str] = []
    if not isinstance(spec, dict):
        return {}, ["%s: must be a mapping with at least a name, got %r." % (var, spec)]
    for key in sorted(set(spec) - set(DEFAULTS)):
        errors.append("%s.%s: unknown field; see `ansible-doc -t role kvmlab.hypervisor.guest` for the fields."
                      % (var, key))
    g = dict(DEFAULTS)
    g.update({k: v for k, v in spec.items() if v is not None and k in DEFAULTS})
    name = g["name"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        errors.append("%s.name: %r is not a usable guest name; use letters, digits, '.', '_' or '-' "
                      "(at most 63 characters, starting with a letter or digit)." % (var, name))
        name = str(name)
    for key, choices in CHOICES.items():
        if g[key] not in choices:
            errors.append("%s.%s: %r is not one of %s." % (var, key, g[key], ", ".join(choices)))
    for key in BOOL_FIELDS:
        if not isinstance(g[key], bool):
            errors.append("%s.%s: must be true or false, got %r." % (var, key, g[key]))
    _sizing(g, errors, var)
    for check in (_firmware, _disks, _cdroms, _interfaces, _pins, _tuning):
        check(g, spec, name, errors, var)
    if g["boot"] is None:
        g["boot"] = ["hd", "cdrom"] if g["cdroms"] else ["hd"]
    elif not isinstance(g["boot"], list) or not set(g["boot"]) <= {"hd", "cdrom", "network"}:
        errors.append("%s.boot: %r must be a list of hd, cdrom, network." % (var, g["boot"]))
    return g, errors


def _sizing(g: dict, errors: list, var: str) -> None:
    try:
        g["memory_kib"] = parse_size(g["memory"]) // 1024
        if g["memory_kib"] < 64 * 1024:
            errors.append("%s.memory: %s is below 64M; give a size such as 2G." % (var, g["memory"]))
    except ValueError as exc:
        errors.append("%s.memory: %s." % (var, exc))
        g["memory_kib"] = 0
    if isinstance(g["vcpus"], bool) or not isinstance(g["vcpus"], int) or not 1 <= g["vcpus"] <= 512:
        errors.append("%s.vcpus: must be a whole number from 1 to 512, got %r." % (var, g["vcpus"]))
        g["vcpus"] = 1
    threads = g["cpu_threads"]
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1 or g["vcpus"] % threads:
        errors.append("%s.cpu_threads: %r must be a whole number that divides vcpus (%d), such as 1 or 2."
                      % (var, threads, g["vcpus"]))
        threads = 1
    g["cpu_threads"], g["cpu_cores"] = threads, g["vcpus"] // threads
    if not isinstance(g["shutdown_timeout"], int) or g["shutdown_timeout"] < 0:
        errors.append("%s.shutdown_timeout: must be a number of seconds (0 or more), got %r."
                      % (var, g["shutdown_timeout"]))
    if g["cpu_mode"] == "custom" and not g["cpu_model"]:
        errors.append("%s.cpu_model: cpu_mode custom needs a CPU model such as qemu64 or Skylake-Client." % var)


def host_errors(g: dict, topology: dict, var: str = "guest_spec") -> list[str]:
    """What a normalised spec asks for that this host (its kvmlab.hypervisor.cpu_topology facts)
    cannot give: more memory than it has, or pins that do not fit its CPUs."""
    errors = []
    total = (topology.get("memory") or {}).get("total_kib") or 0
    if total and g["memory_kib"] > total:
        errors.append("%s.memory: guest %s asks for %s, but the host has %.1fG in total; give it less memory."
                      % (var, g["name"], g["memory"], total / 1024 / 1024))
    if g["pinned"]:
        request = {"name": g["name"], "vcpus": g["vcpus"], "cpu_pinning": g["cpu_pinning"], "cpu_pins": g["cpu_pins"]}
        topo = dict(topology, nodes={int(k): v for k, v in topology.get("nodes", {}).items()})
        taken = {cpu: guest for guest, cpus in (topology.get("pinned") or {}).items() if guest != g["name"]
                 for cpu in cpus}
        pin_errors = compute_pinning(topo, [request], g["cpu_housekeeping"], g["numa_strict"], taken)[1]
        errors.extend("%s.cpu_pinning: %s" % (var, e) for e in pin_errors)
    return errors
