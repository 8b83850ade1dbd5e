"""Molecule helpers for checking guests from inside: commands run in a guest through its QEMU guest
agent (libvirt's qemuAgentCommand on the test host), every wait bounded and named. The fixture
`guests` (molecule/conftest.py) gives a Guests for the scenario's host."""

from __future__ import annotations

import base64
import json
import shlex
import time
import xml.etree.ElementTree as ET

V = "virsh -c qemu:///system "
GUESTS = ("win11", "arch", "kali")
# How long a booted guest may take to get its agent up: UEFI guests boot under TCG here, three
# at once on two cores (about a minute measured; see docs/TESTING.md).
BOOT_TIMEOUT = 420
# A guest's first boot, as the scenario's converge started it, can hang under TCG on a loaded host
# (measured: kali's console stopped after SYSLINUX's banner, and booted at the next start). The
# fixture's first wait resets a guest once when its agent is silent this long; a test's own waits
# (after a restore, a restart) never do, so a guest that does not boot fails its test.
FIRST_BOOT_RESET_AFTER = 240
HELPER = "/usr/local/bin/kvmlab-guest-agent"

# Runs in the test host (python3-libvirt is there: the host role installs it). One call: wait
# for a guest's agent, or run one command in the guest and wait for it, within a deadline.
AGENT_HELPER = r'''#!/usr/bin/python3
"""kvmlab-guest-agent NAME SECONDS ping | exec B64JSON: the guest agent of NAME, bounded in time."""
import base64, json, sys, time
import libvirt, libvirt_qemu

libvirt.registerErrorHandler(lambda *_: None, None)
name, seconds, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + seconds
dom = libvirt.open("qemu:///system").lookupByName(name)


def agent(command, timeout=5):
    return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(command), timeout, 0))["return"]


def give_up(what, error=""):
    sys.exit("guest %s: %s within %g s%s" % (name, what, seconds, (": %s" % error) if error else ""))


if mode == "ping":
    while True:
        try:
            agent({"execute": "guest-ping"}, 2)
            sys.exit(0)
        except libvirt.libvirtError as e:
            if time.monotonic() > deadline:
                give_up("its guest agent did not answer", e)
            time.sleep(1)
request = json.loads(base64.b64decode(sys.argv[4]))
arguments = {"path": request["argv"][0], "arg": request["argv"][1:], "capture-output": True}
if request.get("input") is not None:
    arguments["input-data"] = request["input"]
try:
    pid = agent({"execute": "guest-exec", "arguments": arguments})["pid"]
except libvirt.libvirtError as e:
    give_up("guest-exec of %r failed" % request["argv"], e)
while True:
    status = agent({"execute": "guest-exec-status", "arguments": {"pid": pid}})
    if status["exited"]:
        print(json.dumps({"rc": status.get("exitcode", status.get("signal", -1)),
                          "out": base64.b64decode(status.get("out-data", "")).decode("utf-8", "replace"),
                          "err": base64.b64decode(status.get("err-data", "")).decode("utf-8", "replace")}))
        sys.exit(0)
    if time.monotonic() > deadline:
        give_up("%r did not finish" % request["argv"])
    time.sleep(0.2)
'''


class Guests:
    """The test host's guests, reached through their agents."""

    def __init__(self, host):
        self.host = host
        host.run_test("cat > %s <<'EOF'\n%sEOF\nchmod 0755 %s" % (HELPER, AGENT_HELPER, HELPER))

    def wait(self, names, timeout: float = BOOT_TIMEOUT) -> float:
        """Wait until every guest in names has its agent answering; seconds it took."""
        start = time.monotonic()
        for name in names:
            left = max(timeout - (time.monotonic() - start), 1)
            run = self.host.run("%s %s %s ping", HELPER, name, str(int(left)))
            assert run.rc == 0, run.stderr + self.console_tail(name)
        return time.monotonic() - start

    def first_boot(self, names) -> list[str]:
        """The fixture's wait for the guests the converge started: a guest whose agent is silent
        for FIRST_BOOT_RESET_AFTER seconds is reset once, and said so; the names of those reset."""
        reset = []
        for name in names:
            if self.host.run("%s %s %s ping", HELPER, name, str(FIRST_BOOT_RESET_AFTER)).rc != 0:
                print("guest %s: no agent after %d s, reset once (a first boot stuck under TCG)%s"
                      % (name, FIRST_BOOT_RESET_AFTER, self.console_tail(name)))
                self.host.run_test(V + "reset " + name)
                reset.append(name)
        self.wait(names)
        return reset

    def exec(self, name: str, argv: list, timeout: float = 60, data: bytes | None = None) -> dict:
        request = {"argv": argv, "input": base64.b64encode(data).decode() if data is not None else None}
        payload = base64.b64encode(json.dumps(request).encode()).decode()
        run = self.host.run("%s %s %s exec %s", HELPER, name, str(int(timeout)), payload)
        assert run.rc == 0, run.stderr
        return json.loads(run.stdout)

    def sh(self, name: str, script: str, timeout: float = 60, ok: bool = True) -> str:
        """Run a shell script in the guest; its stdout (rc 0 required unless ok is False)."""
        result = self.exec(name, ["/bin/sh", "-c", script], timeout)
        if ok:
            assert result["rc"] == 0, "guest %s: %r -> %r" % (name, script, result)
        return result["out"]

    def xml(self, name: str, inactive: bool = False) -> ET.Element:
        return ET.fromstring(self.host.check_output(V + "dumpxml %s%s" % ("--inactive " if inactive else "", name)))

    def state(self, name: str) -> str:
        return self.host.check_output(V + "domstate " + name)

    def wait_state(self, name: str, state: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.state(name) != state:
            assert time.monotonic() < deadline, "guest %s: not %s within %g s (%s)%s" % (
                name, state, timeout, self.state(name), self.console_tail(name))
            time.sleep(1)

    def console(self, name: str) -> str:
        """What the guest wrote on its serial console (firmware, boot loader, kernel)."""
        return self.host.run("cat %s", "/var/log/libvirt/qemu/%s-console.log" % name).stdout

    def console_tail(self, name: str) -> str:
        return "\n--- %s's console, last lines:\n%s" % (name, "\n".join(self.console(name).splitlines()[-25:]))


def q(text: str) -> str:
    return shlex.quote(text)
