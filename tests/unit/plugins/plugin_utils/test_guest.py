"""The guest spec: defaults, derived values, every mistake named; the domain XML built from the
VM roles' specs against libvirt's real dumpxml of the same guests."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from ansible_collections.kvmlab.hypervisor.plugins.filter.guest_errors import guest_errors
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_merge as dx
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.image import COMPRESSIONS, SOURCE_KEYS
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import read_topology
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.guest import (
    DEFAULTS,
    DISK_DEFAULTS,
    PROFILES,
    guest_mac,
    normalize,
)
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.site import resolve
from demo_site import demo_overrides

from ..module_utils import sysfs

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = Path(__file__).parents[1] / "module_utils" / "fixtures" / "domain"


def spec_of(vm: str) -> dict:
    role = ROOT / "examples" / "workstation" / "roles" / ("vm_" + vm)
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    spec = defaults["vm_%s_guest" % vm]
    if vm == "kali":  # the one templated value in the VM roles' defaults
        spec = yaml.safe_load(yaml.safe_dump(spec).replace("{{ vm_kali_release }}", defaults["vm_kali_release"]))
    return spec


def demo(vm: str) -> dict:
    """A seed guest with the demo inventory's overrides, as the scenarios default and debian13
    resolve them (demo_guest_os_enabled false: the disks have no source)."""
    return dict(spec_of(vm), **demo_overrides().get(vm, {}))


CI_2CPU = Path(__file__).parents[1] / "module_utils" / "fixtures" / "sysfs-ci-2cpu"


POOLS = [{"name": "vm", "path": "/mnt/vm"}, {"name": "default", "path": "/var/lib/libvirt/images"}]


def render(spec: dict, topology: dict | None = None) -> str:
    """The role's domain XML: the spec resolved as the site resolves it, pins (if asked for) from
    `topology`, by default this CI machine's."""
    if normalize(spec)[0]["pinned"]:
        topology = topology or read_topology(str(CI_2CPU / "cpu"), str(CI_2CPU / "node"), "/nonexistent",
                                             "/nonexistent")
    guests, errors = resolve([spec], {"topology": topology, "pools": POOLS, "single": True})
    assert errors == []
    return guests[0]["xml"]


def empty_cdroms(xml: str) -> str:
    """What libvirt_domain defines when the ISOs are missing."""
    root = ET.fromstring(xml)
    for disk in root.findall("devices/disk[@device='cdrom']"):
        disk.remove(disk.find("source"))
    return ET.tostring(root, encoding="unicode")


def test_defaults_match_the_roles_argument_specs():
    specs = yaml.safe_load((ROOT / "roles/guest/meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]["kvmlab_guests"]["options"]
    assert set(options) == set(DEFAULTS)
    for key, option in options.items():
        assert option.get("default") == DEFAULTS[key], key


def test_seed_specs_are_valid_and_filled_in():
    win11, errors = normalize(spec_of("win11"))
    assert errors == []
    assert win11["memory_kib"] == 16 * 1024 * 1024
    assert (win11["cpu_cores"], win11["cpu_threads"]) == (3, 2)
    assert win11["interfaces"] == [{"network": "default", "mac": "52:54:00:ab:93:44", "model": "virtio",
                                    "boot_rom": True}]
    assert [(d["dev"], d["bus"]) for d in win11["disks"]] == [("vda", "virtio")]
    assert [(c["dev"], c["bus"]) for c in win11["cdroms"]] == [("sda", "sata"), ("sdb", "sata")]
    assert win11["boot"] == ["hd", "cdrom"]
    assert win11["disks"][0]["volume"] == {"pool": "vm", "name": "win11.qcow2", "format": "qcow2",
                                           "allow_grow": False, "capacity": "40G"}
    kali, errors = normalize(spec_of("kali"))
    assert errors == [] and kali["enrolled_keys"] is False and kali["firmware"] == "bios"


def test_mac_is_the_filters():
    assert guest_mac("win11") == "52:54:00:ab:93:44"


@pytest.mark.parametrize(("change", "message"), [
    ({"name": "bad name"}, "guest_spec.name: 'bad name' is not a usable guest name"),
    ({"memory": "lots"}, "guest_spec.memory: not a size: 'lots'"),
    ({"memory": "16M"}, "guest_spec.memory: 16M is below 64M"),
    ({"vcpus": 0}, "guest_spec.vcpus: must be a whole number from 1 to 512, got 0"),
    ({"cpu_threads": 4}, "guest_spec.cpu_threads: 4 must be a whole number that divides vcpus (6)"),
    ({"firmware": "efi"}, "guest_spec.firmware: 'efi' is not one of uefi, bios"),
    ({"firmware": "bios"}, "guest_spec.secure_boot: needs firmware uefi; this guest has firmware bios"),
    ({"machine": "pc"}, "guest_spec.machine: Secure Boot needs the q35 machine (for SMM), got 'pc'"),
    ({"secure_boot": False}, "guest_spec.enrolled_keys: enrolled keys only make sense with secure_boot: true"),
    ({"nvram": "win11.fd"}, "guest_spec.nvram: 'win11.fd' is not an absolute path"),
    ({"tpm": "2.0"}, "guest_spec.tpm: '2.0' is not one of none, emulator, external"),
    ({"tpm_socket": "sock"}, "guest_spec.tpm_socket: 'sock' is not an absolute path"),
    ({"disks": [{"name": "a.qcow2"}]}, "guest_spec.disks[0].size: not a size: 'missing'"),
    ({"disks": [{"name": "a.qcow2", "size": "1G"}, {"name": "a.qcow2", "size": "1G"}]},
     "guest_spec.disks[1]: vm/a.qcow2 is listed twice"),
    ({"disks": [{"name": "a.qcow2", "size": "1G", "bus": "ide"}]}, "guest_spec.disks[0].bus: 'ide' is not one of"),
    ({"disks": [{"name": "a.qcow2", "size": "1G", "sise": "2G"}]}, "guest_spec.disks[0].sise: unknown field"),
    ({"cdroms": ["Win11.iso"]}, "guest_spec.cdroms[0]: 'Win11.iso' is not an absolute path"),
    ({"interfaces": [{"mac": "52:54:00:zz:00:01"}]}, "guest_spec.interfaces[0].mac: '52:54:00:zz:00:01' is not"),
    ({"interfaces": [{"mac": "52:54:00:00:00:01"}, {"mac": "52:54:00:00:00:01"}]},
     "guest_spec.interfaces[1].mac: 52:54:00:00:00:01 is used twice"),
    ({"filesystems": [{"source": "share", "target": "s"}]}, "guest_spec.filesystems[0].source: 'share' is not"),
    ({"filesystems": [{"source": "/a", "target": "s"}, {"source": "/b", "target": "s"}]},
     "guest_spec.filesystems[1].target: 's' is used twice"),
    ({"cpu_pins": {6: "2"}}, "guest_spec.cpu_pins: 6: '2' is not a vCPU (0-5)"),
    ({"cpu_pins": {0: "x"}}, "guest_spec.cpu_pins: 0: 'x' is not a vCPU (0-5)"),
    ({"emulator_pins": "0-"}, "guest_spec.emulator_pins: '0-' is not a host CPU list"),
    ({"state": "stopped"}, "guest_spec.state: 'stopped' is not one of running, shutdown, absent"),
    ({"purge": "yes"}, "guest_spec.purge: must be true or false, got 'yes'"),
    ({"cpu_mode": "custom"}, "guest_spec.cpu_model: cpu_mode custom needs a CPU model"),
    ({"memroy": "8G"}, "guest_spec.memroy: unknown field"),
])
def test_mistakes_are_named(change, message):
    errors = normalize(dict(spec_of("win11"), **change))[1]
    assert any(e.startswith(message) for e in errors), errors


def test_all_mistakes_at_once():
    assert len(normalize({"name": "x", "memory": "lots", "vcpus": "two", "tpm": "yes"})[1]) >= 3
    assert normalize("win11")[1] == ["guest_spec: must be a mapping with at least a name, got 'win11'."]


def test_pins_are_libvirt_cpu_lists():
    g = normalize(dict(spec_of("win11"), cpu_pins={1: "3", 0: "2,3", 2: "5-6"}, emulator_pins="1,0"))[0]
    assert g["vcpupin"] == [{"vcpu": 0, "cpuset": "2-3"}, {"vcpu": 1, "cpuset": "3"}, {"vcpu": 2, "cpuset": "5-6"}]
    assert g["emulator_pins"] == "0-1"


def test_i440fx_cdrom_is_ide():
    g = normalize({"name": "old", "machine": "pc", "firmware": "bios", "cdroms": ["/a.iso"]})[0]
    assert (g["cdroms"][0]["bus"], g["cdroms"][0]["dev"]) == ("ide", "hda")


@pytest.mark.parametrize("vm", ["win11", "arch", "kali"])
def test_rendered_domain_matches_what_libvirt_9_made_of_it(vm):
    """The demo's guests as libvirt 9 holds them (virsh dumpxml --inactive after converge):
    what libvirt added is not drift."""
    current = (FIXTURES / ("site-%s-libvirt9.xml" % vm)).read_text()
    assert dx.differences(empty_cdroms(render(demo(vm))), current) == []
    # The demo host has no ISOs, so libvirt_domain defined empty drives; with the ISOs it differs.
    drives = ["sda", "sdb"] if vm == "win11" else ["sda"]
    assert dx.differences(render(demo(vm)), current) == [
        "domain/devices/disk[%s]/source: missing, would be added" % dev for dev in drives]


def test_seed_win11_renders_the_seed_features(tmp_path):
    root = ET.fromstring(render(spec_of("win11"), topology=read_topology(**sysfs.hybrid_laptop(tmp_path))))
    assert [p.get("cpuset") for p in root.findall("cputune/vcpupin")] == ["2", "3", "4", "5", "6", "7"]
    assert root.get("type") == "kvm"
    assert root.find("cpu").get("mode") == "host-passthrough"
    assert root.find("os").get("firmware") == "efi"
    assert {f.get("name"): f.get("enabled") for f in root.findall("os/firmware/feature")} == {
        "secure-boot": "yes", "enrolled-keys": "yes"}
    assert root.findtext("os/nvram") == "/mnt/vm/win11_SECURE_VARS.fd"
    assert root.find("features/smm").get("state") == "on"
    assert root.find("features/hyperv/synic") is not None  # KVM: the full set
    assert root.find("devices/tpm/backend").get("type") == "external"
    assert root.find("devices/graphics/listen").get("address") == "127.0.0.1"
    assert root.find("devices/filesystem/driver").get("type") == "virtiofs"
    assert root.find("memoryBacking/source").get("type") == "memfd"
    assert root.find("devices/disk/source").get("file") == "/mnt/vm/win11.qcow2"


def test_tcg_windows_leaves_out_the_kvm_only_enlightenments():
    root = ET.fromstring(render(demo("win11")))
    assert root.find("features/hyperv/relaxed") is not None
    for name in ("vpindex", "synic", "stimer"):
        assert root.find("features/hyperv/" + name) is None


def test_bios_guest_renders_no_uefi_and_no_nic_rom_when_asked():
    root = ET.fromstring(render(demo("kali")))
    assert root.find("os").get("firmware") is None and root.find("os/nvram") is None
    assert root.find("devices/interface/rom").get("enabled") == "no"
    assert dx.firmware(render(demo("kali"))) == "bios"
    assert dx.firmware(render(demo("win11"))) == "uefi+secure-boot+enrolled-keys"
    assert dx.firmware(render(dict(demo("arch"), secure_boot=False, enrolled_keys=False))) == "uefi"


def test_unpinning_and_windows_off_are_differences():
    pinned = empty_cdroms(render(dict(demo("kali"), cpu_pins={0: "1"}, emulator_pins="0")))
    current = dx.merge(pinned, (FIXTURES / "site-kali-libvirt9.xml").read_text())
    assert dx.differences(pinned, current) == []
    plain = empty_cdroms(render(demo("kali")))
    assert dx.differences(plain, current) == ["domain/cputune/vcpupin[0]: not in the spec, would be removed",
                                              "domain/cputune/emulatorpin: not in the spec, would be removed"]
    assert dx.differences(plain, dx.merge(plain, current)) == []

    windows = (FIXTURES / "site-win11-libvirt9.xml").read_text()
    linux = empty_cdroms(render(dict(demo("win11"), windows=False)))
    diffs = dx.differences(linux, windows)
    assert "domain/features/hyperv: not in the spec, would be removed" in diffs
    assert "domain/clock/timer[hypervclock]: not in the spec, would be removed" in diffs


def test_computed_pins_reach_the_domain(tmp_path):
    topology = read_topology(**sysfs.hybrid_laptop(tmp_path))
    spec = dict(spec_of("win11"), cpu_pinning="auto", iothreads=1)
    root = ET.fromstring(render(spec, topology=topology))
    assert [(p.get("vcpu"), p.get("cpuset")) for p in root.findall("cputune/vcpupin")] == [
        (str(i), str(cpu)) for i, cpu in enumerate(range(2, 8))]
    assert root.find("cputune/emulatorpin").get("cpuset") == "0-1"
    assert root.find("cputune/iothreadpin").get("cpuset") == "0-1"
    assert root.findtext("iothreads") == "1"
    assert root.find("devices/disk/driver").get("iothread") == "1"
    assert root.find("cpu/topology").attrib == {"sockets": "1", "dies": "1", "cores": "3", "threads": "2"}


@pytest.mark.parametrize(("change", "message"), [
    ({"cpu_pinning": 7}, "guest_spec.cpu_pinning: 7 must be none, auto"),
    ({"cpu_pinning": "auto", "cpu_pins": {0: "2"}}, "guest_spec.cpu_pinning: give either cpu_pinning"),
    ({"iothreads": -1}, "guest_spec.iothreads: must be a number from 0 to 16"),
    ({"hugepages": 4096}, "guest_spec.hugepages: 4096 must be true"),
    ({"hugepages": True}, "guest_spec.hugepages: virtiofs needs memfd shared memory"),
    ({"cpu_housekeeping": "zero"}, "guest_spec.cpu_housekeeping: 'zero' is not a host CPU list"),
])
def test_tuning_mistakes_are_named(change, message):
    errors = normalize(dict(spec_of("win11"), **change))[1]
    assert any(e.startswith(message) for e in errors), errors


def test_hugepages_render_a_page_size():
    root = ET.fromstring(render(dict(demo("kali"), hugepages=True)))
    assert root.find("memoryBacking/hugepages/page").attrib == {"size": "2048", "unit": "KiB"}


def test_host_errors_name_what_the_host_lacks(tmp_path):
    two = read_topology(**sysfs.smt_desktop(tmp_path, cores=1))  # 1 core, 2 threads: CPU 0 and 1
    two["memory"] = {"total_kib": 8 * 1024 * 1024, "available_kib": 0}
    two.update(pinned={}, pools={"vm": "/mnt/vm"})
    seed = dict(spec_of("win11"), cpu_pinning="auto")
    errors = guest_errors(seed, topology=two)
    assert errors[0] == ("guest_spec.memory: guest win11 asks for 16G, but the host has 8.0G in total; "
                         "give it less memory.")
    assert errors[1].startswith("guest_spec.cpu_pinning: guest win11: 6 vCPUs to pin, but only 0 CPUs are free")
    assert guest_errors(seed) == []  # without a topology, only the spec is checked

    four = read_topology(**sysfs.smt_desktop(tmp_path / "four", cores=2))  # siblings 0+2, 1+3
    four.update(memory={"total_kib": 8 * 1024 * 1024}, pinned={}, pools={"vm": "/mnt/vm"})
    small = dict(seed, memory="2G", vcpus=1, cpu_threads=1)
    assert guest_errors(small, topology=four) == []
    four["pinned"] = {"other": [1, 3], "win11": [1]}  # its own old pins do not count
    assert guest_errors(small, topology=four) == [
        "guest_spec.cpu_pinning: guest win11: 1 vCPUs to pin, but only 0 CPUs are free outside the housekeeping "
        "CPUs (0,2) and those of other: none. Pin fewer vCPUs or free CPUs."]


def test_dropping_virtiofs_hugepages_and_iothreads_is_a_difference(tmp_path):
    topology = read_topology(**sysfs.hybrid_laptop(tmp_path))
    tuned = render(dict(spec_of("win11"), iothreads=1), topology=topology)
    current = dx.merge(tuned, (FIXTURES / "site-win11-libvirt9.xml").read_text())
    assert dx.differences(tuned, current) == []
    plain = render(dict(spec_of("win11"), iothreads=0, filesystems=[], cpu_pinning="none"), topology=topology)
    diffs = dx.differences(plain, current)
    assert "domain/memoryBacking: not in the spec, would be removed" in diffs
    assert "domain/iothreads: not in the spec, would be removed" in diffs
    assert "domain/devices/disk[vda]/driver@iothread: '1' -> None" in diffs
    merged = dx.merge(plain, current)
    assert dx.differences(plain, merged) == []
    root = ET.fromstring(merged)
    assert root.find("memoryBacking") is None and root.find("iothreads") is None
    assert root.find("devices/disk/driver").get("iothread") is None


SUM = "sha256:" + "a" * 64
ARCH_URL = "https://geo.mirror.pkgbuild.com/images/latest/Arch-Linux-x86_64-basic.qcow2"


def test_disk_options_match_the_roles_argument_specs():
    specs = yaml.safe_load((ROOT / "roles/guest/meta/argument_specs.yml").read_text())
    disks = specs["argument_specs"]["main"]["options"]["kvmlab_guests"]["options"]["disks"]["options"]
    assert set(disks) == set(DISK_DEFAULTS)
    source = disks["source"]["options"]
    assert set(source) == set(SOURCE_KEYS)
    assert source["compression"]["choices"] == list(COMPRESSIONS)


def test_a_disk_source_reaches_its_volume():
    disk = {"name": "arch.qcow2", "size": "40G", "source": {"url": ARCH_URL, "checksum": SUM, "format": None}}
    g, errors = normalize({"name": "arch", "disks": [disk]})
    assert errors == []
    assert g["disks"][0]["volume"] == {"pool": "vm", "name": "arch.qcow2", "format": "qcow2", "allow_grow": False,
                                       "capacity": "40G", "source": {"url": ARCH_URL, "checksum": SUM}}


@pytest.mark.parametrize(("source", "message"), [
    ({"url": ARCH_URL, "path": "/mnt/vm/iso/a.qcow2", "checksum": SUM}, "guest_spec.disks[0].source: give either"),
    ({"checksum": SUM}, "guest_spec.disks[0].source: give either url (http or https) or path"),
    ({"url": "ftp://x/a.qcow2", "checksum": SUM}, "guest_spec.disks[0].source.url: 'ftp://x/a.qcow2' is not an"),
    ({"path": "iso/a.qcow2", "checksum": SUM}, "guest_spec.disks[0].source.path: 'iso/a.qcow2' is not an absolute"),
    ({"url": ARCH_URL}, "guest_spec.disks[0].source.checksum: None is not a checksum"),
    ({"url": ARCH_URL, "checksum": "md5:" + "a" * 32}, "guest_spec.disks[0].source.checksum: 'md5:"),
    ({"url": ARCH_URL, "checksum": SUM, "format": "raw"}, "guest_spec.disks[0].source.format: the image is raw"),
    ({"url": ARCH_URL, "checksum": SUM, "compression": "zip"}, "guest_spec.disks[0].source.compression: 'zip'"),
    ({"url": ARCH_URL, "checksum": SUM, "mirror": "x"}, "guest_spec.disks[0].source.mirror: unknown field"),
    (ARCH_URL, "guest_spec.disks[0].source: must be a mapping, got"),
])
def test_source_mistakes_are_named(source, message):
    errors = normalize({"name": "arch", "disks": [{"name": "arch.qcow2", "size": "40G", "source": source}]})[1]
    assert any(e.startswith(message) for e in errors), errors


def test_source_and_backing_file_are_refused_together():
    disk = {"name": "a.qcow2", "size": "1G", "backing_file": "/mnt/vm/base.qcow2",
            "source": {"path": "/mnt/vm/iso/a.qcow2", "checksum": SUM}}
    errors = normalize({"name": "a", "disks": [disk]})[1]
    assert errors == ["guest_spec.disks[0].source: a disk made from a source has no backing_file; give one or the "
                      "other."]


@pytest.mark.parametrize("key", ["url", "path", "checksum"])
def test_control_characters_in_a_source_are_refused_by_name(key):
    source = {"path": "/mnt/vm/iso/a.qcow2", "checksum": SUM}
    source[key] = (ARCH_URL if key == "url" else source.get(key, "")) + "\nx"
    if key == "url":
        del source["path"]
    errors = normalize({"name": "a", "disks": [{"name": "a.qcow2", "size": "1G", "source": source}]})[1]
    assert any(e.startswith("guest_spec.disks[0].source.%s: " % key) and "control character" in e
               for e in errors), errors


def test_hostile_source_strings_pass_verbatim():
    url = "https://example.org/Tim's \"R&D\" ü/Arch Linux & co.qcow2.xz"
    path = "/mnt/vm/iso/Tim's \"R&D\" ü & co.7z"
    for source in ({"url": url, "checksum": SUM}, {"path": path, "checksum": SUM}):
        g, errors = normalize({"name": "a", "disks": [{"name": "a.qcow2", "size": "1G", "source": source}]})
        assert errors == [] and g["disks"][0]["volume"]["source"] == source


def test_the_windows11_profile_is_documented_as_it_is_applied():
    """Every value the profile sets is named in the field's description, and no other."""
    specs = yaml.safe_load((ROOT / "roles/guest/meta/argument_specs.yml").read_text())
    field = specs["argument_specs"]["main"]["options"]["kvmlab_guests"]["options"]["profile"]
    assert field["choices"] == list(PROFILES)
    text = " ".join(field["description"])
    documented = {}
    for key, value in re.findall(r"C\((\w+)=([^)]+)\)", text):
        documented[key] = yaml.safe_load(value)
    assert documented == PROFILES["windows11"]


def test_a_windows11_guest_gets_the_profile_and_keeps_what_its_spec_says():
    g, errors = normalize({"name": "w", "profile": "windows11", "memory": "8G",
                           "disks": [{"name": "w.qcow2", "size": "64G"}]})
    assert errors == []
    assert (g["firmware"], g["secure_boot"], g["enrolled_keys"], g["tpm"], g["windows"], g["vcpus"]) == (
        "uefi", True, True, "emulator", True, 2)
    assert g["memory"] == "8G"  # the spec wins
    root = ET.fromstring(render({"name": "w", "profile": "windows11", "disks": [{"name": "w.qcow2", "size": "64G"}]}))
    assert root.find("os").get("firmware") == "efi"
    assert {f.get("name"): f.get("enabled") for f in root.findall("os/firmware/feature")} == {
        "secure-boot": "yes", "enrolled-keys": "yes"}
    assert root.find("features/smm").get("state") == "on"
    assert root.find("features/hyperv/synic") is not None
    assert root.find("clock").get("offset") == "localtime"
    assert (root.find("devices/tpm/backend").get("type"), root.find("devices/tpm/backend").get("version")) == (
        "emulator", "2.0")
    assert root.find("devices/interface/mac") is not None  # from its name, as for any guest


def test_an_override_can_set_or_drop_the_profile():
    spec = {"name": "w", "disks": [{"name": "w.qcow2", "size": "64G"}]}
    guests, errors = resolve([spec], {"overrides": {"w": {"profile": "windows11", "tpm": "none"}}, "pools": POOLS})
    assert errors == [] and guests[0]["secure_boot"] is True and guests[0]["tpm"] == "none"
    dropped = {"overrides": {"w": {"profile": "none"}}, "pools": POOLS}
    guests, errors = resolve([dict(spec, profile="windows11")], dropped)
    assert errors == [] and guests[0]["secure_boot"] is False and guests[0]["windows"] is False


@pytest.mark.parametrize(("profile", "message"), [
    ("windows10", "guest_spec.profile: 'windows10' is not one of none, windows11."),
    ("", "guest_spec.profile: '' is not one of none, windows11."),
    (["windows11"], "guest_spec.profile: must be a string, got ['windows11']."),
])
def test_an_unknown_profile_is_named_with_the_choices(profile, message):
    assert message in normalize({"name": "w", "profile": profile})[1]
