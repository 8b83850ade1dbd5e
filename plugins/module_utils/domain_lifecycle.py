# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A defined guest's lifecycle: autostart, start (from a saved state too), resume or wake a
paused or suspended guest, and a graceful shutdown with a deadline, forced only when allowed.

Each function takes the guest's run (`params`: its options; `check_mode`; `warn`), appends what it
does (or would do, in check mode) to `actions`, and raises KvmlabError when libvirt or the guest
does not do what was asked."""

from __future__ import annotations

import time

from ansible_collections.kvmlab.hypervisor.plugins.module_utils import libvirt_common as lc
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.domain_preflight import check_tpm_sockets
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.errors import KvmlabError

STATE_NAMES = {3: "paused", 7: "suspended"}  # VIR_DOMAIN_PAUSED, VIR_DOMAIN_PMSUSPENDED; others: running


def wake(run, dom, name: str, actions: list) -> None:
    """A paused or suspended (S3) guest is resumed: it is to run, or to hear an ACPI shutdown."""
    libvirt = lc.libvirt
    state = dom.state()[0]
    if state not in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):
        return
    actions.append("resume" if state == libvirt.VIR_DOMAIN_PAUSED else "wakeup")
    if run.check_mode:
        return
    try:
        if state == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
        else:
            dom.pMWakeup(0)
    except libvirt.libvirtError as exc:
        raise KvmlabError("guest %s is %s and did not %s: %s" % (
            name, "paused" if state == libvirt.VIR_DOMAIN_PAUSED else "suspended", actions[-1], exc),
            actions=actions, changed=len(actions) > 1) from None


def stop(run, dom, name: str, actions: list) -> None:
    """Shut the guest down gracefully, waiting up to shutdown_timeout; force it off only with
    force_stop."""
    if not dom.isActive():
        return
    wake(run, dom, name, actions)
    actions.append("shutdown")
    if run.check_mode:
        return
    try:
        dom.shutdown()
    except lc.libvirt.libvirtError as exc:
        if dom.isActive():
            raise KvmlabError("guest %s: the shutdown request failed: %s" % (name, exc), actions=actions) from None
    deadline = time.monotonic() + run.params["shutdown_timeout"]
    while dom.isActive() and time.monotonic() < deadline:
        time.sleep(1)
    if dom.isActive():
        if not run.params["force_stop"]:
            raise KvmlabError(
                "guest %s did not shut down within %d s of the shutdown request (guest agent or ACPI: its OS "
                "ignores it, or has not booted). Shut it down from inside, raise shutdown_timeout, or set "
                "force_stop: true to force it off like pulling the plug." % (name, run.params["shutdown_timeout"]),
                actions=actions, changed=len(actions) > 1)
        dom.destroy()
        actions.append("force_stop")


def _show(result: dict, name: str, before: str, after: str) -> None:
    """The lifecycle's --diff section, next to the XML's."""
    result.setdefault("diff", [])
    if isinstance(result["diff"], dict):
        result["diff"] = [result["diff"]]
    result["diff"].append({"before_header": "guest %s lifecycle" % name, "before": before,
                           "after_header": "guest %s lifecycle" % name, "after": after})


def converge(run, dom, name: str, result: dict) -> None:
    """Autostart, then start or stop, as the guest's state and autostart options say; with
    allow_restart, a running guest whose definition changed (result's restart_required) is
    restarted."""
    params, actions = run.params, result["actions"]
    active = bool(dom is not None and dom.isActive())
    autostart = False if dom is None else bool(dom.autostart())
    shown = STATE_NAMES.get(dom.state()[0], "running") if active else "shut off"
    before = "state: %s\nautostart: %s\n" % (shown, autostart)
    after = "state: %s\nautostart: %s\n" % ("running" if params["state"] == "running" else "shut off",
                                            params["autostart"])
    if before != after or (active and result["restart_required"] and params["allow_restart"]):
        _show(result, name, before, after)
    if autostart != params["autostart"]:
        actions.append("autostart_on" if params["autostart"] else "autostart_off")
        if dom is not None and not run.check_mode:
            dom.setAutostart(1 if params["autostart"] else 0)
    if params["state"] == "running":
        if active and result["restart_required"] and params["allow_restart"]:
            stop(run, dom, name, actions)
            active = False if run.check_mode else bool(dom.isActive())
            result["restart_required"] = False
        if active:
            wake(run, dom, name, actions)
        else:
            saved = dom is not None and dom.hasManagedSaveImage(0)
            actions.append("start" if not saved else "start from its saved state")
            if not run.check_mode:
                check_tpm_sockets(name, dom.XMLDesc(0), actions)
                try:
                    dom.create()
                except lc.libvirt.libvirtError as exc:
                    raise KvmlabError("guest %s is defined but did not start: %s" % (name, exc),
                                      actions=actions, changed=len(actions) > 1) from None
    elif active:
        stop(run, dom, name, actions)
        result["restart_required"] = False
    if result["restart_required"]:
        run.warn("guest %s is running with its old definition; the change applies at its next boot "
                 "(or set allow_restart: true)." % name)
