"""The guest spec: defaults, derived values, every mistake named; the domain template rendered
from the VM roles' specs against libvirt's real dumpxml of the same guests."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_xml as dx
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.guest import DEFAULTS, guest_mac, normalize

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = Path(__file__).parent / "fixtures" / "domain"


def spec_of(vm: str) -> dict:
    defaults = yaml.safe_load((ROOT / "roles" / ("vm_" + vm) / "defaults" / "main.yml").read_text())
    spec = defaults["vm_%s_guest" % vm]
    if vm == "kali":  # the one templated value in the VM roles' defaults
        spec = yaml.safe_load(yaml.safe_dump(spec).replace("{{ vm_kali_release }}", defaults["vm_kali_release"]))
    return spec


def demo(vm: str) -> dict:
    overrides = yaml.safe_load((ROOT / "inventories/demo/group_vars/hypervisors.yml").read_text())["guest_overrides"]
    return dict(spec_of(vm), **overrides.get(vm, {}))


def render(spec: dict, paths: dict | None = None) -> str:
    g, errors = normalize(spec)
    assert errors == []
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROOT / "roles/guest/templates")),
                             trim_blocks=True, undefined=jinja2.StrictUndefined)
    if paths is None:
        pools = {"vm": "/mnt/vm", "default": "/var/lib/libvirt/images"}
        paths = {d["pool"] + "/" + d["name"]: pools[d["pool"]] + "/" + d["name"] for d in g["disks"]}
    return env.get_template("domain.xml.j2").render(guest__resolved=g, __guest_volume_paths=paths)


def empty_cdroms(xml: str) -> str:
    """What libvirt_domain defines when the ISOs are missing."""
    root = ET.fromstring(xml)
    for disk in root.findall("devices/disk[@device='cdrom']"):
        disk.remove(disk.find("source"))
    return ET.tostring(root, encoding="unicode")


def test_defaults_match_the_roles_argument_specs():
    specs = yaml.safe_load((ROOT / "roles/guest/meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]["guest_spec"]["options"]
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
    assert [(c["dev"], c["bus"]) for c in win11["cdroms"]] == [("sda", "sata")]
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
    ({"nvram": "win11.fd"}, "guest_spec.nvram: 'win11.fd' is relative"),
    ({"tpm": "2.0"}, "guest_spec.tpm: '2.0' is not one of none, emulator, external"),
    ({"tpm_socket": "sock"}, "guest_spec.tpm_socket: 'sock' is relative"),
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
    # The demo host has no ISOs, so libvirt_domain defined empty drives; with the ISO it differs.
    assert dx.differences(render(demo(vm)), current) == ["domain/devices/disk[sda]/source: missing, would be added"]


def test_seed_win11_renders_the_seed_features():
    root = ET.fromstring(render(spec_of("win11")))
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
