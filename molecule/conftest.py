"""Helpers for the verify tests: run the collection's site playbook against the test host."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

# The collection as Python packages (ansible_collections.kvmlab.hypervisor.*) and the shared test
# helpers in tests/ (drift_values, guest_data, guest_agent), for tests that compute what the site
# builds or look inside its guests; and the shared verify tests, whose fixtures some reuse.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "collections"), str(ROOT / "tests"), str(ROOT / "molecule" / "shared" / "tests")]

from guest_agent import GUESTS, Guests  # noqa: E402  (found through the path above)


class SiteRun:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        recap = re.findall(r"changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", proc.stdout)
        self.changed = int(recap[-1][0]) if recap else None
        self.failed = int(recap[-1][1]) if recap else None

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return "SiteRun(rc=%s, changed=%s)\n--- stdout\n%s\n--- stderr\n%s" % (
            self.rc, self.changed, self.stdout[-6000:], self.stderr[-3000:])


def site_command(*extra: str, playbook_path: str = "kvmlab.hypervisor.site", env: dict | None = None) -> tuple:
    """The command line and environment that run kvmlab.hypervisor.site with this scenario's
    inventory (extra: more CLI arguments)."""
    playbook = Path(sys.executable).parent / "ansible-playbook"
    # Molecule's check guard (check_no_change) is for its own check step: these runs judge
    # their predictions themselves.
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", KVMLAB_CHECK_GUARD="0", **(env or {}))
    return [str(playbook), "-i", os.environ["MOLECULE_INVENTORY_FILE"], playbook_path, *extra], env


def run_site(*extra: str, playbook_path: str = "kvmlab.hypervisor.site", env: dict | None = None) -> SiteRun:
    """Run kvmlab.hypervisor.site with this scenario's inventory (extra: more CLI arguments)."""
    command, env = site_command(*extra, playbook_path=playbook_path, env=env)
    return SiteRun(subprocess.run(command, capture_output=True, text=True, env=env, check=False))


def reap(mark: str) -> None:
    """Kill the processes a killed run left in sessions of their own (ansible-playbook daemonises
    a helper that would otherwise wait forever on a pipe to the dead run)."""
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if ("KVMLAB_KILLED_RUN=%s" % mark).encode() in environ.read_bytes().split(b"\0"):
                os.kill(int(environ.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def killed_run(extra: tuple, header: str, then: str | None = None, seconds: int = 300) -> str:
    """Run the site and SIGKILL ansible-playbook (and its SSH children) once its output shows the
    task `header` and then, if given, a line with `then`. Returns the output up to there."""
    mark = "kvmlab-killed-%s" % uuid.uuid4().hex
    # PYTHONUNBUFFERED: each line as it happens; the mark finds what the run left behind.
    command, env = site_command(*extra, env={"PYTHONUNBUFFERED": "1", "KVMLAB_KILLED_RUN": mark})
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    seen, lines, deadline = False, [], time.monotonic() + seconds
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        seen = seen or header in line
        if (seen and (then is None or then in line)) or time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reap(mark)
    out = "".join(lines)
    assert seen and (then is None or then in lines[-1]), out
    return out


def hypervisor_vars() -> dict:
    """The connection variables of the scenario's one host, wherever its inventory puts them
    (Molecule's file: all.hosts; a hand-written inventory directory: under a group)."""
    def walk(group):
        for host_vars in (group.get("hosts") or {}).values():
            if host_vars and "ansible_port" in host_vars:
                yield host_vars
        for child in (group.get("children") or {}).values():
            yield from walk(child or {})

    path = Path(os.environ["MOLECULE_INVENTORY_FILE"])
    for file in sorted(path.glob("*.yml")) if path.is_dir() else [path]:
        inventory = yaml.safe_load(file.read_text()) or {}
        for host_vars in walk(inventory.get("all") or {}):
            return host_vars
    raise AssertionError("no host with ansible_port in %s" % path)


@pytest.fixture(scope="session")
def site():
    return run_site


@pytest.fixture(scope="session")
def guest():
    """Run molecule/default/guest.yml: one guest (or a list of them) through kvmlab.hypervisor.guest."""
    path = str(Path(__file__).parent / "default" / "guest.yml")

    def run(spec: dict | list, *extra: str) -> SiteRun:
        specs = spec if isinstance(spec, list) else [spec]
        return run_site("-e", json.dumps({"kvmlab_guests": specs}), *extra, playbook_path=path)

    return run


@pytest.fixture
def name(host):
    """A fresh guest name (the disk-source tests' throwaway guest), undefined and its files removed
    after the test. Test modules with guests of their own define their own `name`."""
    value = "src%s" % uuid.uuid4().hex[:6]
    yield value
    host.run("virsh -c qemu:///system undefine %s --nvram" % value)
    host.run("rm -f /mnt/vm/%s* /mnt/vm/.%s*" % (value, value))


def disk_source_spec(name: str, source: dict) -> dict:
    """A small shut-off BIOS guest whose one disk is prepared from `source`."""
    return {"name": name, "state": "shutdown", "firmware": "bios", "virt_type": "qemu", "memory": "128M",
            "vcpus": 1, "graphics": "none", "video": "none",
            "disks": [{"name": name + ".qcow2", "pool": "vm", "size": "64M", "source": source}]}


@pytest.fixture(scope="module")
def guests(host):
    """The demo's three guests booted into the guest OS (scenario guests): every agent answers
    (they boot once, with the converge; each test module waits for their agents again, which
    costs a ping each when they are up)."""
    g = Guests(host)
    if FIRST_BOOT:  # the first module only: later ones meet guests the tests have restarted
        FIRST_BOOT.clear()
        SUMMARY["first boots reset"] += len(g.first_boot(GUESTS))
    else:
        g.wait(GUESTS)
    return g


FIRST_BOOT = [True]


# The verify step's summary: every number is counted by the tests as their assertions pass.
SUMMARY: collections.Counter = collections.Counter()
SUMMARY_ROWS = [
    ("drift cases reported by --check", "drift reported"),
    ("drift cases repaired by the real run", "drift repaired"),
    ("drift cases with changed=0 on the run after", "drift changed=0 after"),
    ("bad inputs refused before any change", "bad inputs refused"),
    ("quoted names accepted verbatim", "quoted names verbatim"),
    ("guest states converged (paused, transient, saved, busy TPM)", "guest states converged"),
    ("interrupted runs recovered", "interrupted runs recovered"),
    ("misbehaving disk sources refused in bounded time", "misbehaving sources refused"),
    ("device merge cases defined by libvirt, then changed=0", "device merge cases defined"),
    ("tailnet hook faults with the network kept up", "hook faults survived"),
    ("link swaps refused during the admins' config write", "link swaps survived"),
    ("inventory listings with a guest defined and undefined under them", "inventory listings raced"),
    ("inventory listings that met a guest going (left out)", "inventory listings that met a guest going"),
    ("bytes of guest data compared (apparent sizes)", "guest data bytes checked"),
    ("bytes of guest data lost", "guest data bytes lost"),
    ("guests reset once, their first boot stuck under TCG", "first boots reset"),
]


@pytest.fixture(scope="session")
def summary() -> collections.Counter:
    return SUMMARY


def pytest_terminal_summary(terminalreporter):
    if not SUMMARY:
        return
    terminalreporter.write_sep("=", "kvmlab verify summary (counted in this run)")
    width = max(len(row[0]) for row in SUMMARY_ROWS)
    for label, key in SUMMARY_ROWS:
        terminalreporter.write_line("| %s | %8d |" % (label.ljust(width), SUMMARY[key]))


# Look at the converged host first; the tests that break and repair it come last.
MODULE_ORDER = ["test_host", "test_storage_network", "test_guests", "test_many_guests", "test_bad_input",
                "test_hostile_names", "test_guest_states", "test_workstation_check", "test_drift", "test_drift_values",
                "test_interrupted", "test_guest_lifecycle", "test_adopt", "test_disk_source",
                "test_disk_source_misbehaving", "test_device_merges", "test_new_vm",
                "test_storage_options", "test_inventory", "test_check_mode_errors", "test_admin_config",
                "test_tailscale", "test_modular_daemons", "test_two_hosts",
                # Scenario guests: look inside first; the tests that restart the guests come last.
                "test_inside", "test_reach_by_name", "test_tailnet", "test_boot", "test_secure_boot_enforced",
                "test_guest_data", "test_backup", "test_shutdown"]


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.module.__name__.rsplit(".", 1)[-1]
        return MODULE_ORDER.index(name) if name in MODULE_ORDER else len(MODULE_ORDER)

    items.sort(key=rank)


# A stand-in `tailscale` command (Tailscale's packages come from its own repository, which the
# test hosts cannot reach): the two calls the network role makes, over a state file.
FAKE_TAILSCALE = r"""#!/usr/bin/python3
import json, sys
STATE = "/run/fake-tailscale.json"
prefs = json.load(open(STATE))
if sys.argv[1:3] == ["debug", "prefs"]:
    print(json.dumps(prefs, indent=2))
elif sys.argv[1] == "set" and sys.argv[2].startswith("--advertise-routes="):
    prefs["AdvertiseRoutes"] = [r for r in sys.argv[2].split("=", 1)[1].split(",") if r]
    json.dump(prefs, open(STATE, "w"))
else:
    sys.exit("fake tailscale: unsupported call %r" % sys.argv[1:])
"""


@pytest.fixture
def tailscale(host):
    """The stand-in tailscale with one route advertised by other means; yields a reader of the
    advertised routes."""
    host.run_test("cat > /usr/local/bin/tailscale <<'EOF'\n" + FAKE_TAILSCALE
                  + "EOF\nchmod 0755 /usr/local/bin/tailscale")
    host.run_test("""echo '{"AdvertiseRoutes": ["10.9.0.0/16"], "WantRunning": true}' > /run/fake-tailscale.json""")
    yield lambda: json.loads(host.check_output("cat /run/fake-tailscale.json"))["AdvertiseRoutes"]
    host.run("rm -f /usr/local/bin/tailscale /run/fake-tailscale.json")
