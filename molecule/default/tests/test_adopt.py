"""Adopting a guest that virt-install defined: a spec of the same name takes it over, keeping
its MAC and disk, and libvirt's libosinfo <metadata> comes back byte-identical (lxml keeps its
prefix; ElementTree wrote it back as ns0)."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET

import pytest

V = "virsh -c qemu:///system "
MAC = "52:54:00:5a:d0:07"


def metadata(xml: str) -> str:
    """The serialised <metadata> block, exactly as libvirt wrote it."""
    found = re.findall(r"<metadata>.*?</metadata>", xml, re.S)
    assert len(found) == 1, xml
    return found[0]


@pytest.fixture
def name(host):
    """A fresh guest name; whatever the test leaves is purged."""
    value = "a%s" % uuid.uuid4().hex[:6]
    yield value
    host.run("%sdestroy %s; %sundefine %s --nvram --tpm --remove-all-storage" % (V, value, V, value))
    host.run("rm -f /mnt/vm/%s* /var/lib/libvirt/qemu/nvram/%s* /tmp/%s.xml" % (value, value, value))


def test_a_virt_install_guest_is_adopted_keeping_its_metadata_mac_and_disk(host, guest, name):
    # virt-install comes with the host role (Debian: virtinst). The disk exists before the spec.
    assert host.run("command -v virt-install").rc == 0, "virt-install (virtinst) is not installed"
    host.run_test(V + "vol-create-as vm %s.qcow2 64M --format qcow2" % name)
    disk = host.check_output(V + "vol-path --pool vm %s.qcow2" % name)
    printed = host.run(
        "virt-install --connect qemu:///system --print-xml --name %s --osinfo win11 --virt-type qemu"
        " --memory 256 --vcpus 1 --cpu maximum"
        " --boot uefi,firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes,"
        "firmware.feature1.name=enrolled-keys,firmware.feature1.enabled=yes"
        " --disk path=%s,bus=virtio,format=qcow2 --network network=default,mac=%s,model=e1000e"
        " --graphics none --video none --tpm none --noautoconsole > /tmp/%s.xml" % (name, disk, MAC, name))
    assert printed.rc == 0, printed.stderr
    host.run_test(V + "define /tmp/%s.xml" % name)
    before = host.check_output(V + "dumpxml --inactive " + name)
    assert "libosinfo:os" in metadata(before) and "http://microsoft.com/win/11" in metadata(before)

    spec = {"name": name, "state": "shutdown", "virt_type": "qemu", "cpu_mode": "maximum", "memory": "256M",
            "vcpus": 1, "firmware": "uefi", "secure_boot": True, "enrolled_keys": True, "windows": True,
            "graphics": "none", "video": "none", "disks": [{"name": name + ".qcow2", "pool": "vm", "size": "64M"}],
            "interfaces": [{"network": "default", "mac": MAC}]}
    run = guest(spec, "--diff")
    assert run.rc == 0 and run.changed > 0, run
    assert "+++ after: guest %s: the definition to apply" % name in run.stdout, run

    after = host.check_output(V + "dumpxml --inactive " + name)
    assert metadata(after) == metadata(before)
    assert "ns0" not in after
    root, old = ET.fromstring(after), ET.fromstring(before)
    assert root.findtext("uuid") == old.findtext("uuid")
    nics = root.findall("devices/interface")
    assert [n.find("mac").get("address") for n in nics] == [MAC]
    assert nics[0].find("model").get("type") == "virtio"  # the spec's model: it owns the NIC
    assert [s.get("file") for s in root.findall("devices/disk[@device='disk']/source")] == [disk]
    assert host.run("test -s %s" % disk).rc == 0

    again = guest(spec)
    assert again.rc == 0 and again.changed == 0, again
    assert host.check_output(V + "dumpxml --inactive " + name) == after

    gone = guest(dict(spec, state="absent", purge=True, force_stop=True, shutdown_timeout=1))
    assert gone.rc == 0, gone
    assert host.run(V + "dominfo " + name).rc != 0
