# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libvirt domain XML of one guest, built as a tree from its resolved spec.

Built, not templated: every spec value becomes an attribute value or a text node through the XML
library, so no value (a file name with quotes, '&' or '<', a path carrying "'/><disk ...>") can
change the document's structure. Values XML cannot carry at all (control characters) are refused
by the spec checks; should one get here anyway, ValueError names the guest and the field.

Only what is built here is owned by the spec: libvirt's additions (uuid, PCI addresses,
controllers, the firmware files it selected, ...) are kept on every redefinition
(module_utils/domain_merge.py).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class _Builder:
    def __init__(self, g: dict):
        self.g = g

    def value(self, value, field: str) -> str:
        text = str(value)
        if _NOT_XML.search(text) or "\n" in text or "\r" in text or "\t" in text:
            raise ValueError("guest %s: %s holds a character that cannot go into its libvirt XML: %r"
                             % (self.g.get("name"), field, text))
        return text

    def sub(self, parent: ET.Element, tag: str, text=None, field: str = "", **attrs) -> ET.Element:
        el = ET.SubElement(parent, tag, {k.rstrip("_").replace("__", "-"): self.value(v, field or k)
                                         for k, v in attrs.items() if v is not None})
        if text is not None:
            el.text = self.value(text, field or tag)
        return el


def _memory(b: _Builder, root: ET.Element, g: dict) -> None:
    b.sub(root, "memory", g["memory_kib"], "memory", unit="KiB")
    b.sub(root, "currentMemory", g["memory_kib"], "memory", unit="KiB")
    if g["filesystems"]:
        # virtiofs needs the guest's RAM shared with virtiofsd.
        backing = b.sub(root, "memoryBacking")
        b.sub(backing, "source", type="memfd")
        b.sub(backing, "access", mode="shared")
    elif g["hugepages"]:
        backing = b.sub(root, "memoryBacking")
        b.sub(b.sub(backing, "hugepages"), "page", size=g["hugepages"], unit="KiB", field="hugepages")


def _cputune(b: _Builder, root: ET.Element, g: dict) -> None:
    # Pins: computed from the host's topology (cpu_pinning) or explicit (cpu_pins), both checked;
    # emulator and I/O threads on the housekeeping CPUs unless emulator_pins says otherwise.
    pins = g.get("pins") or {}
    tune = b.sub(root, "cputune")
    for pin in pins.get("vcpupin") or g["vcpupin"]:
        b.sub(tune, "vcpupin", vcpu=pin["vcpu"], cpuset=pin["cpuset"], field="cpu_pins")
    if g["emulator_pins"] or pins:
        b.sub(tune, "emulatorpin", cpuset=g["emulator_pins"] or pins["emulatorpin"], field="emulator_pins")
    if pins:
        for thread in range(1, g["iothreads"] + 1):
            b.sub(tune, "iothreadpin", iothread=thread, cpuset=g["emulator_pins"] or pins["iothreadpin"],
                  field="emulator_pins")


def _os(b: _Builder, root: ET.Element, g: dict) -> None:
    if g["firmware"] == "uefi":
        # libvirt picks the firmware from QEMU's descriptors (Debian ovmf, Arch edk2-ovmf) and
        # creates the NVRAM once from the matching vars template.
        os_el = b.sub(root, "os", firmware="efi")
        b.sub(os_el, "type", "hvm", arch="x86_64", machine=g["machine"], field="machine")
        fw = b.sub(os_el, "firmware")
        b.sub(fw, "feature", enabled="yes" if g["enrolled_keys"] else "no", name="enrolled-keys")
        b.sub(fw, "feature", enabled="yes" if g["secure_boot"] else "no", name="secure-boot")
        if g["nvram"]:
            b.sub(os_el, "nvram", g["nvram"], "nvram")
    else:
        os_el = b.sub(root, "os")
        b.sub(os_el, "type", "hvm", arch="x86_64", machine=g["machine"], field="machine")
    for dev in g["boot"]:
        b.sub(os_el, "boot", dev=dev, field="boot")


def _features(b: _Builder, root: ET.Element, g: dict) -> None:
    features = b.sub(root, "features")
    b.sub(features, "acpi")
    b.sub(features, "apic")
    if g["windows"]:
        # The Hyper-V enlightenments Windows uses for timers, spinlocks and interrupts. vpindex,
        # synic and stimer need KVM: QEMU's TCG refuses them.
        hyperv = b.sub(features, "hyperv", mode="custom")
        b.sub(hyperv, "relaxed", state="on")
        b.sub(hyperv, "vapic", state="on")
        b.sub(hyperv, "spinlocks", state="on", retries="8191")
        if g["virt_type"] == "kvm":
            for name in ("vpindex", "synic", "stimer"):
                b.sub(hyperv, name, state="on")
        for name in ("runtime", "reset", "frequencies"):
            b.sub(hyperv, name, state="on")
    if g["secure_boot"]:
        b.sub(features, "smm", state="on")


def _cpu(b: _Builder, root: ET.Element, g: dict) -> None:
    pins = g.get("pins") or {}
    if g["cpu_pinning"] == "auto" and pins:
        topology = pins["topology"]
    else:
        topology = {"cores": g["cpu_cores"], "threads": g["cpu_threads"]}
    if g["cpu_mode"] == "custom":
        cpu = b.sub(root, "cpu", mode="custom", match="exact")
        b.sub(cpu, "model", g["cpu_model"], "cpu_model", fallback="allow")
    else:
        cpu = b.sub(root, "cpu", mode=g["cpu_mode"], field="cpu_mode")
    b.sub(cpu, "topology", sockets=1, dies=1, cores=topology["cores"], threads=topology["threads"],
          field="cpu_threads")
    clock = b.sub(root, "clock", offset="localtime" if g["windows"] else "utc")
    b.sub(clock, "timer", name="rtc", tickpolicy="catchup")
    b.sub(clock, "timer", name="pit", tickpolicy="delay")
    b.sub(clock, "timer", name="hpet", present="no")
    if g["windows"]:
        b.sub(clock, "timer", name="hypervclock", present="yes")


def _disks(b: _Builder, devices: ET.Element, g: dict) -> None:
    for i, disk in enumerate(g["disks"]):
        field = "disks[%d]" % i
        el = b.sub(devices, "disk", type="file", device="disk")
        b.sub(el, "driver", name="qemu", type=disk["format"], discard="unmap", iothread=disk.get("iothread"),
              field=field + ".format")
        b.sub(el, "source", file=disk["path"], field=field + ".name")
        b.sub(el, "target", dev=disk["dev"], bus=disk["bus"], field=field + ".bus")
    for i, cd in enumerate(g["cdroms"]):
        # A missing ISO is attached as an empty drive (libvirt_domain warns).
        field = "cdroms[%d]" % i
        el = b.sub(devices, "disk", type="file", device="cdrom")
        b.sub(el, "driver", name="qemu", type="raw")
        b.sub(el, "source", file=cd["path"], field=field)
        b.sub(el, "target", dev=cd["dev"], bus=cd["bus"], field=field)
        b.sub(el, "readonly")


def _network(b: _Builder, devices: ET.Element, g: dict) -> None:
    for i, nic in enumerate(g["interfaces"]):
        field = "interfaces[%d]" % i
        el = b.sub(devices, "interface", type="network")
        b.sub(el, "mac", address=nic["mac"], field=field + ".mac")
        b.sub(el, "source", network=nic["network"], field=field + ".network")
        b.sub(el, "model", type=nic["model"], field=field + ".model")
        if not nic["boot_rom"]:
            b.sub(el, "rom", enabled="no")
    for i, fs in enumerate(g["filesystems"]):
        field = "filesystems[%d]" % i
        el = b.sub(devices, "filesystem", type="mount", accessmode="passthrough")
        b.sub(el, "driver", type="virtiofs")
        b.sub(el, "source", dir=fs["source"], field=field + ".source")
        b.sub(el, "target", dir=fs["target"], field=field + ".target")


def _console(b: _Builder, devices: ET.Element, g: dict) -> None:
    if g["serial_console"]:
        # The console on the first serial port (virsh console), logged by virtlogd, which rotates
        # the file; guest names are plain (NAME_RE), so the path is safe.
        serial = b.sub(devices, "serial", type="pty")
        b.sub(serial, "log", file="/var/log/libvirt/qemu/%s-console.log" % g["name"], append="on", field="name")
        b.sub(serial, "target", port=0)
        console = b.sub(devices, "console", type="pty")
        b.sub(console, "target", type="serial", port=0)
    if g["guest_agent"]:
        channel = b.sub(devices, "channel", type="unix")
        b.sub(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    if g["graphics"] == "spice":
        channel = b.sub(devices, "channel", type="spicevmc")
        b.sub(channel, "target", type="virtio", name="com.redhat.spice.0")
    if g["graphics"] != "none":
        b.sub(devices, "input", type="tablet", bus="usb")
        # libvirt keeps the address in two places; both are owned, so a redefinition that opened
        # one of them (as `virsh edit` can) is repaired in both, and libvirt accepts the result.
        graphics = b.sub(devices, "graphics", type=g["graphics"], autoport="yes", listen=g["graphics_listen"],
                         field="graphics_listen")
        b.sub(graphics, "listen", type="address", address=g["graphics_listen"], field="graphics_listen")
    video = b.sub(devices, "video")
    b.sub(video, "model", type=g["video"], field="video")


def _tpm(b: _Builder, devices: ET.Element, g: dict) -> None:
    if g["tpm"] == "emulator":
        # swtpm started by libvirt; its state lives under /var/lib/libvirt/swtpm/<uuid>.
        tpm = b.sub(devices, "tpm", model="tpm-" + g["tpm_model"], field="tpm_model")
        b.sub(tpm, "backend", type="emulator", version="2.0")
    elif g["tpm"] == "external":
        # swtpm run by kvmlab-swtpm-<name>.service, state in tpm_state_dir.
        tpm = b.sub(devices, "tpm", model="tpm-" + g["tpm_model"], field="tpm_model")
        backend = b.sub(tpm, "backend", type="external")
        b.sub(backend, "source", type="unix", mode="connect", path=g["tpm_socket"], field="tpm_socket")


def render_domain(g: dict) -> str:
    """The domain XML of a resolved guest (plugin_utils/site.py: disks with `path`, `pins`)."""
    b = _Builder(g)
    root = ET.Element("domain", {"type": b.value(g["virt_type"], "virt_type")})
    b.sub(root, "name", g["name"], "name")
    _memory(b, root, g)
    b.sub(root, "vcpu", g["vcpus"], "vcpus", placement="static")
    if g["iothreads"]:
        b.sub(root, "iothreads", g["iothreads"], "iothreads")
    _cputune(b, root, g)
    _os(b, root, g)
    _features(b, root, g)
    _cpu(b, root, g)
    b.sub(root, "on_poweroff", "destroy")
    b.sub(root, "on_reboot", "restart")
    b.sub(root, "on_crash", "destroy")
    pm = b.sub(root, "pm")
    b.sub(pm, "suspend-to-mem", enabled="no")
    b.sub(pm, "suspend-to-disk", enabled="no")
    devices = b.sub(root, "devices")
    _disks(b, devices, g)
    _network(b, devices, g)
    _console(b, devices, g)
    _tpm(b, devices, g)
    rng = b.sub(devices, "rng", model="virtio")
    b.sub(rng, "backend", "/dev/urandom", model="random")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
