"""libvirt_domain against a fake libvirt: which write APIs it calls, and what it never does."""

from __future__ import annotations

import socket
import threading
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_batch, domain_preflight, libvirt_common
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.errors import KvmlabError as Failed
from ansible_collections.kvmlab.hypervisor.plugins.modules import libvirt_domain as mod

FIXTURES = Path(__file__).resolve().parents[1] / "module_utils" / "fixtures" / "domain"
KEEP_NVRAM, KEEP_TPM, NVRAM, TPM = 8, 64, 4, 128


class LibvirtError(Exception):
    def get_error_code(self):
        return 42  # VIR_ERR_NO_DOMAIN


FAKE = types.SimpleNamespace(
    libvirtError=LibvirtError, VIR_ERR_NO_DOMAIN=42, VIR_ERR_NO_STORAGE_POOL=0, VIR_ERR_NO_NETWORK=0,
    VIR_ERR_NO_STORAGE_VOL=0, VIR_DOMAIN_XML_INACTIVE=2, VIR_DOMAIN_DEFINE_VALIDATE=1,
    VIR_DOMAIN_UNDEFINE_MANAGED_SAVE=1, VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA=2, VIR_DOMAIN_UNDEFINE_NVRAM=NVRAM,
    VIR_DOMAIN_UNDEFINE_KEEP_NVRAM=KEEP_NVRAM, VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA=16,
    VIR_DOMAIN_UNDEFINE_TPM=TPM, VIR_DOMAIN_UNDEFINE_KEEP_TPM=KEEP_TPM, VIR_DOMAIN_PAUSED=3,
    VIR_DOMAIN_PMSUSPENDED=7, VIR_DOMAIN_XML_SECURE=1)
CAPS = """<domainCapabilities><machine>pc-q35-7.2</machine><os supported='yes'>
<enum name='firmware'><value>efi</value></enum></os>
<devices><tpm supported='yes'><enum name='backendModel'><value>emulator</value><value>external</value></enum></tpm>
</devices></domainCapabilities>"""
SECURE = {"interface-types": ["uefi"], "features": ["secure-boot", "enrolled-keys", "requires-smm"],
          "targets": [{"architecture": "x86_64", "machines": ["pc-q35-*"]}], "_file": "40-secure-enrolled.json"}
PLAIN = {"interface-types": ["uefi"], "features": [], "targets": [{"architecture": "x86_64", "machines": ["pc-*"]}],
         "_file": "60-plain.json"}


class Module:
    def __init__(self, check_mode=False, **params):
        self.params = dict(name="kali", xml=None, state="running", autostart=False, shutdown_timeout=1,
                           force_stop=False, allow_restart=False, reset_nvram=False, purge=False, owned_paths=[],
                           graphics_password=None,
                           uri="x")
        self.params.update(params)
        self.check_mode = check_mode
        self.warnings: list[str] = []

    def warn(self, msg):
        self.warnings.append(msg)


class Dom:
    def __init__(self, xml, active=False, autostart=False, **state):
        self.xml, self.active, self.auto, self.calls = xml, active, autostart, []
        self.paused = state.get("paused", False)
        self.persistent = state.get("persistent", True)
        self.saved = state.get("saved", False)

    def state(self):
        return [3 if self.paused else 1 if self.active else 5, 0]

    def isPersistent(self):
        return self.persistent

    def resume(self):
        self.calls.append(("resume",))
        self.paused = False

    def name(self):
        return ET.fromstring(self.xml).findtext("name")

    def XMLDesc(self, flags=0):
        return self.xml

    def isActive(self):
        return self.active

    def autostart(self):
        return self.auto

    def setAutostart(self, value):
        self.calls.append(("setAutostart", value))

    def create(self):
        self.calls.append(("create",))
        self.active = True

    def shutdown(self):
        self.calls.append(("shutdown",))

    def destroy(self):
        self.calls.append(("destroy",))
        self.active = False

    def hasManagedSaveImage(self, flags):
        return self.saved

    def undefineFlags(self, flags):
        self.calls.append(("undefineFlags", flags))


class Conn:
    def __init__(self, dom=None, others=()):
        self.dom, self.others, self.calls = dom, list(others), []

    def listAllDomains(self, flags=0):
        return ([self.dom] if self.dom else []) + self.others

    def lookupByName(self, name):
        if self.dom is None:
            raise LibvirtError("no domain")
        return self.dom

    def defineXMLFlags(self, xml, flags):
        self.calls.append(("defineXMLFlags", xml))
        return self.dom or Dom(xml)

    def getDomainCapabilities(self, *args):
        return CAPS

    def storageVolLookupByPath(self, path):
        raise LibvirtError("not in a pool")


@pytest.fixture(autouse=True)
def fake_libvirt(monkeypatch):
    monkeypatch.setattr(libvirt_common, "libvirt", FAKE)
    monkeypatch.setattr(domain_preflight.firmware, "descriptors", lambda dirs=None, skipped=None: [SECURE, PLAIN])
    monkeypatch.setattr(domain_preflight, "os_family", lambda: "debian")


def desired_from(current: str, edit=None) -> str:
    """A desired XML: libvirt's, stripped of what libvirt adds (so it is a subset), optionally edited."""
    root = ET.fromstring(current)
    root.remove(root.find("uuid"))
    if edit:
        edit(root)
    return ET.tostring(root, encoding="unicode")


def test_converged_guest_calls_no_write_api():
    current = (FIXTURES / "site-kali-libvirt9.xml").read_text()
    dom = Dom(current, active=True)
    conn = Conn(dom)
    module = Module(xml=desired_from(current))
    result = mod.present(module, conn, dom, "kali")
    assert result["changed"] is False and result["actions"] == []
    assert conn.calls == [] and dom.calls == []


def test_new_guest_is_defined_with_a_deterministic_uuid_and_started():
    desired = desired_from((FIXTURES / "site-kali-libvirt9.xml").read_text())
    conn = Conn()
    result = mod.present(Module(xml=desired), conn, None, "kali")
    assert result["actions"] == ["define", "start"]
    defined = ET.fromstring(conn.calls[0][1])
    assert defined.findtext("uuid") == "%s" % mod.uuid.uuid5(mod.UUID_NAMESPACE, "kali")


def test_check_mode_predicts_and_writes_nothing():
    current = (FIXTURES / "site-kali-libvirt9.xml").read_text()
    dom = Dom(current, active=False)
    conn = Conn(dom)
    bigger = desired_from(current, lambda r: r.find("memory").__setattr__("text", "4194304"))
    result = mod.present(Module(check_mode=True, xml=bigger, autostart=True), conn, dom, "kali")
    assert result["actions"] == ["redefine", "autostart_on", "start"]
    assert result["differences"] == ["domain/memory: '2097152' -> '4194304'"]
    assert conn.calls == [] and dom.calls == []
    assert any(d.get("after", "").startswith("state: running") for d in result["diff"])


def test_change_to_a_running_guest_waits_for_its_next_boot():
    current = (FIXTURES / "site-kali-libvirt9.xml").read_text()
    dom = Dom(current, active=True)
    module = Module(xml=desired_from(current, lambda r: r.find("memory").__setattr__("text", "4194304")))
    result = mod.present(module, Conn(dom), dom, "kali")
    assert result["restart_required"] is True and dom.calls == []
    assert "next boot" in module.warnings[0]


def firmware_case(tmp_path, reset):
    current = (FIXTURES / "site-arch-libvirt9.xml").read_text()
    nvram = tmp_path / "arch_VARS.fd"
    nvram.write_bytes(b"enrolled keys and boot entries")
    current = current.replace("/var/lib/libvirt/qemu/nvram/arch_VARS.fd", str(nvram))

    def no_secure_boot(root):
        for feature in root.findall("os/firmware/feature"):
            feature.set("enabled", "no")
        root.find("features").remove(root.find("features/smm"))

    dom = Dom(current)
    conn = Conn(dom)
    module = Module(name="arch", xml=desired_from(current, no_secure_boot), state="shutdown", reset_nvram=reset,
                    owned_paths=[str(nvram)])
    return module, conn, dom, nvram


def test_firmware_change_is_refused_without_reset_nvram(tmp_path):
    module, conn, dom, nvram = firmware_case(tmp_path, reset=False)
    with pytest.raises(Failed, match="from uefi\\+secure-boot\\+enrolled-keys to uefi needs a new NVRAM"):
        mod.present(module, conn, dom, "arch")
    assert conn.calls == [] and nvram.read_bytes() == b"enrolled keys and boot entries"


def test_reset_nvram_backs_up_then_defines_the_new_firmware(tmp_path):
    module, conn, dom, nvram = firmware_case(tmp_path, reset=True)
    result = mod.present(module, conn, dom, "arch")
    assert result["actions"] == ["reset_nvram", "redefine"]
    assert Path(result["nvram_backup"]).read_bytes() == b"enrolled keys and boot entries"
    assert not nvram.exists(), "libvirt makes the new NVRAM from the new template"
    os_el = ET.fromstring(conn.calls[0][1]).find("os")
    assert os_el.find("loader") is None, "the old Secure Boot loader must not survive"
    assert {f.get("name"): f.get("enabled") for f in os_el.findall("firmware/feature")} == {
        "secure-boot": "no", "enrolled-keys": "no"}


def kali_with_disk(tmp_path) -> tuple:
    """A disk file with data, and kali's libvirt XML using it."""
    disk = tmp_path / "kali.qcow2"
    disk.write_bytes(b"data")
    return disk, (FIXTURES / "site-kali-libvirt9.xml").read_text().replace(
        "/mnt/vm/kali-linux-2025.3-qemu-amd64.qcow2", str(disk))


def test_absent_keeps_disks_nvram_and_tpm(tmp_path):
    disk, current = kali_with_disk(tmp_path)
    dom = Dom(current)
    result = mod.absent(Module(state="absent"), Conn(dom), dom, "kali")
    assert result["actions"] == ["undefine"]
    (_call, flags), = dom.calls
    assert flags & KEEP_NVRAM and flags & KEEP_TPM and not flags & (NVRAM | TPM)
    assert disk.read_bytes() == b"data"


def test_purge_deletes_the_disks(tmp_path):
    disk, current = kali_with_disk(tmp_path)
    dom = Dom(current)
    result = mod.absent(Module(state="absent", purge=True, owned_paths=[str(disk)]), Conn(dom), dom, "kali")
    (_call, flags), = dom.calls
    assert flags & NVRAM and flags & TPM
    assert result["purged"] == [str(disk)] and not disk.exists()


def test_purge_deletes_nothing_its_spec_does_not_name_or_another_guest_uses(tmp_path):
    disk, current = kali_with_disk(tmp_path)
    dom = Dom(current)
    # A definition drifted to a file the spec does not name (as `virsh edit` could do it).
    with pytest.raises(Failed, match="is not in owned_paths"):
        mod.absent(Module(state="absent", purge=True, owned_paths=["/mnt/vm/other.qcow2"]), Conn(dom), dom, "kali")
    other = Dom(current.replace("<name>kali</name>", "<name>other</name>"))
    with pytest.raises(Failed, match="is used by guest other too"):
        mod.absent(Module(state="absent", purge=True, owned_paths=[str(disk)]), Conn(dom, [other]), dom, "kali")
    assert dom.calls == [] and disk.read_bytes() == b"data"


def test_reset_nvram_replaces_only_its_own_nvram(tmp_path):
    module, conn, dom, nvram = firmware_case(tmp_path, reset=True)
    module.params["owned_paths"] = []
    with pytest.raises(Failed, match="reset_nvram would touch files that are not only its own"):
        mod.present(module, conn, dom, "arch")
    assert conn.calls == [] and nvram.read_bytes() == b"enrolled keys and boot entries"


def test_shutdown_timeout_fails_unless_forced():
    current = (FIXTURES / "site-kali-libvirt9.xml").read_text()
    dom = Dom(current, active=True)  # ignores shutdown()
    with pytest.raises(Failed, match="did not shut down within 1 s"):
        mod.present(Module(xml=desired_from(current), state="shutdown"), Conn(dom), dom, "kali")
    assert ("destroy",) not in dom.calls
    result = mod.present(Module(xml=desired_from(current), state="shutdown", force_stop=True), Conn(dom), dom, "kali")
    assert result["actions"] == ["shutdown", "force_stop"] and ("destroy",) in dom.calls


def test_preflight_names_the_missing_firmware_package(monkeypatch):
    desired = desired_from((FIXTURES / "site-arch-libvirt9.xml").read_text())
    monkeypatch.setattr(domain_preflight.firmware, "descriptors", lambda dirs=None, skipped=None: [PLAIN])
    conn = Conn()
    with pytest.raises(Failed, match=r"offers UEFI with Secure Boot and enrolled keys for x86_64 pc-q35-7\.2; "
                                     r"install ovmf"):
        mod.present(Module(name="arch", xml=desired), conn, None, "arch")
    assert conn.calls == []


def test_hugepages_are_checked_before_any_change():
    def huge(root):
        root.find("memory").text = str(2**40)  # 1 PiB in KiB: no host has those pages free
        backing = ET.SubElement(root, "memoryBacking")
        ET.SubElement(ET.SubElement(backing, "hugepages"), "page", size="2048", unit="KiB")

    desired = desired_from((FIXTURES / "site-kali-libvirt9.xml").read_text(), huge)
    conn = Conn()
    with pytest.raises(Failed, match=r"kali 536870912 need 536870912 pages of 2048 KiB, but the host has \d+ free"):
        mod.present(Module(xml=desired), conn, None, "kali")
    assert conn.calls == []
    result = mod.present(Module(xml=desired, state="shutdown"), conn, None, "kali")
    assert result["actions"] == ["define"]


def test_paused_guest_is_resumed_and_a_saved_one_restored():
    current = (FIXTURES / "site-kali-libvirt9.xml").read_text()
    dom = Dom(current, active=True, paused=True)
    result = mod.present(Module(xml=desired_from(current)), Conn(dom), dom, "kali")
    assert result["actions"] == ["resume"] and dom.calls == [("resume",)]
    assert "state: paused" in result["diff"][0]["before"]
    dom = Dom(current, saved=True)
    result = mod.present(Module(xml=desired_from(current)), Conn(dom), dom, "kali")
    assert result["actions"] == ["start from its saved state"] and dom.calls == [("create",)]


def test_paused_guest_is_resumed_before_its_graceful_shutdown():
    current = (FIXTURES / "site-kali-libvirt9.xml").read_text()
    dom = Dom(current, active=True, paused=True)
    with pytest.raises(Failed, match="did not shut down"):
        mod.present(Module(xml=desired_from(current), state="shutdown"), Conn(dom), dom, "kali")
    assert dom.calls[:2] == [("resume",), ("shutdown",)]


def test_transient_guest_gets_a_persistent_definition():
    current = (FIXTURES / "site-kali-libvirt9.xml").read_text()
    dom = Dom(current, active=True, persistent=False)
    conn = Conn(dom)
    result = mod.present(Module(xml=desired_from(current)), conn, dom, "kali")
    assert result["actions"] == ["define"]
    assert result["differences"][0] == "domain kali: running without a persistent definition, would be defined"
    assert [c[0] for c in conn.calls] == ["defineXMLFlags"]


TPM_XML = """<domain><name>w</name><devices><tpm model='tpm-crb'><backend type='external'>
<source type='unix' mode='connect' path='%s'/></backend></tpm></devices></domain>"""


def test_a_busy_tpm_socket_fails_the_start_within_its_bound(tmp_path, monkeypatch):
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    busy.bind(str(tmp_path / "busy"))
    busy.listen(1)  # a swtpm busy with another client: connections wait, nothing answers
    monkeypatch.setattr(domain_preflight, "TPM_PROBE_SECONDS", 0.5)
    started = time.monotonic()
    with pytest.raises(Failed, match=r"its TPM socket .*busy did not answer within 0.5 s"):
        domain_preflight.check_tpm_sockets("w", TPM_XML % (tmp_path / "busy"), ["start"])
    assert time.monotonic() - started < 5
    busy.close()

    ready = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ready.bind(str(tmp_path / "ready"))
    ready.listen(1)

    def answer():
        conn = ready.accept()[0]
        conn.recv(4)
        conn.sendall(b"\x00\x00\x00\x3f")
        conn.close()
    threading.Thread(target=answer, daemon=True).start()
    domain_preflight.check_tpm_sockets("w", TPM_XML % (tmp_path / "ready"), ["start"])  # answered: no failure
    ready.close()
    with pytest.raises(Failed, match="does not accept connections"):
        domain_preflight.check_tpm_sockets("w", TPM_XML % (tmp_path / "missing"), ["start"])


def test_console_password_is_set_compared_and_never_shown():
    current = (FIXTURES / "site-arch-libvirt9.xml").read_text()
    dom = Dom(current, active=True)
    conn = Conn(dom)
    module = Module(name="arch", xml=desired_from(current), state="running", graphics_password="s3cret")
    result = mod.present(module, conn, dom, "arch")
    assert result["actions"] == ["redefine"] and result["restart_required"]
    defined = ET.fromstring(conn.calls[0][1])
    assert defined.find("devices/graphics").get("passwd") == "s3cret"
    shown = repr(result["differences"]) + repr(result["diff"])
    assert "s3cret" not in shown and "********" in shown
    # Set by hand, it goes when the spec has none; its value is not shown either.
    dom = Dom(current.replace("<graphics type='spice'", "<graphics type='spice' passwd='byhand'"), active=True)
    conn = Conn(dom)
    result = mod.present(Module(name="arch", xml=desired_from(current)), conn, dom, "arch")
    assert ET.fromstring(conn.calls[0][1]).find("devices/graphics").get("passwd") is None
    assert "byhand" not in repr(result["differences"]) + repr(result["diff"])


class Ended(Exception):
    def __init__(self, failed: bool, result: dict):
        super().__init__(result.get("msg", ""))
        self.failed, self.result = failed, result


def run_main(monkeypatch, conn, check_mode=False, **params):
    """The module's main() with these options, against a fake libvirt; returns (failed, result)."""
    defaults = dict(name=None, xml=None, guests=None, state="running", autostart=False, shutdown_timeout=1,
                    force_stop=False, allow_restart=False, reset_nvram=False, purge=False, owned_paths=[],
                    graphics_password=None, uri="x")

    class FakeAnsibleModule(Module):
        def __init__(self, **_spec):
            super().__init__(check_mode=check_mode)
            self.params = dict(defaults, **params)

        def fail_json(self, **kw):
            raise Ended(True, kw)

        def exit_json(self, **kw):
            raise Ended(False, kw)

    monkeypatch.setattr(mod, "AnsibleModule", FakeAnsibleModule)
    monkeypatch.setattr(libvirt_common, "connect", lambda *args: conn)
    with pytest.raises(Ended) as ended:
        mod.main()
    return ended.value.failed, ended.value.result


def test_batch_converges_every_guest_and_a_failing_one_stops_no_other(monkeypatch):
    """One refused guest (its XML names another domain) is reported by name; the others are
    defined and started all the same, each --diff section names its guest, and the call fails."""
    kali = desired_from((FIXTURES / "site-kali-libvirt9.xml").read_text())
    conn = Conn()
    failed, result = run_main(monkeypatch, conn, guests=[
        {"name": "bad", "xml": kali},
        {"name": "kali", "xml": kali},
        {"name": "gone", "state": "absent"},
    ])
    assert failed and result["changed"] is True
    assert result["msg"].startswith("1 of 3 guests did not converge (the others did):\nguest bad: the xml names")
    assert result["guests"]["kali"]["actions"] == ["define", "start"]
    assert result["guests"]["gone"]["changed"] is False
    assert [c[0] for c in conn.calls] == ["defineXMLFlags"]


def test_batch_an_unexpected_libvirt_error_fails_that_guest_alone(monkeypatch):
    """A libvirt error no check foresaw (here: reading arch's state) fails arch by name; kali,
    after it in the list, is still defined and started."""
    current = (FIXTURES / "site-arch-libvirt9.xml").read_text()
    kali = desired_from((FIXTURES / "site-kali-libvirt9.xml").read_text())

    class Broken(Dom):
        def state(self):
            raise LibvirtError("internal error: broken by a test")

    conn = Conn(others=[Broken(current, active=True)])  # listed by libvirt; kali is defined anew
    guests = [{"name": "arch", "xml": desired_from(current)}, {"name": "kali", "xml": kali}]
    failed, result = run_main(monkeypatch, conn, guests=guests)
    assert failed
    assert result["msg"] == ("1 of 2 guests did not converge (the others did):\n"
                             "guest arch: libvirt failed: internal error: broken by a test")
    assert result["guests"]["arch"]["failed"] is True
    assert result["guests"]["kali"]["actions"] == ["define", "start"]


def test_batch_diffs_name_their_guest_and_entries_inherit_only_safe_options(monkeypatch):
    kali = desired_from((FIXTURES / "site-kali-libvirt9.xml").read_text())
    failed, result = run_main(monkeypatch, Conn(), check_mode=True, autostart=True, purge=True, reset_nvram=True,
                              guests=[{"name": "kali", "xml": kali}])
    assert not failed and result["changed"] and result["restart_required"] == []
    assert result["guests"]["kali"]["actions"] == ["define", "autostart_on", "start"]
    assert {d["before_header"] for d in result["diff"]} == {"guest kali: libvirt's definition",
                                                            "guest kali lifecycle"}
    guest = {key: None for key in domain_batch.PER_GUEST} | {"name": "kali"}
    entry = domain_batch.entries(dict(name=None, guests=[guest], state="shutdown", autostart=True,
                                      shutdown_timeout=5, force_stop=True, allow_restart=True,
                                      reset_nvram=True, purge=True))[0]
    assert (entry["state"], entry["autostart"], entry["force_stop"], entry["purge"], entry["reset_nvram"],
            entry["owned_paths"]) == ("shutdown", True, True, False, False, [])


def test_batch_refuses_a_guest_listed_twice(monkeypatch):
    failed, result = run_main(monkeypatch, Conn(), guests=[{"name": "a", "state": "absent"},
                                                           {"name": "a", "state": "absent"}])
    assert failed and result["msg"] == "guests: a listed more than once; each guest once."
