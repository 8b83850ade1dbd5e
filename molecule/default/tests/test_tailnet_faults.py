"""The tailnet hook in a misbehaving world, and turning the tailnet off, against the real
libvirtd and firewall of this scenario (its guest is the namespace stand-in of
molecule/shared/tests/test_tailnet.py, whose fixtures it uses): broken settings and a missing
firewall tool never take the network down, a rule of a bridge that left the settings goes, and
turning the tailnet off removes the hook, its rules and its settings. Scenario default only: the
scenario guests checks the way in with its real win11 and needs no second run of these."""

from __future__ import annotations

import json

import pytest
from conftest import run_site

# fake_tailscale and tailnet: the fixtures this module uses (through pytestmark), found by pytest
# in its namespace.
# pylint: disable-next=unused-import
from test_tailnet import HOOK, OFF, ON, REAL, fake_tailscale, probe, tailnet  # noqa: F401


@pytest.fixture(scope="module")
def hooked(request):
    """The tailnet on: the hook, its settings and its rule in place, the peer let in (after the
    tailnet's stand-ins)."""
    request.getfixturevalue("tailnet")
    run = run_site("-e", ON)
    assert run.rc == 0, run


pytestmark = pytest.mark.usefixtures("tailnet", "hooked")


CONFIG = "/etc/libvirt/hooks/kvmlab-tailnet.json"
RESTART_NETWORK = ("virsh -c qemu:///system net-destroy default && virsh -c qemu:///system net-start default"
                   + ("" if REAL else " && ip link set kvmlab-vg0 master virbr0 up"))
REATTACH = "systemctl restart libvirtd && virsh -c qemu:///system version >/dev/null"


@pytest.mark.parametrize("broken", [None, "", "{not json", '{"networks": {"default": {"bridge": "virbr0"}}}',
                                    '["a list"]'], ids=["missing", "empty", "malformed", "no-routes", "list"])
def test_a_broken_hook_config_never_takes_the_network_down(host, site, summary, broken):
    """libvirt stops a network whose started hook fails: with its settings missing, empty or
    malformed, the hook logs to the journal and libvirt starts the network; the role repairs it."""
    since = host.check_output("date +%s")
    host.run_test("rm -f %s" % CONFIG if broken is None else "printf '%%s' '%s' > %s" % (broken, CONFIG))
    started = host.run(RESTART_NETWORK)
    assert started.rc == 0, started.stderr
    assert "Active:         yes" in host.check_output("virsh -c qemu:///system net-info default")
    journal = host.check_output("journalctl -q -t kvmlab-tailnet --since @%s -o cat" % since)
    assert "network default" in journal and "stays up" in journal and "Run the network role" in journal, journal
    host.run_test(REATTACH)
    run = site("-e", ON)
    assert run.rc == 0 and run.changed >= 1, run
    assert probe(host, "connected").startswith("connected")
    summary["hook faults survived"] += 1


def test_without_nft_and_iptables_the_hook_exits_0_and_says_why(host, summary):
    """No firewall tool on PATH: libvirt's call still succeeds, with the reason on stderr; the
    role's own call fails."""
    started = host.run("env -i PATH=/kvmlab-nothing-here /usr/bin/python3 %s default started begin -" % HOOK)
    assert started.rc == 0, started
    assert "neither libvirt's nftables chain nor iptables' FORWARD chain can be read" in started.stderr, started
    assert "the network stays up" in started.stderr, started
    ensure = host.run("env -i PATH=/kvmlab-nothing-here /usr/bin/python3 %s default ensure" % HOOK)
    assert ensure.rc == 1, ensure
    summary["hook faults survived"] += 1


def test_a_rule_for_a_bridge_that_left_the_settings_is_removed(host, site):
    host.run_test("iptables -w -I FORWARD 1 -i tailscale0 -o virbr9 -d 10.9.0.0/24 -m comment --comment "
                  "'kvmlab-tailnet 10.9.0.0/24' -j ACCEPT")
    check = site("--check", "-v", "-e", ON)
    assert check.rc == 0 and check.changed == 1, check
    assert "virbr9" in host.check_output("iptables -w -S FORWARD")
    run = site("-e", ON)
    assert run.rc == 0 and run.changed == 1, run
    assert "would remove default: the rule -A FORWARD -d 10.9.0.0/24" in " ".join(check.stdout.split()), check
    rules = host.check_output("iptables -w -S FORWARD")
    assert "virbr9" not in rules and "kvmlab-tailnet 192.168.122.0/24" in rules
    assert probe(host, "connected").startswith("connected")


@pytest.mark.parametrize("off", [OFF, json.dumps({"kvmlab_network_tailscale_enabled": False})],
                         ids=["allow_in-off", "tailscale-off"])
def test_turning_the_tailnet_off_removes_the_hook_its_settings_and_its_rules(host, site, off):
    """Turning kvmlab_network_tailscale_allow_in (or the whole tailnet) off: --check names what would go
    and removes nothing; the real run removes the hook, its settings and its rules; then changed=0,
    and turning it on again brings all back."""
    run = site("-e", ON)
    assert run.rc == 0 and probe(host, "connected").startswith("connected"), run
    check = site("--check", "-v", "-e", off)
    assert check.rc == 0 and check.changed == 1, check
    assert "would remove %s" % HOOK in " ".join(check.stdout.split()), check
    assert host.file(HOOK).exists and host.file(CONFIG).exists
    assert "kvmlab-tailnet" in host.check_output("iptables -w -S FORWARD")
    removed = site("-e", off)
    assert removed.rc == 0 and removed.changed == 1, removed
    assert not host.file(HOOK).exists and not host.file(CONFIG).exists
    assert "kvmlab-tailnet" not in host.check_output("iptables -w -S FORWARD")
    assert probe(host, "refused").startswith("refused")
    again = site("-e", off)
    assert again.rc == 0 and again.changed == 0, again
    back = site("-e", ON)
    assert back.rc == 0, back
    assert probe(host, "connected").startswith("connected")
