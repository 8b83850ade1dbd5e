"""Every state a guest can be in is converged by the site: paused, running without a persistent
definition, shut off with a saved state. Each is made on the real libvirtd, a site run brings
the guest back to its spec (running, defined), and the next run changes nothing."""

from __future__ import annotations

import pytest

V = "virsh -c qemu:///system "
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


def test_public_console_is_warned_on_every_run(host, guest, summary):
    spec = {"name": "pubcon", "firmware": "bios", "cpu_mode": "custom", "cpu_model": "Nehalem", "memory": "128M",
            "vcpus": 1, "interfaces": [], "graphics": "vnc", "graphics_listen": "0.0.0.0", "graphics_public": True,
            "state": "shutdown"}
    try:
        for _ in range(2):
            run = guest(spec)
            assert run.rc == 0, run
            assert "its vnc console listens on 0.0.0.0, reachable from the network without a password" in \
                run.stdout + run.stderr, run
        summary["public console warnings"] += 1
    finally:
        guest(dict(spec, state="absent"))
