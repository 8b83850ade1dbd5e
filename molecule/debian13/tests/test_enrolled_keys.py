"""Secure Boot with Microsoft's keys on a host whose firmware ships none (Arch's edk2-ovmf, played
here by Debian 13 with its enrolled-keys descriptor and variable store diverted away, see
prepare.yml): the host role enrols them with virt-fw-vars into a template of its own and
installs a descriptor that libvirt picks for win11 and arch."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

V = "virsh -c qemu:///system "
OURS = "/etc/qemu/firmware/45-kvmlab-edk2-x86_64-secure-enrolled.json"
TEMPLATE = "/var/lib/kvmlab/firmware/OVMF_VARS_4M.ms.fd"
DEBIAN_SECURE = "/usr/share/qemu/firmware/50-edk2-x86_64-secure.json"


def runs() -> list[dict]:
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_host_has_no_enrolled_keys_from_its_firmware_package(host):
    # What makes this host Arch-like: no file in the firmware directories offers enrolled keys
    # except the collection's own.
    paths = host.check_output("find /etc/qemu/firmware /usr/share/qemu/firmware -type f").split()
    enrolled = [p for p in paths if "enrolled-keys" in json.loads(host.file(p).content_string)["features"]]
    assert enrolled == [OURS]
    assert "40-edk2-x86_64-secure-enrolled.json" in host.check_output("dpkg-divert --list")
    assert not host.file("/usr/share/OVMF/OVMF_VARS_4M.ms.fd").exists


def test_the_descriptor_points_at_the_built_template_and_the_distributions_code(host):
    ours = json.loads(host.file(OURS).content_string)
    debian = json.loads(host.file(DEBIAN_SECURE).content_string)
    assert {"secure-boot", "enrolled-keys", "requires-smm"} <= set(ours["features"])
    assert ours["mapping"]["executable"] == debian["mapping"]["executable"]
    assert ours["mapping"]["nvram-template"]["filename"] == TEMPLATE
    assert ours["targets"] == debian["targets"]
    template = host.file(TEMPLATE)
    assert template.is_file and template.user == "root" and template.mode == 0o644
    assert template.size == host.file(debian["mapping"]["nvram-template"]["filename"]).size


def test_the_template_holds_microsofts_keys_with_secure_boot_on(host):
    out = host.check_output("virt-fw-vars --input %s --print --verbose 2>&1" % TEMPLATE)
    assert "Microsoft Corporation KEK CA 2011" in out
    assert "Microsoft Windows Production PCA 2011" in out
    assert "SecureBootEnable    : bool: ON" in host.check_output("virt-fw-vars --input %s --print 2>&1" % TEMPLATE)


@pytest.mark.parametrize(("name", "nvram"), [("win11", "/mnt/vm/win11_SECURE_VARS.fd"),
                                             ("arch", "/var/lib/libvirt/qemu/nvram/arch_VARS.fd")])
def test_the_guests_nvram_was_made_from_it_and_holds_the_microsoft_kek(host, name, nvram):
    os_el = ET.fromstring(host.check_output(V + "dumpxml " + name)).find("os")
    assert os_el.find("nvram").get("template") == TEMPLATE
    assert os_el.find("nvram").text == nvram
    assert os_el.findtext("loader") == "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
    out = host.check_output("virt-fw-vars --input %s --print --verbose 2>&1" % nvram)
    assert "Microsoft Corporation KEK CA 2011" in out


def test_built_once_and_not_again():
    converges = [r for r in runs() if r["playbook"] == "converge.yml" and not r["check_mode"]]
    task = "kvmlab.hypervisor.host : Offer UEFI Secure Boot with Microsoft's keys enrolled"
    assert task in converges[0]["changed"]
    # Molecule's idempotence run (and any later one) neither rebuilds nor even asks: host_info
    # found the template current.
    assert len(converges) >= 2
    assert all(task not in r["changed"] and task not in r["by_task"] for r in converges[1:])


def test_the_module_reports_current_and_writes_nothing(host):
    before = host.check_output("stat -c %%Y:%%s %s %s" % (OURS, TEMPLATE))
    result = host.ansible("kvmlab.hypervisor.firmware_enrolled_keys", "", check=False, become=False)
    assert result["changed"] is False and result["state"] == "current"
    assert host.check_output("stat -c %%Y:%%s %s %s" % (OURS, TEMPLATE)) == before
