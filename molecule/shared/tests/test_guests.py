"""The seed's three guests, asked of libvirt, QEMU's firmware descriptors and the system."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET

import pytest

V = "virsh -c qemu:///system "
GUESTS = ("win11", "arch", "kali")
UEFI = ("win11", "arch")


def live(host, name: str) -> ET.Element:
    return ET.fromstring(host.check_output(V + "dumpxml " + name))


def inactive(host, name: str) -> ET.Element:
    return ET.fromstring(host.check_output(V + "dumpxml --inactive " + name))


def descriptor_of(host, os_el: ET.Element) -> dict:
    """The QEMU firmware descriptor libvirt picked for a guest: its code file and NVRAM template
    (a distribution's, or the one kvmlab.hypervisor.firmware_enrolled_keys built)."""
    loader, template = os_el.findtext("loader"), os_el.find("nvram").get("template")
    paths = host.check_output("find /etc/qemu/firmware /usr/share/qemu/firmware -type f 2>/dev/null || true").split()
    for path in paths:
        desc = json.loads(host.file(path).content_string)
        mapping = desc.get("mapping", {})
        if (mapping.get("executable", {}).get("filename"), mapping.get("nvram-template", {}).get("filename")) == (
                loader, template):
            return desc
    raise AssertionError("no firmware descriptor has the executable %s and template %s" % (loader, template))


@pytest.mark.parametrize("name", GUESTS)
def test_guest_running(host, name):
    assert host.check_output(V + "domstate " + name) == "running"


def test_virt_types(host):
    # Per DESIGN.md: UEFI guests under TCG in this container, the BIOS guest under KVM.
    assert live(host, "kali").get("type") == "kvm"
    assert "-accel kvm" in host.check_output("pgrep -af guest=kali")
    for name in UEFI:
        assert live(host, name).get("type") == "qemu"


@pytest.mark.parametrize("name", UEFI)
def test_uefi_secure_boot_with_enrolled_keys(host, name):
    os_el = live(host, name).find("os")
    loader = os_el.find("loader")
    assert loader is not None and loader.get("type") == "pflash"
    assert loader.get("secure") == "yes"
    # The firmware libvirt picked is one QEMU describes with Secure Boot and Microsoft's keys.
    features = descriptor_of(host, os_el)["features"]
    assert {"secure-boot", "enrolled-keys", "requires-smm"} <= set(features)
    assert live(host, name).find("features/smm").get("state") == "on"
    assert inactive(host, name).find("os").get("firmware") == "efi"


def test_bios_guest_has_no_uefi(host):
    os_el = live(host, "kali").find("os")
    assert os_el.find("loader") is None and os_el.find("nvram") is None
    assert os_el.get("firmware") in (None, "bios")


@pytest.mark.parametrize(("name", "path"), [("win11", "/mnt/vm/win11_SECURE_VARS.fd"),
                                            ("arch", "/var/lib/libvirt/qemu/nvram/arch_VARS.fd")])
def test_nvram(host, name, path):
    nvram = live(host, name).find("os/nvram")
    assert nvram.text == path
    f = host.file(path)
    assert f.is_file
    assert f.mode & 0o007 == 0, "NVRAM must not be world-readable"
    # Created from the vars template that goes with the firmware (same size as the template).
    template = descriptor_of(host, live(host, name).find("os"))["mapping"]["nvram-template"]["filename"]
    assert f.size == host.file(template).size


def test_tpm_external_as_on_the_seed(host):
    tpm = live(host, "win11").find("devices/tpm")
    assert tpm.get("model") == "tpm-crb"
    backend = tpm.find("backend")
    assert backend.get("type") == "external"
    assert backend.find("source").get("path") == "/mnt/vm/swtpm-sock"
    assert host.service("kvmlab-swtpm-win11.socket").is_enabled
    assert host.service("kvmlab-swtpm-win11.service").is_running
    # TPM 2.0: swtpm runs with --tpm2 and keeps TPM 2 state, not world-readable.
    args = host.check_output("ps -o args= -C swtpm")
    assert "--tpm2" in args and "dir=/mnt/vm/tpm" in args
    state = host.file("/mnt/vm/tpm/tpm2-00.permall")
    assert state.user == "tss" and state.mode == 0o600
    assert host.file("/mnt/vm/tpm").mode & 0o007 == 0


@pytest.mark.parametrize("name", ("arch", "kali"))
def test_no_tpm(host, name):
    assert live(host, name).find("devices/tpm") is None


@pytest.mark.parametrize("name", GUESTS)
def test_spice_on_localhost_only(host, name):
    graphics = live(host, name).find("devices/graphics")
    assert graphics.get("type") == "spice"
    port = graphics.get("port")
    assert host.check_output(V + "domdisplay " + name).startswith("spice://127.0.0.1:" + port)
    listeners = host.check_output("ss -Hltn sport = :%s" % port).splitlines()
    assert listeners, "nothing listens on the SPICE port"
    assert all(line.split()[3] == "127.0.0.1:" + port for line in listeners), listeners


def test_virtiofs_share(host):
    dom = live(host, "win11")
    fs = dom.find("devices/filesystem")
    assert fs.find("driver").get("type") == "virtiofs"
    assert fs.find("source").get("dir") == "/mnt/vm/share"
    assert fs.find("target").get("dir") == "share"
    assert dom.find("memoryBacking/source").get("type") == "memfd"
    assert dom.find("memoryBacking/access").get("mode") == "shared"
    # QEMU's C virtiofsd (Debian 12) takes -o source=, the Rust one (Debian 13, Arch) --shared-dir.
    args = host.check_output("ps -o args= -C virtiofsd")
    assert "source=/mnt/vm/share" in args or "--shared-dir /mnt/vm/share" in args, args
    for name in ("arch", "kali"):
        assert live(host, name).find("devices/filesystem") is None


@pytest.mark.parametrize("name", GUESTS)
def test_deterministic_mac_and_virtio(host, name):
    expected = "52:54:00:" + ":".join("%02x" % b for b in hashlib.sha256(("%s/0" % name).encode()).digest()[:3])
    rows = [line.split() for line in host.check_output(V + "domiflist " + name).splitlines()[2:] if line.strip()]
    assert [(r[2], r[3], r[4]) for r in rows] == [("default", "virtio", expected)]
    disks = live(host, name).findall("devices/disk[@device='disk']/target")
    assert [(d.get("dev"), d.get("bus")) for d in disks] == [("vda", "virtio")]


def test_win11_mac_matches_its_reservation(host):
    mac = live(host, "win11").find("devices/interface/mac").get("address")
    net = ET.fromstring(host.check_output(V + "net-dumpxml default"))
    assert net.find("ip/dhcp/host[@ip='192.168.122.136']").get("mac") == mac


@pytest.mark.parametrize("name", GUESTS)
def test_missing_iso_leaves_an_empty_sata_cdrom(host, name):
    cdrom = live(host, name).find("devices/disk[@device='cdrom']")
    assert cdrom.find("target").get("bus") == "sata"
    assert cdrom.find("source") is None or not cdrom.find("source").get("file")


def test_disks_in_their_pools(host):
    assert "win11.qcow2" in host.check_output(V + "vol-list vm")
    assert "arch-vm-minimal.qcow2" in host.check_output(V + "vol-list default")
    info = json.loads(host.check_output("qemu-img info -U --output=json /var/lib/libvirt/images/arch-vm-minimal.qcow2"))
    assert info["virtual-size"] == 69 * 2**30


def test_windows_profile(host):
    dom = live(host, "win11")
    assert dom.find("features/hyperv/relaxed").get("state") == "on"
    assert dom.find("clock").get("offset") == "localtime"
    assert dom.find("clock/timer[@name='hypervclock']").get("present") == "yes"
    assert live(host, "kali").find("features/hyperv") is None


def cpulist(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.strip().split(","):
        lo, _dash, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def affinity(host, command: str) -> dict:
    """virsh vcpupin/emulatorpin/iothreadinfo output: first column -> CPU list."""
    rows = host.check_output(V + command).splitlines()[2:]
    return {r.split()[0].rstrip(":"): r.split()[-1] for r in rows if r.strip()}


def test_win11_pins_come_from_the_topology(host):
    """The demo pins win11's vCPU with cpu_pinning: auto: off the housekeeping core (CPU 0 and
    its SMT siblings, read here from sysfs), with the emulator and I/O thread on it."""
    online = cpulist(host.file("/sys/devices/system/cpu/online").content_string)
    first = min(online)
    housekeeping = cpulist(host.file("/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list"
                                     % first).content_string)
    free = sorted(online - housekeeping)
    assert affinity(host, "vcpupin win11") == {"0": str(free[0])}
    hk = ",".join(str(c) for c in sorted(housekeeping))
    assert cpulist(affinity(host, "emulatorpin win11")["*"]) == housekeeping, hk
    assert cpulist(affinity(host, "iothreadinfo win11")["1"]) == housekeeping, hk
    # The running QEMU's vCPU thread really is confined there.
    mask = "".join("y" if cpu == free[0] else "-" for cpu in range(max(online) + 1))
    assert "CPU Affinity:   " + mask in host.check_output(V + "vcpuinfo win11")
    for name in ("arch", "kali"):
        assert affinity(host, "vcpupin " + name)["0"] == "0-%d" % max(online)


def test_qemu_and_swtpm_run_unprivileged(host):
    """Every QEMU runs as libvirt-qemu, never root; the external swtpm as tss; and the guests'
    NVRAM and TPM state are readable by no one else."""
    qemu = host.check_output("ps -o uid= -C qemu-system-x86_64").split()
    assert len(qemu) == len(GUESTS), qemu
    assert set(qemu) == {host.check_output("id -u libvirt-qemu")} != {"0"}, qemu
    assert set(host.check_output("ps -o uid= -C swtpm").split()) == {host.check_output("id -u tss")}
    for path in ("/mnt/vm/win11_SECURE_VARS.fd", "/var/lib/libvirt/qemu/nvram/arch_VARS.fd",
                 "/mnt/vm/tpm/tpm2-00.permall"):
        assert host.file(path).mode & 0o077 == 0, path
    assert host.file("/mnt/vm/tpm/tpm2-00.permall").user == "tss"
