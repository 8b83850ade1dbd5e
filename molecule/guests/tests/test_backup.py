"""Backups and restores (playbooks kvmlab.hypervisor.backup and .restore), proven from inside win11:
a file on its disk, a TPM NV index (in its external swtpm's state) and an EFI variable (in its
NVRAM file) are written, backed up, changed, and read as they were at the backup once the guest is
restored and booted. Then the faults: a backup killed with SIGKILL halfway, a tampered file, a
missing link of a chain, a second run while one holds the guest, and a destination without room."""

from __future__ import annotations

import json
import re
import time

from guest_agent import V

DEST = "/mnt/vm/backups"
GDIR = DEST + "/win11"
NV_INDEX = "0x1500018"
EFI_VAR = "KvmlabBackup-6c1f0e2a-4b7d-4d3e-a2f1-9e8d7c6b5a40"
FILE = "/var/lib/kvmlab-backup-marker"
WRITE = """set -e
tpm2_nvundefine -C o {nv} 2>/dev/null || true
tpm2_nvdefine -C o -s 16 -a "ownerread|ownerwrite" {nv}
printf %-16s {value} > /run/nv && tpm2_nvwrite -C o -i /run/nv {nv}
chattr -i /sys/firmware/efi/efivars/{var} 2>/dev/null || true
printf '\\007\\000\\000\\000%s' {value} > /sys/firmware/efi/efivars/{var}
printf %s {value} > {file}
sync
"""


def write(guests, value: str) -> None:
    guests.sh("win11", WRITE.format(nv=NV_INDEX, var=EFI_VAR, file=FILE, value=value))


def read_back(guests) -> dict:
    return {
        "tpm": guests.sh("win11", "tpm2_nvread -C o -s 16 %s" % NV_INDEX).strip(),
        "efi": guests.sh("win11", "cat /sys/firmware/efi/efivars/%s | tail -c +5" % EFI_VAR),
        "file": guests.sh("win11", "cat " + FILE),
    }


def backup(site, *extra):
    return site(*extra, playbook_path="kvmlab.hypervisor.backup")


def restore(site, *extra):
    return site(*extra, playbook_path="kvmlab.hypervisor.restore")


def said(run) -> str:
    """What a run printed: Ansible writes a failed task's message to stderr."""
    return run.stdout + run.stderr


def e(**values) -> tuple:
    return ("-e", json.dumps(values))


def complete(host) -> list[str]:
    """The complete backups of win11 on the host (directories with a manifest), oldest first."""
    out = host.run("cd %s && ls -d */manifest.json 2>/dev/null | cut -d/ -f1 | sort", GDIR).stdout
    return out.split()


def manifest(host, name: str) -> dict:
    return json.loads(host.file("%s/%s/manifest.json" % (GDIR, name)).content_string)


def allocated(host, path: str) -> int:
    return int(host.check_output("du -B1 %s | cut -f1", path))


ONLY_WIN11 = e(kvmlab_backup_guests=["win11"])
# SIGKILL to the process that holds the guest's lock file open (the backup module), once libvirt's
# job has made its disk target; on the host, polling every 10 ms for up to 120 s.
KILLER = """import glob, os, signal, sys, time
lock = sys.argv[1] + "/.lock"
deadline = time.monotonic() + 120
while not glob.glob(sys.argv[1] + "/*.partial/vda.qcow2"):
    if time.monotonic() > deadline:
        sys.exit("no backup job seen")
    time.sleep(0.01)
for fd in glob.glob("/proc/[0-9]*/fd/*"):
    try:
        if os.readlink(fd) == lock:
            os.kill(int(fd.split("/")[2]), signal.SIGKILL)
    except OSError:
        pass
"""


def test_a_restored_guest_boots_with_its_disk_tpm_and_nvram_as_at_the_backup(guests, host, site):
    guests.wait(["win11"])
    write(guests, "at-backup")
    at_backup = read_back(guests)
    assert at_backup == {"tpm": "at-backup", "efi": "at-backup", "file": "at-backup"}

    run = backup(site, *ONLY_WIN11)
    assert run.rc == 0 and run.changed == 1, run
    [full] = complete(host)
    assert manifest(host, full)["kind"] == "full"
    assert manifest(host, full)["tpm"]["type"] == "external" and manifest(host, full)["nvram"]

    # 10 MiB written inside the guest: the incremental backup copies about that much.
    guests.sh("win11", "dd if=/dev/urandom of=/var/lib/kvmlab-ten bs=1M count=10 conv=fsync status=none && sync")
    ten = guests.sh("win11", "sha256sum /var/lib/kvmlab-ten").split()[0]
    run = backup(site, *ONLY_WIN11)
    assert run.rc == 0, run
    incremental = complete(host)[-1]
    m = manifest(host, incremental)
    assert m["kind"] == "incremental" and m["parent"] == full and m["chain"] == full
    copied = allocated(host, "%s/%s/vda.qcow2" % (GDIR, incremental))
    assert 10 << 20 <= copied <= 16 << 20, copied
    assert allocated(host, "%s/%s/vda.qcow2" % (GDIR, full)) > 100 << 20
    print("incremental after 10 MiB written: %d bytes allocated" % copied)

    write(guests, "after-backup")
    assert read_back(guests)["tpm"] == "after-backup"

    # Without restore_overwrite nothing the guest has is replaced.
    run = restore(site, *e(kvmlab_restore_guest="win11"))
    assert run.rc != 0 and "kvmlab_restore_overwrite" in said(run) and "win11" in said(run), run
    assert guests.state("win11") == "running" and read_back(guests)["file"] == "after-backup"

    run = restore(site, *e(kvmlab_restore_guest="win11", kvmlab_restore_overwrite=True))
    assert run.rc == 0 and run.changed == 1, run
    guests.wait(["win11"])
    assert read_back(guests) == at_backup
    assert guests.sh("win11", "sha256sum /var/lib/kvmlab-ten").split()[0] == ten
    # Secure Boot still on: the restored NVRAM holds the enrolled keys.
    assert guests.sh("win11", "od -An -tx1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
                     ).split()[-1] == "01"
    # What the restore replaced was moved aside, not deleted.
    assert host.run("ls -d /mnt/vm/win11.qcow2.pre-restore-* /mnt/vm/tpm.pre-restore-*").rc == 0
    # The site finds the restored guest converged.
    run = site()
    assert run.rc == 0 and run.changed == 0, run


def test_faults_leave_no_backup_restore_would_take(guests, host, site):
    before = complete(host)
    assert len(before) >= 2  # the test above's chain
    newest = before[-1]

    # A checksum mismatch: restore refuses, naming the guest, the backup and the file.
    nvram = "%s/%s/nvram.fd" % (GDIR, newest)
    host.run_test("cp -p %s /run/nvram.keep", nvram)
    host.run_test("printf X | dd of=%s bs=1 seek=100 conv=notrunc status=none", nvram)
    run = restore(site, *e(kvmlab_restore_guest="win11", kvmlab_restore_overwrite=True))
    host.run_test("cp -p /run/nvram.keep %s", nvram)
    assert run.rc != 0 and re.search(r"win11, backup %s: the checksum of nvram.fd" % newest, said(run)), run

    # A missing link: restore refuses, naming it.
    full = manifest(host, newest)["chain"]
    host.run_test("mv %s/%s /mnt/vm/held-aside", GDIR, full)
    run = restore(site, *e(kvmlab_restore_guest="win11", kvmlab_restore_overwrite=True))
    host.run_test("mv /mnt/vm/held-aside %s/%s", GDIR, full)
    assert run.rc != 0 and "the chain's link %s is missing" % full in said(run), run
    assert guests.state("win11") == "running"

    # A second run while another holds the guest's lock is refused after its lock timeout.
    host.run_test("systemd-run --unit=kvmlab-lock-holder flock %s/.lock sleep 120", GDIR)
    try:
        host.run_test("for i in $(seq 100); do flock -n %s/.lock true || exit 0; sleep 0.1; done; exit 1", GDIR)
        run = backup(site, *ONLY_WIN11, *e(kvmlab_backup_lock_timeout=3))
    finally:
        host.run("systemctl stop kvmlab-lock-holder")
    assert run.rc != 0 and "another backup or restore holds" in said(run), run
    assert complete(host) == before

    # Not enough room at the destination: refused before anything is written there.
    host.run_test("mkdir -p /mnt/small && mount -t tmpfs -o size=64m tmpfs /mnt/small")
    try:
        run = backup(site, *ONLY_WIN11, *e(kvmlab_backup_dest="/mnt/small/backups"))
        assert run.rc != 0 and re.search(r"guest win11: a (full|incremental) backup needs about", said(run)), run
        assert host.run("ls -A /mnt/small").stdout == ""
    finally:
        host.run("umount /mnt/small")

    # SIGKILL halfway, as libvirt's backup job writes: the module is killed on the host once the job
    # has made its disk target. An incomplete directory is left, never offered to restore.
    # (The module is the process that holds the guest's lock file open.)
    host.run_test("systemd-run --unit=kvmlab-backup-killer python3 -c %s %s", KILLER, GDIR)
    run = backup(site, *ONLY_WIN11, *e(kvmlab_backup_mode="full"))
    host.run("systemctl stop kvmlab-backup-killer")
    assert run.rc != 0, run
    [partial] = host.check_output("cd %s && ls -d *.partial", GDIR).split()
    assert complete(host) == before
    run = restore(site, *e(kvmlab_restore_guest="win11", kvmlab_restore_backup=partial[: -len(".partial")],
                           kvmlab_restore_overwrite=True))
    assert run.rc != 0 and "incomplete" in said(run), run
    # The next backup waits for the killed run's job, removes its leftovers and says so.
    run = backup(site, *ONLY_WIN11)
    assert run.rc == 0 and "removed the incomplete backup %s" % partial in said(run), run
    # Killed while the guest was paused for its NVRAM and TPM copies, the run left a marker: the
    # next one resumed the guest.
    assert guests.state("win11") == "running"
    guests.wait(["win11"], 120)
    assert host.run("ls -d %s/*.partial", GDIR).rc != 0
    after = complete(host)
    assert after[:-1] == before and manifest(host, after[-1])["kind"] in ("full", "incremental")
    # One kvmlab checkpoint is left: the newest backup's.
    names = host.check_output(V + "checkpoint-list win11 --name").split()
    assert names == [manifest(host, after[-1])["checkpoint"]], names


# Inside win11: files rewritten (4 MiB each, fsynced) in a loop while /run/kvmlab-writing exists;
# /var/lib/kvmlab-count holds the number of the last one done (renamed into place, so it is always
# a whole number).
WRITER = """touch /run/kvmlab-writing
setsid sh -c 'i=0; while [ -e /run/kvmlab-writing ]; do i=$((i+1))
dd if=/dev/urandom of=/var/lib/kvmlab-writer-$((i % 4)) bs=1M count=4 conv=fsync status=none
printf %d $i > /var/lib/kvmlab-count.tmp && mv /var/lib/kvmlab-count.tmp /var/lib/kvmlab-count && sync
done' </dev/null >/dev/null 2>&1 &
"""


def written(guests) -> int:
    return int(guests.sh("win11", "cat /var/lib/kvmlab-count 2>/dev/null || echo 0"))


def wait_written(guests, more_than: int) -> int:
    deadline = time.monotonic() + 60
    while (n := written(guests)) <= more_than:
        assert time.monotonic() < deadline, "the writer inside win11 wrote nothing in 60 s"
        time.sleep(0.5)
    return n


def test_a_backup_taken_while_the_guest_writes_restores_to_a_disk_that_checks_and_mounts(guests, host, site):
    guests.wait(["win11"])
    guests.sh("win11", "rm -f /var/lib/kvmlab-count")
    guests.sh("win11", WRITER)
    try:
        before = wait_written(guests, 1)
        run = backup(site, *ONLY_WIN11, *e(kvmlab_backup_mode="full"))
        after = wait_written(guests, written(guests))
    finally:
        guests.sh("win11", "rm -f /run/kvmlab-writing")
    assert run.rc == 0, run
    taken = complete(host)[-1]
    assert manifest(host, taken)["kind"] == "full"
    print("writes inside win11 around the backup: %d before it, %d after" % (before, after))

    # Restored without starting it: the disk passes qemu-img check, then the guest boots from it.
    run = restore(site, *e(kvmlab_restore_guest="win11", kvmlab_restore_overwrite=True, kvmlab_restore_start=False))
    assert run.rc == 0 and run.changed == 1, run
    assert guests.state("win11") == "shut off"
    host.run_test("qemu-img check -q /mnt/vm/win11.qcow2")
    host.run_test(V + "start win11")
    guests.wait(["win11"])
    assert guests.sh("win11", "findmnt -no OPTIONS /").startswith("rw"), "win11's root is not mounted read-write"
    assert guests.sh("win11", "dmesg | grep -c 'EXT4-fs error' || true").strip() == "0"
    # The restored disk is one point in time of the writes: a count between the two read around the backup.
    assert before <= written(guests) <= after
    run = site()
    assert run.rc == 0 and run.changed == 0, run


# On the host: libvirtd restarted once the backup job has made its disk target, polling every 10 ms.
RESTARTER = """import glob, subprocess, sys, time
deadline = time.monotonic() + 120
while not glob.glob(sys.argv[1] + "/*.partial/vda.qcow2"):
    if time.monotonic() > deadline:
        sys.exit("no backup job seen")
    time.sleep(0.01)
subprocess.run(["systemctl", "restart", "libvirtd.service"], check=True)
"""


def test_a_backup_cut_by_a_libvirtd_restart_is_never_offered_and_the_next_run_recovers(guests, host, site):
    guests.wait(["win11"])
    before = complete(host)
    host.run_test("systemd-run --unit=kvmlab-libvirtd-restarter python3 -c %s %s", RESTARTER, GDIR)
    run = backup(site, *ONLY_WIN11, *e(kvmlab_backup_mode="full"))
    host.run("systemctl stop kvmlab-libvirtd-restarter")
    assert run.rc != 0, run
    assert complete(host) == before
    assert host.run("ls -d %s/*.partial", GDIR).rc == 0
    host.run_test("systemctl is-active libvirtd.service")
    # The next run waits for whatever job is left, removes the leftovers, resumes the guest if the
    # cut run had paused it, and takes a backup.
    run = backup(site, *ONLY_WIN11)
    assert run.rc == 0 and "removed the incomplete backup" in said(run), run
    assert guests.state("win11") == "running"
    guests.wait(["win11"], 120)
    assert host.run("ls -d %s/*.partial", GDIR).rc != 0
    # A new complete backup; the older ones are those before it (less the chains pruned beyond keep).
    after = complete(host)
    assert after[-1] not in before and set(after[:-1]) <= set(before), (before, after)
    assert manifest(host, after[-1])["kind"] in ("full", "incremental")
    run = site()
    assert run.rc == 0 and run.changed == 0, run


def test_a_shut_off_guest_is_backed_up_whole_and_restored_with_its_nvram(guests, host, site):
    marker = "/var/lib/kvmlab-offline-marker"
    guests.wait(["arch"])
    guests.sh("arch", "printf at-backup > %s && sync" % marker)
    host.run_test(V + "shutdown arch")
    guests.wait_state("arch", "shut off", 120)
    run = backup(site, *e(kvmlab_backup_guests=["arch"]))
    assert run.rc == 0 and run.changed == 1, run
    [name] = host.check_output("cd %s/arch && ls -d */manifest.json | cut -d/ -f1", DEST).split()
    m = json.loads(host.file("%s/arch/%s/manifest.json" % (DEST, name)).content_string)
    assert (m["kind"], m["state_at_backup"], m["checkpoint"], m["tpm"]) == ("full", "shut off", None, None), m
    assert m["nvram"] and [d["dev"] for d in m["disks"]] == ["vda"], m
    # A shut-off guest's backup leaves it off; the site starts it again.
    assert guests.state("arch") == "shut off"
    assert site().rc == 0
    guests.wait(["arch"])
    guests.sh("arch", "printf after-backup > %s && sync" % marker)

    run = restore(site, *e(kvmlab_restore_guest="arch", kvmlab_restore_overwrite=True))
    assert run.rc == 0 and run.changed == 1, run
    guests.wait(["arch"])
    assert guests.sh("arch", "cat " + marker) == "at-backup"
    assert guests.sh("arch", "od -An -tx1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
                     ).split()[-1] == "01"
    run = site()
    assert run.rc == 0 and run.changed == 0, run
