"""Check mode and libvirt errors never hide: with libvirtd down on an installed host, the site's
reading of libvirt's guests falls back to their persistent definitions (so the checks against
the guests libvirt has still hold), and the check run fails on the libvirt error instead of
predicting a change. Only "libvirt is not installed yet" is excused (molecule/debian13's fresh
host runs --check first)."""

from __future__ import annotations

import json

import pytest
from test_bad_input import GHOST_MAC, GHOST_XML, override

V = "virsh -c qemu:///system "
UNITS = "libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket"


@pytest.fixture
def daemon_down(host):
    """A guest libvirt has and the inventory does not list (ghost), then libvirtd stopped with its
    sockets, so that nothing can start it."""
    host.run_test("cat > /tmp/ghost.xml <<'EOF'\n%s\nEOF\n" % GHOST_XML + V + "define /tmp/ghost.xml")
    host.run_test("systemctl stop %s" % UNITS)
    yield
    host.run_test("systemctl start libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket")
    host.run_test(V + "undefine ghost")


def test_a_collision_with_a_guest_libvirt_has_is_found_with_libvirtd_down(host, site, daemon_down, summary):
    run = site("--check", "-e", json.dumps(override(
        "kali", interfaces=[{"network": "default", "boot_rom": False, "mac": GHOST_MAC}])))
    said = " ".join((run.stdout + run.stderr).split())
    assert run.rc != 0 and run.changed == 0, run
    assert "read the persistent definitions from /etc/libvirt instead" in said, run
    assert "52:54:00:99:88:77 is already the MAC of guest ghost (defined in libvirt, not in the inventory)" in said, run
    summary["bad inputs refused"] += 1


def test_a_check_run_with_libvirtd_down_fails_on_the_libvirt_error(host, site, daemon_down):
    run = site("--check")
    said = " ".join((run.stdout + run.stderr).split())
    assert run.rc != 0 and run.failed == 1, run
    assert "Failed to connect socket" in said or "libvirt-sock" in said, run
    # Nothing was started by the check run.
    assert host.run("systemctl is-active libvirtd.socket").stdout.strip() == "inactive"
