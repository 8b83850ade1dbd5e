# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest spec: defaults, normalisation and validation, all pure (no host access).

`normalize(spec)` returns the spec with every default filled in and derived values computed
(memory in KiB, disk target devices, deterministic MACs, cdrom bus), plus the list of mistakes,
each naming its field and the fix. The role `kvmlab.hypervisor.guest` runs it on the controller
(filters `guest_spec`, `guest_site`) before any change; plugin_utils/site.py checks the guests
against each other and plugin_utils/domain_render.py builds the domain XML from the result.

The fields, their defaults and allowed values come from `roles/guest/meta/argument_specs.yml`,
through module_utils/guest_schema.py (generated: `make schema`); nothing here repeats them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.guest_schema import FIELDS, SUBFIELDS
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.image import source_errors
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.spec_values import (
    MAC_RE,
    parse_size,
    path_error,
    text_errors,
)
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import format_cpulist, parse_cpulist


def _defaults(table: dict) -> dict:
    return {key: f["default"] for key, f in table.items()}


def _choices(table: dict) -> dict:
    return {key: f["choices"] for key, f in table.items() if f["choices"] and f["type"] == "str"}


DEFAULTS = _defaults(FIELDS)

# The profiles of field `profile`: defaults taken before the collection's own, under the spec's
# (documented with the field in roles/guest/meta/argument_specs.yml, which a unit test compares).
# windows11: Microsoft's Windows 11 requirements (UEFI, Secure Boot, TPM 2.0, 4 GB, 2 cores) and
# the Hyper-V enlightenments (field windows).
PROFILES = {
    "none": {},
    "windows11": {"firmware": "uefi", "secure_boot": True, "enrolled_keys": True, "tpm": "emulator",
                  "windows": True, "memory": "4G", "vcpus": 2},
}
DISK_DEFAULTS = _defaults(SUBFIELDS["disks"])
INTERFACE_DEFAULTS = _defaults(SUBFIELDS["interfaces"])
FILESYSTEM_DEFAULTS = _defaults(SUBFIELDS["filesystems"])
CDROM_DEFAULTS = _defaults(SUBFIELDS["cdroms"])
# The allowed values of every string field that has them, checked as `value in choices`; boot (a
# list) and hugepages (true, false or a page size) check theirs in place.
CHOICES = _choices(FIELDS)
DISK_CHOICES = _choices(SUBFIELDS["disks"])
INTERFACE_CHOICES = _choices(SUBFIELDS["interfaces"])
BOOT_DEVICES = FIELDS["boot"]["choices"]
HUGEPAGES = FIELDS["hugepages"]["choices"]
# cpu_pinning's keywords; it also takes a number of vCPUs, so the argument spec cannot list
# choices for it (Ansible would refuse the numbers). Its default is one of them.
CPU_PINNING_MODES = ("none", "auto")
# Fields that take more types than their argument spec can say (Ansible's argument spec has one
# type per option and no extension keys): a size or a CPU list may be a number, hugepages true or
# a page size. Each includes the spec's own type, unless that is raw.
MORE_TYPES = {
    "memory": (str, int), "emulator_pins": (str, int), "cpu_housekeeping": (str, int),
    "cpu_pinning": (str, int), "hugepages": (bool, int), "disks.size": (str, int),
}
SPEC_TYPES = {"str": str, "path": str, "int": int, "bool": bool, "list": list, "dict": dict}
# The type each field must have; bool is not an int here. A wrong type is reported, naming the
# field, and the field falls back to its default so the other checks can go on.
TYPES = {
    **{key: SPEC_TYPES[f["type"]] for key, f in FIELDS.items() if f["type"] in SPEC_TYPES},
    # list items: disks.name, ... (a disk's source is checked by module_utils/image.py)
    **{"%s.%s" % (kind, key): SPEC_TYPES[f["type"]] for kind, table in SUBFIELDS.items() if "." not in kind
       for key, f in table.items() if f["type"] in SPEC_TYPES},
    **MORE_TYPES,
}
TYPE_NAMES = {str: "a string", int: "a whole number", bool: "true or false", list: "a list", dict: "a mapping"}
# Names libvirt and QEMU take as identifiers (machine types, CPU models, networks, pools).
IDENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+:-]{0,127}")
# Host directories a virtiofs share may neither be nor lie in (nor contain: "/" and "/var" hold
# some of them). A share gives the guest write access to the directory as root would have it.
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/root", "/run", "/sbin",
               "/sys", "/usr", "/var/lib/libvirt", "/var/log")
# Host places a guest may not read as a cdrom or a backing file (devices, secrets, libvirt's own
# guest state), unless the spec opts out (allow_foreign_paths). /usr/share is not one of them: it
# holds distributions' ISOs (virtio-win).
READ_DENIED_DIRS = ("/boot", "/dev", "/etc", "/proc", "/root", "/run", "/sys", "/var/lib/libvirt/qemu",
                    "/var/lib/libvirt/swtpm", "/var/log")
SECRETS = ("graphics_password",)  # never shown in a message
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # used with fullmatch: no trailing newline


def _type_error(value, types, label: str) -> str | None:
    types = types if isinstance(types, tuple) else (types,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if ok:
        return None
    return "%s: must be %s, got %r." % (label, " or ".join(TYPE_NAMES[t] for t in types), value)


def _typed(g: dict, defaults: dict, errors: list, label: str, prefix: str = "") -> None:
    """Report fields of the wrong type and put their defaults back."""
    for key, default in defaults.items():
        types = TYPES.get(prefix + key)
        if types is None or g.get(key) is None:
            continue
        error = _type_error(g[key], types, "%s.%s" % (label, key))
        if error:
            errors.append(error)
            g[key] = default


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
        for key in sorted(set(item) - set(defaults), key=str):
            errors.append("%s.%s[%d].%s: unknown field; known fields are %s."
                          % (var, field, i, key, ", ".join(sorted(defaults))))
        merged = dict(defaults)
        merged.update({k: v for k, v in item.items() if v is not None and k in defaults})
        _typed(merged, defaults, errors, "%s.%s[%d]" % (var, field, i), field + ".")
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
    if g["nvram"] is not None:
        _path(g["nvram"], "%s.nvram" % var, errors, "/mnt/vm/%s_VARS.fd" % name)
    g["q35"] = str(g["machine"]).startswith(("q35", "pc-q35"))
    if g["tpm"] == "external":
        _path(g["tpm_socket"], "%s.tpm_socket" % var, errors, "/mnt/vm/%s-swtpm.sock" % name)
        _path(g["tpm_state_dir"], "%s.tpm_state_dir" % var, errors, "/mnt/vm/tpm/%s" % name)
        if len(str(g["tpm_socket"]).encode("utf-8")) > UNIX_PATH_MAX:
            errors.append("%s.tpm_socket: %r is longer than the %d bytes a Unix socket path may have."
                          % (var, g["tpm_socket"], UNIX_PATH_MAX))
        if "," in str(g["tpm_state_dir"]):
            errors.append("%s.tpm_state_dir: %r holds ',', which swtpm's --tpmstate option cannot carry; "
                          "choose a directory without ','." % (var, g["tpm_state_dir"]))


def _path(value, label: str, errors: list, example: str = "") -> None:
    error = path_error(value, label, example)
    if error:
        errors.append(error)


def _ident(value, label: str, errors: list, what: str) -> None:
    if not isinstance(value, str) or not IDENT_RE.fullmatch(value):
        errors.append("%s: %r is not a %s; use letters, digits, '.', '_', '+', ':' or '-'." % (label, value, what))


def _readable(path, label: str, errors: list, g: dict, what: str) -> None:
    """A cdrom or backing file must not be a device or lie in a system place (READ_DENIED_DIRS)."""
    if g["allow_foreign_paths"] or not isinstance(path, str):
        return
    denied = next((d for d in READ_DENIED_DIRS if path == d or path.startswith(d + "/")), None)
    if denied:
        errors.append("%s: %s lies in %s; a guest would read host data as its %s. Give an image file under the "
                      "storage mount or a pool (such as /mnt/vm/iso), or set allow_foreign_paths: true."
                      % (label, path, denied, what))


def _disk_source(disk: dict, label: str, errors: list) -> None:
    """A disk's first content from a prebuilt image (module_utils/image.py checks it, here and on the host)."""
    if disk["source"] is None:
        return
    errors += source_errors(disk["source"], label + ".source", disk["format"])
    if disk["backing_file"] is not None:
        errors.append("%s.source: a disk made from a source has no backing_file; give one or the other." % label)


def _disks(g: dict, spec: dict, name: str, errors: list, var: str) -> None:
    # Disks: sized volumes in libvirt pools, with their target devices.
    g["disks"] = _items(g, "disks", DISK_DEFAULTS, errors, var)
    letters = dict.fromkeys(DISK_CHOICES["bus"], 0)
    seen = set()
    for i, disk in enumerate(g["disks"]):
        label = "%s.disks[%d]" % (var, i)
        if not disk["name"] or "/" in str(disk["name"]) or disk["name"] in (".", ".."):
            errors.append("%s.name: %r is not a file name; give the volume's file name in its pool, such as "
                          "%s.qcow2." % (label, disk["name"], name))
        _ident(disk["pool"], label + ".pool", errors, "pool name")
        if disk["backing_file"] is not None:
            _path(disk["backing_file"], label + ".backing_file", errors, "/mnt/vm/base.qcow2")
            _readable(disk["backing_file"], label + ".backing_file", errors, g, "backing file")
        _disk_source(disk, label, errors)
        if (disk["pool"], disk["name"]) in seen:
            errors.append("%s: %s/%s is listed twice." % (label, disk["pool"], disk["name"]))
        seen.add((disk["pool"], disk["name"]))
        try:
            parse_size(disk["size"] if disk["size"] is not None else "missing")
        except ValueError as exc:
            errors.append("%s.size: %s; give the disk's capacity such as 40G." % (label, exc))
        for key, choices in DISK_CHOICES.items():
            if disk[key] not in choices:
                errors.append("%s.%s: %r is not one of %s." % (label, key, disk[key], ", ".join(choices)))
                if key == "bus":  # the target device below needs a bus
                    disk[key] = DISK_DEFAULTS[key]
        disk["dev"] = _dev("vd" if disk["bus"] == "virtio" else "sd", letters[disk["bus"]])
        letters[disk["bus"]] += 1
        disk["volume"] = {k: disk[k] for k in ("pool", "name", "format", "backing_file", "allow_grow")}
        disk["volume"]["capacity"] = disk["size"]
        if disk["backing_file"]:
            disk["volume"]["backing_format"] = disk["backing_format"]
        else:
            del disk["volume"]["backing_file"]
        if disk["source"]:  # the volume's first content (kvmlab.hypervisor.libvirt_volume's source)
            disk["volume"]["source"] = {k: v for k, v in disk["source"].items() if v is not None}


def _cdroms(g: dict, spec: dict, name: str, errors: list, var: str) -> None:
    # ISO images as cdroms: SATA on q35 (it has no IDE), IDE on i440fx, after the SATA disks.
    sata = sum(1 for d in g["disks"] if d["bus"] == "sata")
    cd_bus = "sata" if g["q35"] else "ide"
    g["cdroms"] = _items(g, "cdroms", CDROM_DEFAULTS, errors, var)
    for i, cd in enumerate(g["cdroms"]):
        _path(cd["path"], "%s.cdroms[%d]" % (var, i), errors, "/mnt/vm/iso/%s.iso" % name)
        _readable(cd["path"], "%s.cdroms[%d]" % (var, i), errors, g, "cdrom")
        cd["bus"] = cd_bus
        cd["dev"] = _dev("sd", sata + i) if cd_bus == "sata" else _dev("hd", i)


def _interfaces(g: dict, spec: dict, name: str, errors: list, var: str) -> None:
    g["interfaces"] = _items(g, "interfaces", INTERFACE_DEFAULTS, errors, var)
    macs = set()
    for i, nic in enumerate(g["interfaces"]):
        nic["mac"] = str(nic["mac"] or guest_mac(name, i)).lower()
        if not MAC_RE.fullmatch(nic["mac"]):
            errors.append("%s.interfaces[%d].mac: %r is not a MAC address such as 52:54:00:12:34:56."
                          % (var, i, nic["mac"]))
        elif int(nic["mac"][:2], 16) & 1:
            errors.append("%s.interfaces[%d].mac: %s is a multicast address; a NIC needs a unicast one (an even "
                          "first byte), such as 52:54:00:12:34:56." % (var, i, nic["mac"]))
        _ident(nic["network"], "%s.interfaces[%d].network" % (var, i), errors, "libvirt network name")
        if nic["mac"] in macs:
            errors.append("%s.interfaces[%d].mac: %s is used twice." % (var, i, nic["mac"]))
        macs.add(nic["mac"])
        for key, choices in INTERFACE_CHOICES.items():
            if nic[key] not in choices:
                errors.append("%s.interfaces[%d].%s: %r is not one of %s."
                              % (var, i, key, nic[key], ", ".join(choices)))

    g["filesystems"] = _items(g, "filesystems", FILESYSTEM_DEFAULTS, errors, var)
    targets = set()
    for i, fs in enumerate(g["filesystems"]):
        label = "%s.filesystems[%d]" % (var, i)
        _path(fs["source"], label + ".source", errors, "/mnt/vm/share")
        source = str(fs["source"])
        system = [d for d in SYSTEM_DIRS
                  if source == d or source.startswith(d + "/") or d.startswith(source.rstrip("/") + "/")]
        if system and not fs["allow_system_dir"]:
            errors.append("%s.source: %s %s the system directory %s; a guest would get write access to it. Share "
                          "a directory of its own (such as /mnt/vm/share), or set allow_system_dir: true."
                          % (label, source, "is" if source == system[0] else "holds or lies in", system[0]))
        if fs["target"] and len(str(fs["target"]).encode("utf-8")) > 36:
            errors.append("%s.target: %r is longer than the 36 bytes of a virtiofs mount tag." % (label, fs["target"]))
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
    if mode not in CPU_PINNING_MODES and (isinstance(mode, bool) or not isinstance(mode, int)
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
    # One of the spec's choices, where true is not 1 and false is not 0.
    if not (isinstance(pages, int)
            and any(pages == c and isinstance(pages, bool) == isinstance(c, bool) for c in HUGEPAGES)):
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
    errors += text_errors({k: v for k, v in spec.items() if k in DEFAULTS and k not in SECRETS}, var)
    for key in SECRETS:  # checked the same way, never shown
        value = spec.get(key)
        if value is not None and (_type_error(value, TYPES[key], var) or text_errors(value, var)):
            errors.append("%s.%s: must be a string without control characters (its value is not shown)."
                          % (var, key))
            spec = dict(spec, **{key: None})
    g = dict(DEFAULTS)
    profile = spec.get("profile")
    g.update(PROFILES.get(profile, {}) if isinstance(profile, str) else {})  # not one: CHOICES says so below
    g.update({k: v for k, v in spec.items() if v is not None and k in DEFAULTS})
    _typed(g, DEFAULTS, errors, var)
    name = g["name"]
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        errors.append("%s.name: %r is not a usable guest name; use letters, digits, '.', '_' or '-' "
                      "(at most 63 characters, starting with a letter or digit)." % (var, name))
        name = str(name)
    for key, choices in CHOICES.items():
        if g[key] not in choices:
            errors.append("%s.%s: %r is not one of %s." % (var, key, g[key], ", ".join(choices)))
    _ident(g["machine"], var + ".machine", errors, "machine type")
    if g["cpu_model"] is not None:
        _ident(g["cpu_model"], var + ".cpu_model", errors, "CPU model")
    _graphics(g, errors, var)
    _sizing(g, errors, var)
    for check in (_firmware, _disks, _cdroms, _interfaces, _pins, _tuning):
        check(g, spec, name, errors, var)
    if g["boot"] is None:
        g["boot"] = ["hd", "cdrom"] if g["cdroms"] else ["hd"]
    elif not all(isinstance(dev, str) for dev in g["boot"]) or not set(g["boot"]) <= set(BOOT_DEVICES):
        errors.append("%s.boot: %r must be a list of %s." % (var, g["boot"], ", ".join(BOOT_DEVICES)))
    return g, errors


def _graphics(g: dict, errors: list, var: str) -> None:
    """The console listens on an IP address; anything but loopback is an explicit choice."""
    if g["graphics"] == "none":
        if g["graphics_password"]:
            errors.append("%s.graphics_password: this guest has no console (graphics: none)." % var)
        return
    if g["graphics"] == "vnc" and g["graphics_password"] and len(g["graphics_password"]) > 8:
        errors.append("%s.graphics_password: VNC uses at most 8 characters of a password; give one of 8 or fewer, "
                      "or use spice." % var)
    try:
        address = ipaddress.ip_address(g["graphics_listen"])
    except ValueError:
        errors.append("%s.graphics_listen: %r is not an IP address; give one such as 127.0.0.1 (this host only)."
                      % (var, g["graphics_listen"]))
        return
    if not address.is_loopback and not g["graphics_public"]:
        errors.append("%s.graphics_listen: %s puts the %s console on the network%s; keep 127.0.0.1 and tunnel "
                      "through SSH, or set graphics_public: true." % (
                          var, address, g["graphics"], "" if g["graphics_password"] else ", with no password"))


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
    if g["shutdown_timeout"] < 0:
        errors.append("%s.shutdown_timeout: must be a number of seconds (0 or more), got %r."
                      % (var, g["shutdown_timeout"]))
    if g["cpu_mode"] == "custom" and not g["cpu_model"]:
        errors.append("%s.cpu_model: cpu_mode custom needs a CPU model such as qemu64 or Skylake-Client." % var)
