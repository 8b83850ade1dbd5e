# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make bench`: how long a site run takes, against the demo container, written to
docs/BENCHMARKS.md.

Each figure is a median over RUNS runs (default 5) of ansible-playbook from this checkout: wall
time, the controller's CPU seconds (the runs' user + system time, from getrusage of the children,
as /usr/bin/time -v reports them), and the remote task executions counted by the task_count
callback (molecule/shared/callback_plugins). A no-op is compared with its floor (one ping task
against the same inventory) pair by pair, the two alternating, so that both see the same machine
and moment; the ratio is that of the medians. Measured, in one call:

  floor / noop       one ping task / a no-op of the demo site (3 guests, running), alternating
  check              the no-op with --check
  cold floor / noop  both again, each run on a new SSH connection (the others reuse one)
  floor+1000 / noop+1000   the same pair with 1000 extra guests defined and shut off (BIOS, 128 MiB,
                     one 64 MiB disk each), defined by the site as kvmlab_guests specs
  check+1000         the no-op with --check at 1000 extra guests
  drift check / drift repair   one of the 1000 drifted (its memory changed in libvirt): the --check
                     run, then the run that repairs it
  fresh              the demo site on a new container (packages shown apart; at most 3 runs)
  boot               the demo's three guests (the guest OS, two of them under TCG) powered off by ACPI,
                     then started together: seconds from `virsh start` until every guest agent answers
                     (one run; with --boot, when the demo's guests run the guest OS)

  backups            win11's full backup (the module's own time: copy, qemu-img check, checksums) against
                     `cp --reflink=never --sparse=always` of the same disk on the same host, alternating, RUNS of each;
                     incremental backups after 10 and 100 MiB written inside the guest (bytes copied
                     against bytes written); the restore of that chain over the running guest
                     (the demo's guests must run the guest OS; --backup-only runs just these and
                     replaces the "## Backups" section of --out)

The extra guests are removed with their disks at the end, the bench's backups and what the restore
moved aside too.
Usage: tools/bench.py --port 22220 [--fresh-port 22230] [--runs 5] [--extra 1000] [--out docs/BENCHMARKS.md]
                      [--backup-only]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The example project, with the collection installed into it (make bench runs make collection).
PROJECT = ROOT / "examples" / "workstation"
PLAYBOOK = str(PROJECT / "site.yml")
INVENTORY = str(PROJECT / "inventories" / "demo")
PING = "- hosts: hypervisors\n  gather_facts: false\n  tasks:\n    - name: Ping\n      ansible.builtin.ping:\n"
V = "virsh -c qemu:///system "
# cp of a disk, flushed: prints the bytes it allocated and the seconds it took.
# --reflink=never: /mnt/vm is btrfs, where cp's default (auto) clones the file in no time.
CP = ("import os, subprocess, time; s = time.monotonic(); "
      "subprocess.run(['cp', '--reflink=never', '--sparse=always', %r, %r], "
      "check=True); os.sync(); e = time.monotonic(); print(os.stat(%r).st_blocks * 512, e - s); os.unlink(%r)")
# Runs SCRIPT inside win11 through its guest agent, on the demo host, within 300 s.
GUEST_EXEC = """import base64, json, sys, time
import libvirt, libvirt_qemu
dom = libvirt.open("qemu:///system").lookupByName("win11")
def agent(c):
    return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(c), 30, 0))["return"]
pid = agent({"execute": "guest-exec", "arguments": {"path": "/bin/sh", "arg": ["-c", SCRIPT]}})["pid"]
deadline = time.monotonic() + 300
while not agent({"execute": "guest-exec-status", "arguments": {"pid": pid}})["exited"]:
    if time.monotonic() > deadline:
        sys.exit("the script in win11 did not finish within 300 s")
    time.sleep(0.2)"""


def extra_guests(count: int, state: str = "shutdown") -> list[dict]:
    """Small BIOS guests, shut off, as a generator would write them (no NVRAM file each)."""
    return [{"name": "bench%04d" % i, "firmware": "bios", "cpu_mode": "custom", "cpu_model": "Nehalem",
             "memory": "128M", "vcpus": 1, "graphics": "none", "state": state, "purge": state == "absent",
             "disks": [{"name": "bench%04d.qcow2" % i, "size": "64M"}]}
            for i in range(count)]


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="kvmlab-bench-"))
        self.rows: list[dict] = []
        self.env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                        ANSIBLE_FORCE_COLOR="0", ANSIBLE_CALLBACKS_ENABLED="task_count",
                        ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "molecule" / "shared" / "callback_plugins"),
                        PATH="%s:%s" % (Path(sys.executable).parent, os.environ.get("PATH", "")))

    def playbook(self, playbook: str, port: int, *extra: str, guests: list | None = None, cold: bool = False) -> dict:
        """One ansible-playbook run; returns its wall time, CPU seconds, counts and recap. `cold`:
        on a new SSH connection (its own ControlPath directory), closed after the run."""
        count_file = self.tmp / "count.json"
        count_file.unlink(missing_ok=True)
        args = ["ansible-playbook", "-i", INVENTORY, "-e", "ansible_port=%d" % port, playbook, *extra]
        if guests is not None:
            vars_file = self.tmp / "guests.json"
            vars_file.write_text(json.dumps({"kvmlab_guests": guests}))
            args += ["-e", "@%s" % vars_file]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        env = dict(self.env, KVMLAB_TASK_COUNT=str(count_file))
        if cold:
            env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = tempfile.mkdtemp(dir=self.tmp, prefix="cp-")
        proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False, cwd=PROJECT)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if cold:  # the SSH master this run left behind (ControlPersist)
            subprocess.run(["pkill", "-f", env["ANSIBLE_SSH_CONTROL_PATH_DIR"]], check=False)
        if proc.returncode != 0:
            sys.exit("bench: %s failed (rc %d):\n%s\n%s" % (" ".join(args), proc.returncode, proc.stdout[-4000:],
                                                            proc.stderr[-2000:]))
        counts = json.loads(count_file.read_text())
        changed = [int(line.split("changed=")[1].split()[0]) for line in proc.stdout.splitlines() if "changed=" in line]
        return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                "remote": counts["remote"], "packages": counts["package_seconds"], "changed": changed[-1],
                "by_task": counts["by_task"]}

    def row(self, label: str, what: str, runs: list[dict]) -> dict:
        row = {"label": label, "what": what, "runs": runs}
        for key in ("wall", "cpu", "remote", "packages", "changed"):
            row[key] = statistics.median(r[key] for r in runs)
        self.rows.append(row)
        print("bench: %-13s wall %6.2f s  cpu %6.2f s  remote %4d  changed %d" % (
            label, row["wall"], row["cpu"], row["remote"], row["changed"]), flush=True)
        return row

    def measure(self, label: str, what: str, run) -> dict:
        return self.row(label, what, [run() for _run in range(self.args.runs)])

    def pair(self, labels: tuple, whats: tuple, first, second) -> tuple[dict, dict]:
        """Two runs measured alternately, run by run: the medians of each."""
        runs: tuple[list, list] = ([], [])
        for _run in range(self.args.runs):
            runs[0].append(first())
            runs[1].append(second())
        return self.row(labels[0], whats[0], runs[0]), self.row(labels[1], whats[1], runs[1])

    def ssh(self, port: int, command: str) -> str:
        key = ROOT / ".kvmlab" / "ssh" / "id_ed25519"
        return subprocess.run(["ssh", "-p", str(port), "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o",
                               "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
                              capture_output=True, text=True, check=True).stdout

    def run(self) -> None:
        port, ping, extra = self.args.port, self.tmp / "ping.yml", self.args.extra
        ping.write_text(PING)
        self.playbook(str(ping), port)  # warm: the SSH connection is kept (ControlPersist), as in use
        self.playbook(PLAYBOOK, port)
        rows: dict = {}
        rows["floor"], rows["noop"] = self.pair(
            ("floor", "noop"), ("one ping task", "no-op of the demo site (3 guests, running)"),
            lambda: self.playbook(str(ping), port), lambda: self.playbook(PLAYBOOK, port))
        rows["check"] = self.measure("check", "the same with --check", lambda: self.playbook(PLAYBOOK, port, "--check"))
        rows["cold floor"], rows["cold noop"] = self.pair(
            ("cold floor", "cold noop"), ("one ping task, on a new SSH connection",
                                          "no-op of the demo site, on a new SSH connection"),
            lambda: self.playbook(str(ping), port, cold=True), lambda: self.playbook(PLAYBOOK, port, cold=True))
        guests = extra_guests(extra)
        try:
            start = time.monotonic()
            self.playbook(PLAYBOOK, port, guests=guests)  # define them (timed once, not a median)
            rows["define"] = time.monotonic() - start
            print("bench: define %d guests: %.1f s" % (extra, rows["define"]), flush=True)
            self.playbook(str(ping), port)  # the inventory cache now holds the new guests
            rows["floor+"], rows["noop+"] = self.pair(
                ("floor+%d" % extra, "noop+%d" % extra),
                ("one ping task, %d extra guests in the inventory" % extra,
                 "no-op of the demo site with %d extra guests, defined and shut off" % extra),
                lambda: self.playbook(str(ping), port), lambda: self.playbook(PLAYBOOK, port, guests=guests))
            rows["check+"] = self.measure("check+%d" % extra, "the same with --check",
                                          lambda: self.playbook(PLAYBOOK, port, "--check", guests=guests))
            drift_runs = []
            for i in range(self.args.runs):
                name = "bench%04d" % (extra // 2 + i)
                self.ssh(port, V + "setmaxmem %s 256M --config" % name)
                check = self.playbook(PLAYBOOK, port, "--check", guests=guests)
                repair = self.playbook(PLAYBOOK, port, guests=guests)
                if check["changed"] != 1 or repair["changed"] != 1:
                    sys.exit("bench: the drifted guest %s was not found and repaired (changed %d, %d)"
                             % (name, check["changed"], repair["changed"]))
                drift_runs.append((check, repair))
            rows["drift check"] = self.row("drift check", "one of the %d drifted: the --check run" % extra,
                                           [pair[0] for pair in drift_runs])
            rows["drift repair"] = self.row("drift repair", "one of the %d drifted: the run that repairs it" % extra,
                                            [pair[1] for pair in drift_runs])
        finally:
            start = time.monotonic()
            self.playbook(PLAYBOOK, port, guests=extra_guests(extra, "absent"))
            print("bench: remove %d guests and their disks: %.1f s" % (extra, time.monotonic() - start), flush=True)
        if self.args.boot:  # the demo's guests run the guest OS (demo_guest_os_enabled)
            rows["boot"] = self.boot(port)
        rows["backups"] = self.backups(port)
        if self.args.fresh_port:
            rows["fresh"] = self.row("fresh", "the demo site on a new container (first converge)",
                                     [self.fresh() for _run in range(min(self.args.runs, 3))])
        self.write(rows)

    def adhoc(self, port: int, module: str, args: dict) -> dict:
        """One module run on the demo (ansible ad hoc, one-line output): its result."""
        proc = subprocess.run(["ansible", "-i", INVENTORY, "-e", "ansible_port=%d" % port, "hypervisors", "-o",
                               "-m", module, "-a", json.dumps(args)], capture_output=True, text=True, env=self.env,
                              check=False, cwd=PROJECT)
        if proc.returncode != 0:
            sys.exit("bench: %s failed:\n%s\n%s" % (module, proc.stdout[-3000:], proc.stderr[-2000:]))
        return json.loads(proc.stdout.split("=>", 1)[1])

    def in_guest(self, port: int, script: str) -> None:
        """A shell script run inside win11 through its agent, bounded (300 s)."""
        self.ssh(port, "python3 - <<'EOF'\n%s\nEOF" % GUEST_EXEC.replace("SCRIPT", json.dumps(script)))

    def backups(self, port: int) -> dict:
        """win11's backups and restore against cp of the same disk (see the module docstring)."""
        dest = "/mnt/vm/bench-backups"
        disk = "/mnt/vm/win11.qcow2"
        # keep 1: each full backup prunes the one before (the demo's 4 GiB /mnt/vm holds few copies).
        args = {"guests": ["win11"], "dest": dest, "keep": 1, "max_incrementals": 1000}
        out: dict = {"cp": [], "full": []}
        # The guest booted with the site's run just before: its agent answers first (the rows write inside).
        self.ssh(port, "deadline=$((SECONDS + 420)); until %s qemu-agent-command win11 '{\"execute\": \"guest-ping\"}' "
                       "--timeout 2 >/dev/null 2>&1; do [ $SECONDS -lt $deadline ] || "
                       "{ echo 'win11: no agent within 420 s' >&2; exit 1; }; sleep 1; done" % V)
        try:
            for _run in range(self.args.runs):
                script = CP % (disk, *(["/mnt/vm/bench-cp.qcow2"] * 3))
                copy = self.ssh(port, "python3 -c %s" % shlex.quote(script)).split()
                out["cp"].append({"bytes": int(copy[0]), "seconds": float(copy[1])})
                full = self.adhoc(port, "kvmlab.hypervisor.libvirt_backup", dict(args, mode="full"))
                taken = full["backups"]["win11"]
                written = int(self.ssh(port, "du -B1 %s/vda.qcow2 | cut -f1" % taken["path"]))
                out["full"].append({"bytes": written, "seconds": taken["seconds"]})
            for mib in (10, 100):
                self.in_guest(port, "dd if=/dev/urandom of=/var/lib/bench-%d bs=1M count=%d conv=fsync status=none"
                                    " && sync" % (mib, mib))
                taken = self.adhoc(port, "kvmlab.hypervisor.libvirt_backup", args)["backups"]["win11"]
                if taken["kind"] != "incremental":
                    sys.exit("bench: the backup after %d MiB written was %s, not incremental" % (mib, taken["kind"]))
                copied = int(self.ssh(port, "du -B1 %s/vda.qcow2 | cut -f1" % taken["path"]))
                out["inc%d" % mib] = {"written": mib << 20, "bytes": copied, "seconds": taken["seconds"]}
            start = time.monotonic()
            restored = self.adhoc(port, "kvmlab.hypervisor.libvirt_restore",
                                  {"guest": "win11", "source": dest, "overwrite": True})
            out["restore"] = {"seconds": time.monotonic() - start, "chain": len(restored["backup"]["chain"]),
                              "bytes": int(self.ssh(port, "du -B1 %s | cut -f1" % disk))}
        finally:
            self.ssh(port, "rm -rf %s /mnt/vm/bench-cp.qcow2 /mnt/vm/*.pre-restore-*" % dest)
        for key in ("cp", "full"):
            out[key + "_median"] = {k: statistics.median(r[k] for r in out[key]) for k in ("bytes", "seconds")}
        print("bench: backups       full %.2f s, cp %.2f s, restore %.2f s" % (
            out["full_median"]["seconds"], out["cp_median"]["seconds"], out["restore"]["seconds"]), flush=True)
        return out

    def boot(self, port: int) -> float:
        """Seconds from starting the demo's three guests together until all their agents answer."""
        guests = "win11 arch kali"
        self.ssh(port, "for g in %s; do %s shutdown --mode acpi $g >/dev/null; done; for i in $(seq 180); do "
                       "[ -z \"$(%s list --name | grep -xE 'win11|arch|kali')\" ] && exit 0; sleep 1; done; "
                       "echo 'a guest did not power off within 180 s' >&2; exit 1" % (guests, V, V))
        start = time.monotonic()
        self.ssh(port, "for g in %s; do %s start $g >/dev/null; done; deadline=$((SECONDS + 600)); "
                       "for g in %s; do until %s qemu-agent-command $g '{\"execute\": \"guest-ping\"}' "
                       "--timeout 2 >/dev/null 2>&1; do [ $SECONDS -lt $deadline ] || "
                       "{ echo \"guest $g: no agent within 600 s\" >&2; exit 1; }; sleep 1; done; done"
                       % (guests, V, guests, V))
        seconds = time.monotonic() - start
        print("bench: boot          %6.1f s (three guests, start to agents answering)" % seconds, flush=True)
        return seconds

    def fresh(self) -> dict:
        name, port = "kvmlab-bench", self.args.fresh_port
        harness = str(ROOT / "tools" / "harness")
        subprocess.run([harness, "down", name], capture_output=True, check=False)
        subprocess.run([harness, "up", name, str(port)], capture_output=True, check=True)
        try:
            return self.playbook(PLAYBOOK, port)
        finally:
            subprocess.run([harness, "down", name], capture_output=True, check=False)

    def write(self, rows: dict) -> None:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                cwd=ROOT, check=False).stdout.strip()
        with open("/proc/meminfo", encoding="utf-8") as handle:
            mem_kib = int(next(line for line in handle if line.startswith("MemTotal")).split()[1])
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.machine())
        lines = [
            "# Benchmarks",
            "",
            "Written by `make bench` (tools/bench.py); do not edit by hand. Each figure is the median of %d runs;"
            " a no-op and its floor ran alternately, run by run." % self.args.runs,
            "",
            "| | |", "|---|---|",
            "| date | %s |" % datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "| commit | %s |" % commit,
            "| machine | %d cores (%s), %.1f GiB memory |" % (os.cpu_count(), model, mem_kib / 1024 / 1024),
            "| target | the demo container (tools/harness) on this machine, over SSH with a kept connection |",
            "",
            "| run | wall s | controller CPU s | remote task executions | changed | walls of the runs |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for row in self.rows:
            lines.append("| %s: %s | %.2f | %.2f | %d | %d | %s |" % (
                row["label"], row["what"], row["wall"], row["cpu"], row["remote"], row["changed"],
                ", ".join("%.2f" % r["wall"] for r in row["runs"])))
        extra = self.args.extra
        lines += ["", "Defining the %d extra guests (one site run): %.1f s." % (extra, rows["define"]),
                  "", "## Targets (issue 22)", "", "| target | measured | met |", "|---|---|---|"]
        targets = []
        for run, floor, label in (("noop", "floor", "no-op of the demo site"),
                                  ("check", "floor", "the same with --check"),
                                  ("cold noop", "cold floor", "the no-op, each run on a new SSH connection"),
                                  ("noop+", "floor+", "no-op with %d extra guests" % extra),
                                  ("check+", "floor+", "the same with --check")):
            ratio = rows[run]["wall"] / rows[floor]["wall"]
            targets.append(("%s within 3x its floor" % label, "%.1fx (%.2f s / %.2f s)" % (
                ratio, rows[run]["wall"], rows[floor]["wall"]), ratio <= 3))
            if not run.startswith("cold"):
                targets.append(("%s: at most 2.0 s of controller CPU" % label, "%.2f s" % rows[run]["cpu"],
                                rows[run]["cpu"] <= 2.0))
        per_guest = (rows["noop+"]["wall"] - rows["noop"]["wall"]) / extra
        targets += [
            ("each extra guest on a no-op (wall)", "%.4f s (+%d: %+.2f s)" % (
                per_guest, extra, rows["noop+"]["wall"] - rows["noop"]["wall"]), per_guest <= 0.01),
            ("remote task executions flat in the number of guests", "%d, %d (3, %d guests)" % (
                rows["noop"]["remote"], rows["noop+"]["remote"], 3 + extra),
             rows["noop"]["remote"] == rows["noop+"]["remote"]),
        ]
        if "fresh" in rows:
            fresh = rows["fresh"]
            rest = fresh["wall"] - fresh["packages"]
            targets.append(("fresh converge: no more than 20 s beyond the package installs",
                            "%.1f s total, %.1f s packages, %.1f s the rest" % (fresh["wall"], fresh["packages"], rest),
                            rest <= 20))
        if "boot" in rows:
            targets.append(("the demo's three guests boot together in at most 90 s (start to agents answering)",
                            "%.1f s" % rows["boot"], rows["boot"] <= 90))
        for label, measured, met in targets:
            lines.append("| %s | %s | %s |" % (label, measured, "yes" if met else "**no**"))
        for key, title in (("noop", "a no-op (3 guests)"), ("noop+", "a no-op with %d extra guests" % extra)):
            lines += ["", "## The remote task executions of %s" % title, "", "| task | executions |", "|---|---:|"]
            lines += ["| %s | %d |" % (task, n) for task, n in rows[key]["runs"][-1]["by_task"].items()]
        lines += self.backup_lines(rows["backups"])
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")
        print("bench: wrote %s" % out)

    def backup_lines(self, b: dict) -> list[str]:
        full, cp = b["full_median"], b["cp_median"]
        # Throughput of the same disk: cp copies its file as it is (zlib-compressed clusters and all),
        # the backup job writes what the guest reads, so the bytes differ and the seconds compare.
        rate = cp["seconds"] / full["seconds"]
        lines = ["", "## Backups", "",
                 "win11 of the demo, running the guest OS; medians of %d alternating runs of each copy. A full"
                 " backup's time is the module's own: the copy by libvirt's backup job, `qemu-img check` and the"
                 " SHA-256 of every file." % len(b["full"]), "",
                 "| run | bytes written | seconds | MiB/s |", "|---|---:|---:|---:|"]
        for label, r in (("`cp --reflink=never --sparse=always` of win11.qcow2", cp), ("full backup of win11", full)):
            rate_mib = r["bytes"] / r["seconds"] / 2**20
            lines.append("| %s | %d | %.2f | %.1f |" % (label, r["bytes"], r["seconds"], rate_mib))
        for mib in (10, 100):
            r = b["inc%d" % mib]
            lines.append("| incremental backup after %d MiB written inside | %d (%.2fx the data written) | %.2f | |"
                         % (mib, r["bytes"], r["bytes"] / r["written"], r["seconds"]))
        r = b["restore"]
        lines.append("| restore of the %d-backup chain over the running guest (whole module run) | %d | %.2f | %.1f |"
                     % (r["chain"], r["bytes"], r["seconds"], r["bytes"] / r["seconds"] / 2**20))
        lines += ["", "| target (issue 21) | measured | met |", "|---|---|---|",
                  "| a full backup of win11's disk at least 80 %% of cp's throughput (cp's seconds / the backup's) "
                  "| %.0f %% | %s |"
                  % (rate * 100, "yes" if rate >= 0.8 else "**no**")]
        return lines

    def backup_only(self) -> None:
        """Just the backup rows, written over the "## Backups" section of --out (or appended)."""
        out = Path(self.args.out)
        text = out.read_text() if out.exists() else "# Benchmarks\n"
        text = re.sub(r"\n## Backups\n.*?(?=\n## |\Z)", "", text, flags=re.S).rstrip("\n") + "\n"
        out.write_text(text + "\n".join(self.backup_lines(self.backups(self.args.port))) + "\n")
        print("bench: wrote the backup rows to %s" % out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--port", type=int, default=22220, help="the demo container's SSH port")
    parser.add_argument("--fresh-port", type=int, default=0, help="port for the fresh container (0: skip)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--extra", type=int, default=1000, help="extra guests for the rows at scale")
    parser.add_argument("--boot", action="store_true",
                        help="also time the boot of the demo's guests (they must run the guest OS)")
    parser.add_argument("--backup-only", action="store_true", help="only the backup rows (see above)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    args = parser.parse_args()
    if args.backup_only:
        Bench(args).backup_only()
    else:
        Bench(args).run()


if __name__ == "__main__":
    main()
