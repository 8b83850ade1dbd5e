"""Every state a guest can be in is converged by the site: paused, running without a persistent
definition, shut off with a saved state. Each is made on the real libvirtd, a site run brings
the guest back to its spec (running, defined), and the next run changes nothing."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

V = "virsh -c qemu:///system "
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "workstation"
DEMO = yaml.safe_load((EXAMPLE / "inventories/demo/group_vars/hypervisors.yml").read_text())["kvmlab_guest_overrides"]
# kali: the demo's BIOS guest under KVM, cheap to pause, save and restore.
CASES = {
    "paused": (V + "suspend kali", V + "domstate kali | grep -qx paused", "resume"),
    "running without a persistent definition": (
        V + "undefine kali", "! " + V + "list --persistent --name | grep -qx kali", "define"),
    "shut off with a saved state": (
        V + "managedsave kali", V + "dominfo kali | grep -q 'Managed save: *yes'", "start from its saved state"),
}


@pytest.mark.parametrize("case", CASES)
def test_guest_state_is_converged(host, site, summary, case):
    breaks, broken, action = CASES[case]
    uuid = host.check_output(V + "domuuid kali")
    host.run_test(breaks)
    host.run_test(broken)
    run = site("--tags", "guests", "-v")
    assert run.rc == 0, run
    assert run.changed == 1, run
    assert action in run.stdout, run
    assert host.check_output(V + "domstate kali") == "running"
    assert "kali" in host.check_output(V + "list --persistent --name").split()
    assert host.check_output(V + "domuuid kali") == uuid
    again = site("--tags", "guests")
    assert again.rc == 0 and again.changed == 0, again
    summary["guest states converged"] += 1


def test_public_console_is_warned_and_its_password_never_shown(host, guest, summary):
    spec = {"name": "pubcon", "firmware": "bios", "cpu_mode": "custom", "cpu_model": "Nehalem", "memory": "128M",
            "vcpus": 1, "interfaces": [], "graphics": "vnc", "graphics_listen": "0.0.0.0", "graphics_public": True,
            "graphics_password": "s3cret", "state": "shutdown"}
    try:
        for expected_changes in (1, 0):
            run = guest(spec, "--diff", "-v")
            assert run.rc == 0 and run.changed == expected_changes, run
            assert "its vnc console listens on 0.0.0.0, reachable from the network behind its password" in \
                run.stdout + run.stderr, run
            assert "s3cret" not in run.stdout + run.stderr, run
        secure = host.check_output(V + "dumpxml --inactive --security-info pubcon")
        assert "passwd='s3cret'" in secure
        # Without the password in the spec, the one set goes; its value is not shown either.
        run = guest(dict(spec, graphics_password=None), "--diff", "-v")
        assert run.rc == 0 and run.changed == 1, run
        assert "s3cret" not in run.stdout + run.stderr and "********" in run.stdout, run
        assert "without a password" in run.stdout + run.stderr, run
        assert "passwd=" not in host.check_output(V + "dumpxml --inactive --security-info pubcon")
        summary["public console warnings"] += 1
    finally:
        guest(dict(spec, state="absent"))


def test_a_busy_tpm_socket_fails_the_start_in_bounded_time(host, site, summary):
    """win11 stopped, and another client holding swtpm's one control connection: the start is
    refused within the probe's bound, naming the guest and the socket, instead of QEMU waiting
    without limit. Once the holder is gone, the next run starts win11."""
    host.run_test(V + "destroy win11")
    holder = ("nohup python3 -c \"import socket, time; s = socket.socket(socket.AF_UNIX); "
              "s.connect('/mnt/vm/swtpm-sock'); time.sleep(300)\" >/dev/null 2>&1 & echo $!")
    pid = host.check_output(holder)
    try:
        started = time.monotonic()
        run = site("--tags", "guests")
        assert run.rc != 0, run
        assert "guest win11 was not started: its TPM socket /mnt/vm/swtpm-sock did not answer within 10 s" in \
            run.stdout + run.stderr, run
        assert time.monotonic() - started < 90, "the run waited too long"
        assert host.check_output(V + "domstate win11") == "shut off"
    finally:
        host.run("kill %s" % pid)
    run = site("--tags", "guests")
    assert run.rc == 0 and run.changed == 1, run
    assert host.check_output(V + "domstate win11") == "running"
    summary["guest states converged"] += 1


def test_a_guest_libvirt_refuses_does_not_stop_the_others(host, site, summary):
    """kali asks for more vCPUs than the q35 machine takes (the spec checks pass, libvirt refuses
    the definition) while arch gets more memory: kali's failure carries libvirt's message and
    the differences, arch is still converged, and the task fails at the end."""
    more = {"kvmlab_guest_overrides": dict(DEMO, kali=dict(DEMO["kali"], vcpus=512),
                                           arch=dict(DEMO.get("arch", {}), memory="2560M"))}
    kali_before = host.check_output(V + "dumpxml --inactive kali")
    try:
        run = site("--tags", "guests", "-e", json.dumps(more))
        out = run.stdout + run.stderr
        assert run.rc != 0 and run.failed == 1, run
        assert "guest kali: libvirt refused the new definition:" in out, run
        assert "The differences it was to repair: domain/vcpu: '2' -> '512'" in out, run
        # The one call's result names each guest: arch redefined, kali failed.
        assert re.search(r"\barch:\s+actions:\s+- redefine", out), run
        assert "<memory unit='KiB'>2621440</memory>" in host.check_output(V + "dumpxml --inactive arch")
        assert host.check_output(V + "dumpxml --inactive kali") == kali_before
    finally:
        restored = site("--tags", "guests")
    assert restored.rc == 0, restored
    summary["guest states converged"] += 1
