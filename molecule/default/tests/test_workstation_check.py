"""The seed's own inventory, in check mode against this container: it fails only where the
container lacks the seed's hardware, before any change, with a clear preflight message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
V = "virsh -c qemu:///system "


def test_workstation_inventory_fails_only_on_the_missing_hardware(host):
    inventory = yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())
    connection = next(iter(inventory["all"]["hosts"].values()))
    # Where the seed host is reached and what it is, not what it has: the container's address,
    # root without sudo, and its btrfs loop disk standing in for the seed's btrfs root.
    extra = dict({k: v for k, v in connection.items() if k.startswith("ansible_")},
                 ansible_become=False, kvmlab_storage_btrfs_device="/dev/kvmlab-disk")
    state = "for g in win11 arch kali; do " + V + "dumpxml --inactive $g; done; " + V + "net-dumpxml default"
    before = host.check_output(state)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", KVMLAB_CHECK_GUARD="0")
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i",
         str(ROOT / "examples/workstation/inventories/workstation"),
         "--limit", "workstation", "kvmlab.hypervisor.site", "--check", "-e", json.dumps(extra)],
        capture_output=True, text=True, env=env, check=False)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    threads = len(host.check_output("ls -d /sys/devices/system/cpu/cpu[0-9]*").split())
    # The seed pins win11's 6 vCPUs; this container has far fewer threads.
    assert "kvmlab_guests[win11].cpu_pinning: guest win11: 6 vCPUs to pin, but only" in out, out
    memory_kib = int(host.check_output("awk '/MemTotal/ {print $2}' /proc/meminfo"))
    if memory_kib < 16 * 1024 * 1024:
        assert "kvmlab_guests[win11].memory: guest win11 asks for 16G, but the host has" in out, out
    else:
        assert "kvmlab_guests[win11].memory" not in out, out
    # The seed's kvmlab_host_reserve (6 threads, 16G, 500G kept for the host) leaves this container
    # nothing for the seed's guests, and the site says so, field by field, from what it measured.
    assert ("kvmlab_host_reserve.cpus: the guests ask for 10 vCPUs together, but the host has %d threads and keeps 6 "
            "for itself, leaving 0" % threads) in out, out
    assert "kvmlab_host_reserve.storage: the guests' disks hold up to 142.0G together, but the filesystem of /mnt/vm" \
        in out, out
    assert "Traceback" not in out, out
    # It stopped in the preflight, before the host role's first task.
    assert "kvmlab.hypervisor.host : Read the host" not in run.stdout, out
    assert host.check_output(state) == before
    assert threads < 8
