"""All guests of a site resolved together: collisions name both owners, pins are joint, and every
string a spec can hold either reaches the domain XML verbatim or is refused naming its field."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import read_topology
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils import site as site_module
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.guest import (
    CDROM_DEFAULTS,
    DEFAULTS,
    DISK_DEFAULTS,
    FILESYSTEM_DEFAULTS,
    INTERFACE_DEFAULTS,
    TYPES,
    guest_mac,
    normalize,
)
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.site import resolve

from ..module_utils import sysfs

ROOT = Path(__file__).resolve().parents[4]
POOLS = [{"name": "vm", "path": "/mnt/vm"}, {"name": "iso", "path": "/mnt/vm/iso"},
         {"name": "default", "path": "/var/lib/libvirt/images"}]


def spec_of(vm: str) -> dict:
    role = ROOT / "examples" / "workstation" / "roles" / ("vm_" + vm)
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    spec = defaults["vm_%s_guest" % vm]
    if vm == "kali":
        spec = yaml.safe_load(yaml.safe_dump(spec).replace("{{ vm_kali_release }}", defaults["vm_kali_release"]))
    return spec


def small(name: str, **fields) -> dict:
    return dict({"name": name, "firmware": "bios", "disks": [{"name": name + ".qcow2", "size": "1G"}]}, **fields)


def errors_of(specs: list, **context) -> list[str]:
    return resolve(specs, dict({"pools": POOLS}, **context))[1]


def test_the_seed_site_resolves_with_xml_and_disk_paths():
    guests, errors = resolve([spec_of("win11"), spec_of("arch"), spec_of("kali")], {"pools": POOLS})
    assert errors == []
    assert [g["disks"][0]["path"] for g in guests] == [
        "/mnt/vm/win11.qcow2", "/var/lib/libvirt/images/arch-vm-minimal.qcow2",
        "/mnt/vm/kali-linux-2025.3-qemu-amd64.qcow2"]
    assert all(ET.fromstring(g["xml"]).findtext("name") == g["name"] for g in guests)


@pytest.mark.parametrize(("specs", "message"), [
    ([small("a"), small("b", disks=[{"name": "a.qcow2", "size": "1G"}])],
     "kvmlab_guests[b].disks[0]: /mnt/vm/a.qcow2 is already the disk of guest a; two guests must never share a disk."),
    ([small("a", firmware="uefi", nvram="/mnt/vm/x.fd"), small("b", firmware="uefi", nvram="/mnt/vm/x.fd")],
     "kvmlab_guests[b].nvram: /mnt/vm/x.fd is already the NVRAM file of guest a"),
    ([small("a", firmware="uefi"), small("b", firmware="uefi", nvram="/var/lib/libvirt/qemu/nvram/a_VARS.fd")],
     "kvmlab_guests[b].nvram: /var/lib/libvirt/qemu/nvram/a_VARS.fd is already the NVRAM file of guest a"),
    ([small("a", tpm="external"), small("b", tpm="external", tpm_state_dir="/mnt/vm/tpm-b")],
     "kvmlab_guests[b].tpm_socket: /mnt/vm/swtpm-sock is already the TPM socket of guest a"),
    ([small("a", tpm="external"), small("b", tpm="external", tpm_socket="/mnt/vm/b.sock")],
     "kvmlab_guests[b].tpm_state_dir: /mnt/vm/tpm is already the TPM state directory of guest a"),
    ([small("a"), small("b", interfaces=[{"mac": "52:54:00:19:bf:38"}])],
     "is already the MAC of guest a"),
    ([small("a"), small("b", cdroms=["/mnt/vm/a.qcow2"])],
     "kvmlab_guests[b].cdroms[0]: /mnt/vm/a.qcow2 is the disk of guest a; a cdrom must be an ISO image"),
    ([small("a"), small("b", filesystems=[{"source": "/mnt/vm", "target": "t"}])],
     "kvmlab_guests[b].filesystems[0].source: /mnt/vm holds /mnt/vm/a.qcow2, the disk of guest a"),
    ([small("a"), small("a")], "kvmlab_guests[a].name: two specs define the guest a"),
    ([small("a", disks=[{"name": "a.qcow2", "size": "1G", "pool": "nope"}])],
     "kvmlab_guests[a].disks[0].pool: 'nope' is neither in kvmlab_storage_pools nor a libvirt pool"),
    ([small("a", firmware="uefi", nvram="/srv/a.fd")],
     "kvmlab_guests[a].nvram: /srv/a.fd lies outside the storage mount, the pools and libvirt's directories"),
    ([small("a", tpm="external", tpm_state_dir="/srv/tpm")], "kvmlab_guests[a].tpm_state_dir: /srv/tpm lies outside"),
])
def test_collisions_and_foreign_paths_are_named(specs, message):
    if "MAC of guest a" in message:  # a's first interface gets guest_mac("a", 0)
        specs[1]["interfaces"] = [{"mac": guest_mac("a", 0)}]
    errors = errors_of(specs)
    assert any(message in e for e in errors), errors


def test_opt_ins_accept_what_they_name():
    assert errors_of([small("a", firmware="uefi", nvram="/srv/a.fd", allow_foreign_paths=True)]) == []
    assert errors_of([small("a"), small("b", filesystems=[{"source": "/mnt/vm", "target": "t",
                                                          "allow_system_dir": True}])]) == []


def test_guests_libvirt_has_count_too():
    topology = {"domains": {"ghost": {"files": ["/mnt/vm/g.qcow2"], "macs": ["52:54:00:AA:BB:CC"]},
                            "a": {"files": ["/mnt/vm/a.qcow2"], "macs": []}}}
    errors = errors_of([small("a"), small("b", disks=[{"name": "g.qcow2", "size": "1G"}],
                                          interfaces=[{"mac": "52:54:00:aa:bb:cc"}])], topology=topology)
    assert errors == [
        "kvmlab_guests[b].disks[0]: /mnt/vm/g.qcow2 is already the file of guest ghost (defined in libvirt, not in the "
        "inventory); two guests must never share a disk.",
        "kvmlab_guests[b].interfaces[0].mac: 52:54:00:aa:bb:cc is already the MAC of guest ghost (defined in libvirt, "
        "not in the inventory); two guests must never share a MAC."]
    # Its own old definition (a) is no other owner; libvirt's pools give paths too.
    assert errors_of([small("a")], topology=topology) == []
    assert resolve([small("a", disks=[{"name": "a.qcow2", "size": "1G", "pool": "p"}])],
                   {"topology": {"pools": {"p": "/srv/p"}}})[0][0]["disks"][0]["path"] == "/srv/p/a.qcow2"


def test_mac_reserved_for_another_name():
    networks = [{"name": "default", "hosts": [{"name": "printer", "mac": "52:54:00:00:00:0a", "ip": "1.2.3.4"}]}]
    errors = errors_of([small("a", interfaces=[{"mac": "52:54:00:00:00:0a"}])], networks=networks)
    assert errors == ["kvmlab_guests[a].interfaces[0].mac: 52:54:00:00:00:0a is reserved for printer in "
                      "kvmlab_networks[default].hosts; give this guest another MAC."]
    networks[0]["hosts"][0]["name"] = "a"
    assert errors_of([small("a", interfaces=[{"mac": "52:54:00:00:00:0a"}])], networks=networks) == []


def test_pins_are_computed_jointly(tmp_path):
    topology = read_topology(**sysfs.smt_desktop(tmp_path, cores=4))  # housekeeping core 0: CPUs 0,4
    topology.update(pinned={"other": [1, 5]})  # a guest libvirt has, not in the inventory
    guests, errors = resolve([small("a", vcpus=2, cpu_pinning="auto"), small("b", vcpus=1, cpu_pinning="auto"),
                              small("c", vcpus=1, cpu_pins={0: "2"})], {"pools": POOLS, "topology": topology})
    assert errors == []
    # Explicit pins first (c on 2), then a on the whole free core 3+7, then b on what is left.
    assert {g["name"]: g["pins"]["cpus"] for g in guests} == {"a": [3, 7], "b": [6], "c": [2]}
    # A third auto guest finds nothing left and is named.
    errors = resolve([small("a", vcpus=2, cpu_pinning="auto"), small("b", vcpus=2, cpu_pinning="auto"),
                      small("d", vcpus=2, cpu_pinning="auto")], {"pools": POOLS, "topology": topology})[1]
    assert len(errors) == 1 and errors[0].startswith("kvmlab_guests[d].cpu_pinning: guest d: 2 vCPUs to pin, but only")


# Every string field of a spec, with where it sits (top level or in a list item).
STRING_FIELDS = [k for k in DEFAULTS if TYPES.get(k) in (str, (str, int))] + [
    "%s.%s" % (kind, k) for kind, defaults in (("disks", DISK_DEFAULTS), ("interfaces", INTERFACE_DEFAULTS),
                                               ("filesystems", FILESYSTEM_DEFAULTS), ("cdroms", CDROM_DEFAULTS))
    for k in defaults if TYPES.get("%s.%s" % (kind, k)) in (str, (str, int))]
# A base guest in which every string field is in use.
BASE = {"name": "q", "firmware": "uefi", "secure_boot": True, "nvram": "/mnt/vm/q.fd", "tpm": "external",
        "tpm_socket": "/mnt/vm/q.sock", "tpm_state_dir": "/mnt/vm/tpm-q", "cpu_mode": "custom",
        "cpu_model": "Nehalem", "emulator_pins": "0", "cpu_housekeeping": "0",
        "disks": [{"name": "q.qcow2", "size": "1G", "backing_file": "/mnt/vm/base.qcow2"}],
        "cdroms": ["/mnt/vm/iso/q.iso"], "interfaces": [{"network": "default", "mac": "52:54:00:01:02:03"}],
        "filesystems": [{"source": "/mnt/vm/share", "target": "share"}]}
HOSTILE = "Tim's \"R&D\" <disk> ü & 'x'/><disk type='file'>"


def with_value(field: str, value) -> dict:
    spec = yaml.safe_load(yaml.safe_dump(BASE))
    if "." in field:
        kind, key = field.split(".")
        item = spec[kind][0]
        if kind == "cdroms":
            spec[kind][0] = {"path": value}
        else:
            item[key] = value
    else:
        spec[field] = value
    return spec


def test_string_fields_cover_the_spec():
    assert len(STRING_FIELDS) >= 20
    assert {"name", "nvram", "tpm_socket", "cdroms.path", "disks.name", "filesystems.source"} <= set(STRING_FIELDS)


@pytest.mark.parametrize("field", STRING_FIELDS)
def test_control_characters_are_refused_in_every_string_field(field):
    spec = with_value(field, "/mnt/vm/a\nExecStartPre=+/bin/sh")
    errors = errors_of([spec])
    label = "kvmlab_guests[q]." + field.replace(".", "[0].").replace("cdroms[0].path", "cdroms[0]")
    if field == "name":  # the guest is then shown by its name's repr
        label = "kvmlab_guests[%r].name" % "/mnt/vm/a\nExecStartPre=+/bin/sh"
    assert any(e.startswith(label) and "control character" in e for e in errors), errors


@pytest.mark.parametrize("field", STRING_FIELDS)
def test_hostile_strings_reach_the_xml_verbatim_or_are_refused_by_name(field):
    """A value full of quotes, '&', '<' and non-ASCII letters: either the checks refuse it, naming
    the field, or it is in the built XML exactly as given and the XML has the structure of the
    base guest (no extra element)."""
    value = "/mnt/vm/" + HOSTILE if field in ("nvram", "tpm_socket", "tpm_state_dir", "cdroms.path",
                                              "disks.backing_file", "filesystems.source") else HOSTILE
    if field == "tpm_socket":
        value = "/mnt/vm/Tim's \"R&D\" <s> ü"
    guests, errors = resolve([with_value(field, value)], {"pools": POOLS})
    short = field.split(".")[-1] if field != "cdroms.path" else "cdroms[0]"
    if errors:
        assert all(short in e for e in errors), errors
        return
    base = ET.fromstring(resolve([BASE], {"pools": POOLS})[0][0]["xml"])
    root = ET.fromstring(guests[0]["xml"])
    assert [el.tag for el in root.iter()] == [el.tag for el in base.iter()]
    values = [v for el in root.iter() for v in [*el.attrib.values(), el.text or ""]]
    if field == "disks.name":
        value = "/mnt/vm/" + value
    if field in ("tpm_state_dir", "disks.backing_file", "graphics_password"):
        # Not in the XML: the swtpm unit, the volume and the module (no_log) use them.
        assert value not in values
    else:
        assert value in values, (field, values)


@pytest.mark.parametrize(("fields", "message"), [
    ({"graphics": "vnc", "graphics_password": "123456789"}, "kvmlab_guests[q].graphics_password: VNC uses at most 8"),
    ({"graphics": "none", "graphics_password": "x"}, "kvmlab_guests[q].graphics_password: this guest has no console"),
    ({"graphics_listen": "192.168.1.5"}, "kvmlab_guests[q].graphics_listen: 192.168.1.5 puts the spice console on the "
                                         "network, with no password; keep 127.0.0.1"),
])
def test_console_mistakes_are_named(fields, message):
    errors = errors_of([dict(small("q"), **fields)])
    assert any(e.startswith(message) for e in errors), errors
    assert errors_of([dict(small("q"), graphics_listen="192.168.1.5", graphics_public=True,
                           graphics_password="s3cret")]) == []


def test_a_value_xml_cannot_carry_is_an_error_naming_guest_and_field(monkeypatch):
    """Should a check ever let such a value through, the builder's refusal is a named mistake,
    not a parse error or a traceback."""
    def lax(spec, label):
        return dict(normalize(spec, label)[0], cpu_model="a\x01b"), []

    monkeypatch.setattr(site_module, "normalize", lax)
    errors = resolve([small("a", cpu_mode="custom", cpu_model="x")], {"pools": POOLS})[1]
    assert errors == ["kvmlab_guests[a]: guest a: cpu_model holds a character that cannot go into its libvirt XML: "
                      "'a\\x01b'"]


@pytest.mark.parametrize("password", ["s3cr\net", 12345678, ["s3cret"]])
def test_a_bad_password_is_named_but_never_shown(password):
    errors = errors_of([dict(small("q"), graphics_password=password)])
    assert errors == ["kvmlab_guests[q].graphics_password: must be a string without control characters (its value "
                      "is not shown)."]


@pytest.mark.parametrize(("state", "message"), [
    ("/mnt/vm", "kvmlab_guests[q].tpm_state_dir: /mnt/vm is or holds /mnt/vm, which swtpm's unit would hand to tss"),
    ("/mnt", "kvmlab_guests[q].tpm_state_dir: /mnt is or holds /mnt/vm"),
    ("/mnt/vm/iso", "kvmlab_guests[q].tpm_state_dir: /mnt/vm/iso is or holds /mnt/vm/iso"),
])
def test_tpm_state_is_a_directory_of_its_own(state, message):
    errors = errors_of([small("q", tpm="external", tpm_socket="/mnt/vm/q.sock", tpm_state_dir=state,
                              allow_foreign_paths=True)])
    assert any(e.startswith(message) for e in errors), errors


def test_tpm_state_must_not_hold_another_guests_data():
    errors = errors_of([small("a", disks=[{"name": "a.qcow2", "size": "1G", "pool": "vm"}]),
                        small("b", tpm="external", tpm_socket="/mnt/vm/b.sock", tpm_state_dir="/mnt/vm/t",
                              disks=[]),
                        small("c", firmware="uefi", nvram="/mnt/vm/t/c.fd", disks=[])])
    assert errors == ["kvmlab_guests[b].tpm_state_dir: /mnt/vm/t holds /mnt/vm/t/c.fd, the NVRAM file of guest c; give "
                      "the TPM state a directory of its own."]


def systemd_unquote(text: str) -> list[str]:
    """Words of a unit file setting as systemd reads them (double quotes, \\ escapes, %% and $$)."""
    words, word, quoted, i = [], None, False, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and quoted:
            word, i = (word or "") + text[i + 1], i + 2
            continue
        if char == '"':
            quoted, word = not quoted, word or ""
        elif char == " " and not quoted:
            if word is not None:
                words.append(word)
            word = None
        else:
            word = (word or "") + char
        i += 1
    if word is not None:
        words.append(word)
    return [w.replace("%%", "%").replace("$$", "$") for w in words]


def test_external_tpm_units_carry_hostile_paths_verbatim():
    sock, state = "/mnt/vm/Tim's \"R&D\" %h $HOME ü.sock", "/mnt/vm/tpm/Tim's \"R&D\" %i $X ü"
    guests, errors = resolve([small("q", tpm="external", tpm_socket=sock, tpm_state_dir=state)], {"pools": POOLS})
    assert errors == []
    units = {u["name"]: dict(line.split("=", 1) for line in u["content"].splitlines() if "=" in line)
             for u in guests[0]["units"]}
    socket_unit, service = units["kvmlab-swtpm-q.socket"], units["kvmlab-swtpm-q.service"]
    assert socket_unit["ListenStream"].replace("%%", "%") == sock
    assert systemd_unquote(socket_unit["RequiresMountsFor"]) == ["/mnt/vm"]
    assert systemd_unquote(service["RequiresMountsFor"]) == [state]
    argv = systemd_unquote(service["ExecStart"])
    assert argv[argv.index("--tpmstate") + 1] == "dir=%s,mode=0600" % state
    assert systemd_unquote(service["ExecStartPre"])[-1] == state


def test_no_units_without_an_external_tpm_and_a_socket_systemd_would_strip_is_named():
    guests, errors = resolve([small("q"), small("r", tpm="emulator")], {"pools": POOLS})
    assert errors == [] and [g["units"] for g in guests] == [[], []]
    errors = errors_of([small("q", tpm="external", tpm_socket="/mnt/vm/q.sock ")])
    assert errors == ["kvmlab_guests[q].tpm_socket: '/mnt/vm/q.sock ' starts or ends with white space, which systemd "
                      "strips; choose another path."], errors


HOST = {"online": list(range(8)), "memory": {"total_kib": 16 * 1024 * 1024},
        "filesystems": {"/mnt/vm": {"size": 100 * 1024 ** 3, "free": 90 * 1024 ** 3}}}


@pytest.mark.parametrize(("reserve", "specs", "message"), [
    ({"cpus": 6}, [small("a", vcpus=2), small("b", vcpus=1)],
     "kvmlab_host_reserve.cpus: the guests ask for 3 vCPUs together, but the host has 8 threads and keeps 6 "
     "for itself, "
     "leaving 2; give the guests fewer vCPUs, lower kvmlab_host_reserve.cpus, or set "
     "kvmlab_host_reserve.overcommit_cpus: true."),
    ({"memory": "12G"}, [small("a", memory="3G"), small("b", memory="2G")],
     "kvmlab_host_reserve.memory: the guests ask for 5.0G of memory together, but the host has 16.0G and "
     "keeps 12.0G for "
     "itself, leaving 4.0G; give the guests less memory or lower kvmlab_host_reserve.memory."),
    ({"storage": "60G"}, [small("a", disks=[{"name": "a.qcow2", "size": "30G"}]),
                          small("b", disks=[{"name": "b.qcow2", "size": "20G"}])],
     "kvmlab_host_reserve.storage: the guests' disks hold up to 50.0G together, but the filesystem of /mnt/vm "
     "has 100.0G "
     "and keeps 60.0G for the host, leaving 40.0G; give the guests smaller disks or lower "
     "kvmlab_host_reserve.storage."),
    ({"cpu": 6}, [small("a")], "kvmlab_host_reserve: must be a mapping with the keys cpus, memory, storage, "
                               "overcommit_cpus, got {'cpu': 6}."),
])
def test_the_host_reserve_bounds_the_guests_together(reserve, specs, message):
    assert errors_of(specs, topology=HOST, reserve=reserve) == [message]


def test_within_the_reserve_overcommit_and_absent_guests_pass():
    fits = [small("a", vcpus=2, memory="4G"), small("b", vcpus=6, memory="8G", state="absent")]
    assert errors_of(fits, topology=HOST, reserve={"cpus": 6, "memory": "12G", "storage": "99G"}) == []
    many = [small("a", vcpus=8), small("b", vcpus=8)]
    assert errors_of(many, topology=HOST, reserve={"cpus": 6, "overcommit_cpus": True}) == []
    # Before the host is read (a first check run), nothing is known, so nothing is refused.
    assert errors_of(many, reserve={"cpus": 6, "memory": "64G", "storage": "2T"}) == []


def test_the_seeds_guests_fit_the_seeds_reserve():
    seed = {"online": list(range(20)), "memory": {"total_kib": 64 * 1024 * 1024},
            "filesystems": {"/mnt/vm": {"size": 2 * 1024 ** 4, "free": 2 * 1024 ** 4}}}
    workstation = ROOT / "examples" / "workstation" / "inventories" / "workstation"
    inventory = yaml.safe_load((workstation / "group_vars" / "hypervisors.yml").read_text())
    assert inventory["kvmlab_host_reserve"] == {"cpus": 6, "memory": "16G", "storage": "500G"}
    specs = [spec_of("win11"), spec_of("arch"), spec_of("kali")]
    assert site_module.reserve_errors(resolve(specs, {"pools": POOLS})[0], inventory["kvmlab_host_reserve"], seed,
                                      "/mnt/vm") == []


@pytest.mark.parametrize("group", ["kvm\nExecStartPre=/bin/sh", "k vm", "", "Kvm"])
def test_the_swtpm_socket_group_cannot_change_the_unit(group):
    errors = errors_of([small("q", tpm="external")], swtpm_group=group)
    expected = "kvmlab_guests[q]: kvmlab_guest_swtpm_socket_group: %r is not a group name" % group
    assert len(errors) == 1 and errors[0].startswith(expected), errors


def test_each_guest_owns_libvirts_nvram_file_of_its_name():
    """What purge may delete and reset_nvram replace: its disks and its NVRAM file; a BIOS guest
    too owns the NVRAM file libvirt keeps for its name (left from a UEFI past, which a switch to
    BIOS with reset_nvram backs up), and no other guest's."""
    specs = [small("a"), small("b", firmware="uefi"), small("c", firmware="uefi", nvram="/mnt/vm/c_VARS.fd")]
    guests, errors = resolve(specs, {"pools": POOLS})
    assert errors == []
    assert {g["name"]: g["owned_paths"] for g in guests} == {
        "a": ["/mnt/vm/a.qcow2", "/var/lib/libvirt/qemu/nvram/a_VARS.fd"],
        "b": ["/mnt/vm/b.qcow2", "/var/lib/libvirt/qemu/nvram/b_VARS.fd"],
        "c": ["/mnt/vm/c.qcow2", "/mnt/vm/c_VARS.fd"]}


@pytest.mark.parametrize(("fields", "message"), [
    ({"cdroms": ["/dev/sda"]}, r"kvmlab_guests\[a\]\.cdroms\[0\]: /dev/sda lies in /dev; a guest would read host data"),
    ({"cdroms": ["/etc/shadow"]}, r"cdroms\[0\]: /etc/shadow lies in /etc"),
    ({"cdroms": ["/var/lib/libvirt/qemu/nvram/b_VARS.fd"]}, r"lies in /var/lib/libvirt/qemu"),
    ({"disks": [{"name": "a.qcow2", "size": "1G", "backing_file": "/dev/vg0/root"}]},
     r"disks\[0\]\.backing_file: /dev/vg0/root lies in /dev; .* as its backing file"),
    ({"disks": [{"name": "a.qcow2", "size": "1G", "backing_file": "/mnt/vm/b.qcow2"}]},
     r"disks\[0\]\.backing_file: /mnt/vm/b\.qcow2 is the disk of guest b; a backing file must be a base image"),
])
def test_cdroms_and_backing_files_never_read_system_places_or_guest_data(fields, message):
    errors = errors_of([small("a", **fields), small("b")])
    assert len(errors) == 1 and re.search(message, errors[0]), errors


def test_cdroms_from_distributions_and_the_opt_in_pass():
    assert errors_of([small("a", cdroms=["/usr/share/virtio-win/virtio-win.iso"])]) == []
    assert errors_of([small("a", cdroms=["/dev/sr0"], allow_foreign_paths=True)]) == []
