"""A host whose libvirt runs as upstream's modular daemons (virtqemud and the rest) converges to
libvirtd, the seed's daemon: the role detects the modular units before any change, stops and
disables them, and enables libvirtd's; the two are never left fighting over the host.

Debian's libvirt ships libvirtd only (no virtqemud in the Contents of bookworm, trixie or sid),
so the modular units here are stand-ins with the unit relations of upstream's templates
(src/virtd.service.in: Conflicts=libvirtd.service; src/virtd{,-ro,-admin}.socket.in:
Conflicts=libvirtd{,-ro,-admin}.socket), the ones Arch's libvirt package installs. Their
processes are placeholders and their sockets listen away from libvirt's paths: what is under
test is systemd's view of the units and the role's handling of it, not the daemons.
"""

from __future__ import annotations

import pytest

V = "virsh -c qemu:///system "
LIBVIRTD = ["libvirtd.socket", "libvirtd-ro.socket", "libvirtd-admin.socket"]


def standin_units(daemon: str) -> dict[str, str]:
    sockets = {"": "libvirtd.socket", "-ro": "libvirtd-ro.socket", "-admin": "libvirtd-admin.socket"}
    units = {"%s.service" % daemon: (
        "[Unit]\nDescription=stand-in for libvirt's %s (upstream's unit relations)\n"
        "Conflicts=libvirtd.service\nAfter=libvirtd.service\n"
        "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n" % daemon)}
    for suffix, conflict in sockets.items():
        units["%s%s.socket" % (daemon, suffix)] = (
            "[Unit]\nDescription=stand-in for libvirt's %s%s socket\nBefore=%s.service\n"
            "Conflicts=%s\nAfter=%s\n[Socket]\nListenStream=/run/kvmlab-standin/%s%s-sock\nService=%s.service\n"
            "[Install]\nWantedBy=sockets.target\n"
            % (daemon, suffix, daemon, conflict, conflict, daemon, suffix, daemon))
    return units


UNITS = {**standin_units("virtqemud"), **standin_units("virtnetworkd")}
ENABLED = ["virtqemud.socket", "virtqemud-ro.socket", "virtqemud-admin.socket", "virtnetworkd.socket",
           "virtqemud.service"]


def state(host, unit: str) -> tuple[str, str]:
    return (host.run("systemctl is-enabled %s" % unit).stdout.strip(),
            host.run("systemctl is-active %s" % unit).stdout.strip())


def running(host) -> list[str]:
    return sorted(host.check_output(V + "list --name").split())


@pytest.fixture
def modular(host):
    """The stand-ins enabled and started; yields the guests that ran before."""
    before = running(host)
    for name, content in UNITS.items():
        host.run_test("cat > /etc/systemd/system/%s <<'EOF'\n%sEOF" % (name, content))
    host.run_test("systemctl daemon-reload && systemctl enable --now %s" % " ".join(ENABLED))
    yield before
    host.run("systemctl disable --now %s" % " ".join(UNITS))
    host.run("rm -f %s && systemctl daemon-reload" % " ".join("/etc/systemd/system/" + u for u in UNITS))
    host.run("systemctl start %s" % " ".join(LIBVIRTD))


def test_modular_daemons_enabled_first_give_way_to_libvirtd(host, site, modular):
    # The fight the role must end: starting the modular units stopped libvirtd's (Conflicts=).
    assert state(host, "virtqemud.socket") == ("enabled", "active")
    assert state(host, "libvirtd.socket")[1] == "inactive"
    # Detected before any change: the check run names them and changes nothing.
    check = site("--check", "-v", "--tags", "host_service")
    assert check.rc == 0 and check.changed >= 1, check
    said = " ".join(check.stdout.split())
    # Sorted, the sockets first (stopping a service cannot start it again through its socket).
    assert ("stdout: would stop and disable virtnetworkd.socket virtqemud-admin.socket virtqemud-ro.socket "
            "virtqemud.socket virtqemud.service") in said, check
    assert state(host, "virtqemud.socket") == ("enabled", "active")
    run = site()
    assert run.rc == 0 and run.changed >= 1, run
    for unit in UNITS:
        assert state(host, unit) == ("disabled", "inactive"), unit
    for unit in LIBVIRTD:
        assert state(host, unit) == ("enabled", "active"), unit
    # The guests that ran kept running, and libvirtd answers for them.
    assert running(host) == modular
    again = site()
    assert again.rc == 0 and again.changed == 0, again
