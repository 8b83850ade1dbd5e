# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make bench`: how long a site run takes, against the demo container, written to
docs/BENCHMARKS.md.

Each figure is the median of RUNS runs (default 3) of ansible-playbook from this checkout:
wall time, the controller's CPU seconds (the runs' user + system time, from getrusage of the
children), and the remote task executions counted by the task_count callback
(molecule/shared/callback_plugins). Measured, in one call so that every ratio compares runs of
the same machine and moment:

  floor        one ping task
  noop         a no-op of the demo site (3 guests, running)
  cold ...     both again, each run on a new SSH connection (the others reuse one, ControlPersist)
  noop+30      the same with 30 extra guests defined and shut off (UEFI, one 1 GB disk each)
  noop+100     the same with 100 extra guests
  drift check  one of the 100 drifted (its memory changed in libvirt): a --check run ...
  drift repair ... and the run that repairs it
  fresh        the demo site on a new container (packages shown apart)
  boot         the demo's three guests (the guest OS, two of them under TCG) powered off by ACPI,
               then started together: seconds from `virsh start` until every guest agent answers
               (one run; with --boot, when the demo's guests run the guest OS)

The extra guests are plain specs (kvmlab_guests) and are removed with their disks at the end.
Usage: tools/bench.py --port 22220 [--fresh-port 22230] [--runs 3] [--out docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
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


def extra_guests(count: int, state: str = "shutdown") -> list[dict]:
    return [{"name": "bench%03d" % i, "firmware": "uefi", "memory": "512M", "vcpus": 1, "graphics": "none",
             "state": state, "purge": state == "absent", "disks": [{"name": "bench%03d.qcow2" % i, "size": "1G"}]}
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

    def measure(self, label: str, what: str, run) -> dict:
        runs = [run() for _run in range(self.args.runs)]
        row = {"label": label, "what": what, "runs": runs}
        for key in ("wall", "cpu", "remote", "packages", "changed"):
            row[key] = statistics.median(r[key] for r in runs)
        self.rows.append(row)
        print("bench: %-13s wall %6.2f s  cpu %6.2f s  remote %4d  changed %d" % (
            label, row["wall"], row["cpu"], row["remote"], row["changed"]), flush=True)
        return row

    def ssh(self, port: int, command: str) -> str:
        key = ROOT / ".kvmlab" / "ssh" / "id_ed25519"
        return subprocess.run(["ssh", "-p", str(port), "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o",
                               "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@127.0.0.1", command],
                              capture_output=True, text=True, check=True).stdout

    def run(self) -> None:
        port, ping = self.args.port, self.tmp / "ping.yml"
        ping.write_text(PING)
        self.playbook(str(ping), port)  # warm: the SSH connection is kept (ControlPersist), as in use
        floor = self.measure("floor", "one ping task", lambda: self.playbook(str(ping), port))
        noop = self.measure("noop", "no-op of the demo site (3 guests, running)", lambda: self.playbook(PLAYBOOK, port))
        rows = {"floor": floor, "noop": noop,
                "cold floor": self.measure("cold floor", "one ping task, on a new SSH connection",
                                           lambda: self.playbook(str(ping), port, cold=True)),
                "cold noop": self.measure("cold noop", "no-op of the demo site, on a new SSH connection",
                                          lambda: self.playbook(PLAYBOOK, port, cold=True))}
        try:
            for count in (30, 100):
                guests = extra_guests(count)
                self.playbook(PLAYBOOK, port, guests=guests)  # define them (not measured)
                rows[count] = self.measure(
                    "noop+%d" % count, "the same with %d extra guests, defined and shut off" % count,
                    lambda g=guests: self.playbook(PLAYBOOK, port, guests=g))
            drift_runs = []
            for i in range(self.args.runs):
                name = "bench%03d" % (50 + i)
                self.ssh(port, V + "setmaxmem %s 1G --config" % name)
                check = self.playbook(PLAYBOOK, port, "--check", guests=guests)
                repair = self.playbook(PLAYBOOK, port, guests=guests)
                if check["changed"] != 1 or repair["changed"] != 1:
                    sys.exit("bench: the drifted guest %s was not found and repaired (changed %d, %d)"
                             % (name, check["changed"], repair["changed"]))
                drift_runs.append((check, repair))
            for label, what, index in (("drift check", "one of the 100 drifted: the --check run", 0),
                                       ("drift repair", "one of the 100 drifted: the run that repairs it", 1)):
                runs = [pair[index] for pair in drift_runs]
                row = {"label": label, "what": what, "runs": runs,
                       **{key: statistics.median(r[key] for r in runs)
                          for key in ("wall", "cpu", "remote", "packages", "changed")}}
                self.rows.append(row)
                rows[label] = row
        finally:
            self.playbook(PLAYBOOK, port, guests=extra_guests(100, "absent"))
        if self.args.boot:  # the demo's guests run the guest OS (demo_guest_os_enabled)
            rows["boot"] = self.boot(port)
        if self.args.fresh_port:
            rows["fresh"] = self.measure("fresh", "the demo site on a new container (first converge)", self.fresh)
        self.write(rows)

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
            "Written by `make bench` (tools/bench.py); do not edit by hand. Each figure is the median of %d runs."
            % self.args.runs,
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
        lines += ["", "## Targets, as ratios of the runs above", "",
                  "| target | measured | met |", "|---|---|---|"]
        floor, noop = rows["floor"]["wall"], rows["noop"]["wall"]
        per_guest = (rows[100]["wall"] - noop) / 100
        cold_floor, cold_noop = rows["cold floor"]["wall"], rows["cold noop"]["wall"]
        targets = [
            ("no-op of the demo site at most 4x the floor", "%.1fx (%.2f s / %.2f s)" % (noop / floor, noop, floor),
             noop <= 4 * floor),
            ("the same, each run on a new SSH connection", "%.1fx (%.2f s / %.2f s)" % (
                cold_noop / cold_floor, cold_noop, cold_floor), cold_noop <= 4 * cold_floor),
            ("each extra guest on a no-op at most 0.1 s", "%.3f s (+100: %+.2f s; +30: %+.2f s)" % (
                per_guest, rows[100]["wall"] - noop, rows[30]["wall"] - noop), per_guest <= 0.1),
            ("remote task executions flat in the number of guests", "%d, %d, %d (3, 33, 103 guests)" % (
                rows["noop"]["remote"], rows[30]["remote"], rows[100]["remote"]),
             rows["noop"]["remote"] == rows[30]["remote"] == rows[100]["remote"]),
            ("controller CPU of the demo no-op at most 5 s (a third of 15 s)", "%.2f s" % rows["noop"]["cpu"],
             rows["noop"]["cpu"] <= 5),
        ]
        if "fresh" in rows:
            fresh = rows["fresh"]
            rest = fresh["wall"] - fresh["packages"]
            targets.append(("fresh converge: everything but the packages under 20 s",
                            "%.1f s total, %.1f s packages, %.1f s the rest" % (fresh["wall"], fresh["packages"], rest),
                            rest < 20))
        if "boot" in rows:
            targets.append(("the demo's three guests boot together in at most 90 s (start to agents answering)",
                            "%.1f s" % rows["boot"], rows["boot"] <= 90))
        for label, measured, met in targets:
            lines.append("| %s | %s | %s |" % (label, measured, "yes" if met else "**no**"))
        lines += ["", "## The remote task executions of a no-op with 103 guests", "",
                  "| task | executions |", "|---|---:|"]
        lines += ["| %s | %d |" % (task, n) for task, n in rows[100]["runs"][-1]["by_task"].items()]
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")
        print("bench: wrote %s" % out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--port", type=int, default=22220, help="the demo container's SSH port")
    parser.add_argument("--fresh-port", type=int, default=0, help="port for the fresh container (0: skip)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--boot", action="store_true",
                        help="also time the boot of the demo's guests (they must run the guest OS)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    Bench(parser.parse_args()).run()


if __name__ == "__main__":
    main()
