"""Graceful shutdown of a guest that runs an OS: state: shutdown without force_stop powers it off
within shutdown_timeout and reports changed, the next run is changed=0; libvirt records that the
guest shut itself down (not a destroy). The failing case, a guest that ignores the request and
needs force_stop, is the default scenario's (its guests have no OS)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from guest_agent import V

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "workstation"
DEMO = yaml.safe_load((EXAMPLE / "inventories/demo/group_vars/hypervisors.yml").read_text())["kvmlab_guest_overrides"]
TIMEOUT = 90


def test_state_shutdown_powers_a_running_guest_off(guests, host, site):
    guests.wait(["kali"])
    kali = dict(DEMO["kali"], state="shutdown", shutdown_timeout=TIMEOUT)
    off = ("-e", json.dumps({"kvmlab_guest_overrides": dict(DEMO, kali=kali)}))
    start = time.monotonic()
    run = site(*off)
    took = time.monotonic() - start
    assert run.rc == 0 and run.changed == 1, run
    assert guests.state("kali") == "shut off"
    assert took < TIMEOUT, took
    # The guest powered itself off (libvirt's reason), it was not forced.
    assert "(shutdown)" in host.check_output(V + "domstate --reason kali")
    assert site(*off).changed == 0
    # Back to running for whatever follows.
    run = site()
    assert run.rc == 0 and run.changed == 1, run
    guests.wait(["kali"])
