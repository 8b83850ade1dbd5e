"""What a guest writes survives what the site does. Inside win11: a TPM NV index (the kind of
secret BitLocker keeps), an EFI variable (kept in its NVRAM file) and a file on its disk, read
back from inside after a libvirtd restart, a redefinition for a changed spec (the guest restarted
onto it), an interrupted run, and state: absent followed by adding the guest again."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import killed_run
from guest_agent import V

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "workstation"
DEMO = yaml.safe_load((EXAMPLE / "inventories/demo/group_vars/hypervisors.yml").read_text())["kvmlab_guest_overrides"]
NV_INDEX = "0x1500016"
NV_SECRET = "kvmlab-nv-secret"
EFI_VAR = "KvmlabMarker-3f2a6c1e-8d1b-4b8e-9c55-0c6a1d2e7f10"
EFI_DATA = "kvmlab-efi-marker"
FILE = "/var/lib/kvmlab-marker"
FILE_DATA = "kvmlab-disk-marker"
WRITE = f"""set -e
tpm2_nvundefine -C o {NV_INDEX} 2>/dev/null || true
tpm2_nvdefine -C o -s {len(NV_SECRET)} -a "ownerread|ownerwrite" {NV_INDEX}
printf %s {NV_SECRET} > /run/nv && tpm2_nvwrite -C o -i /run/nv {NV_INDEX}
chattr -i /sys/firmware/efi/efivars/{EFI_VAR} 2>/dev/null || true
printf '\\007\\000\\000\\000%s' {EFI_DATA} > /sys/firmware/efi/efivars/{EFI_VAR}
printf %s {FILE_DATA} > {FILE}
sync
"""


def read_back(guests) -> dict:
    return {
        "tpm": guests.sh("win11", "tpm2_nvread -C o -s %d %s" % (len(NV_SECRET), NV_INDEX)),
        "efi": guests.sh("win11", "cat /sys/firmware/efi/efivars/%s | tail -c +5" % EFI_VAR),  # efivarfs: no seek
        "file": guests.sh("win11", "cat " + FILE),
    }


WRITTEN = {"tpm": NV_SECRET, "efi": EFI_DATA, "file": FILE_DATA}


def overrides(**win11) -> tuple:
    return ("-e", json.dumps({"kvmlab_guest_overrides": dict(DEMO, win11=dict(DEMO["win11"], **win11))}))


def test_tpm_nv_efi_variable_and_file_survive(guests, host, site, summary):
    guests.sh("win11", WRITE)
    assert read_back(guests) == WRITTEN

    host.run_test("systemctl restart libvirtd")
    guests.wait(["win11"], 60)
    assert read_back(guests) == WRITTEN, "after a libvirtd restart"

    uid = host.check_output(V + "domuuid win11")
    bigger = overrides(memory="2304M", allow_restart=True)
    run = site(*bigger)
    assert run.rc == 0 and run.changed > 0, run
    assert "<memory unit='KiB'>2359296</memory>" in host.check_output(V + "dumpxml win11")  # running on it
    assert host.check_output(V + "domuuid win11") == uid
    guests.wait(["win11"])
    assert read_back(guests) == WRITTEN, "after a redefinition and restart"

    # Killed as the guests converge back to the demo's spec; the next run finishes the job.
    back = overrides(allow_restart=True)
    killed_run(back, "TASK [kvmlab.hypervisor.guest : Converge the guests]")
    run = site(*back)
    assert run.rc == 0, run
    assert site(*back).changed == 0
    guests.wait(["win11"])
    assert read_back(guests) == WRITTEN, "after an interrupted run"
    summary["interrupted runs recovered"] += 1

    gone = overrides(state="absent")
    run = site(*gone)
    assert run.rc == 0 and run.changed > 0, run
    assert host.run(V + "dominfo win11").rc != 0
    run = site()
    assert run.rc == 0 and run.changed > 0, run
    guests.wait(["win11"])
    assert read_back(guests) == WRITTEN, "after state: absent and adding it again"
    assert site().changed == 0
