"""The tailnet hook with libvirt's nftables backend (the upstream default, which Arch's libvirt
uses; Debian's uses iptables, tested through libvirt itself in molecule/shared/tests/test_tailnet.py).

libvirt 11 cannot start a NAT network with its nftables backend on these machines: it also adds
a `tc ... action csum` filter, and their kernel has no act_csum (measured: "Failed to load TC
action module"). So this test builds what libvirt's nftables backend writes for a NAT network -
table ip libvirt_network, its forward chain jumping to guest_input, and in guest_input the two
rules libvirt *inserts* (src/network/network_nftables.c: the reject, then the related/established
accept above it) - for a plain bridge, and runs the role's hook file (roles/network/files) on it
as libvirt would, with real nft and real traffic: rejected before, accepted after, rejected again
when libvirt re-inserts its rules on top (a network restart), accepted after the hook runs again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

HOOK = Path(__file__).resolve().parents[3] / "roles" / "network" / "files" / "kvmlab-tailnet-hook.py"
BRIDGE, NET, GUEST = "kvmlabnft0", "192.168.139.0/24", "192.168.139.50"
CONFIG = {"interface": "tailscale0", "networks": {"tailnft": {"bridge": BRIDGE, "routes": [NET]}}}
LIBVIRT_RULES = f"""nft insert rule ip libvirt_network guest_input oif {BRIDGE} counter reject
nft insert rule ip libvirt_network guest_input oif {BRIDGE} ip daddr {NET} ct state related,established counter accept
"""
SETUP = f"""set -e
ip netns add kvmlab-npeer
ip link add tailscale0 type veth peer name kvmlab-ntsp
ip link set kvmlab-ntsp netns kvmlab-npeer
ip addr add 100.64.0.1/24 dev tailscale0; ip link set tailscale0 up
ip -n kvmlab-npeer addr add 100.64.0.2/24 dev kvmlab-ntsp; ip -n kvmlab-npeer link set kvmlab-ntsp up
ip -n kvmlab-npeer link set lo up; ip -n kvmlab-npeer route add {NET} via 100.64.0.1
ip link add {BRIDGE} type bridge; ip addr add 192.168.139.1/24 dev {BRIDGE}; ip link set {BRIDGE} up
ip netns add kvmlab-nguest
ip link add kvmlab-nvg0 type veth peer name kvmlab-nvgp
ip link set kvmlab-nvgp netns kvmlab-nguest; ip link set kvmlab-nvg0 master {BRIDGE} up
ip -n kvmlab-nguest addr add {GUEST}/24 dev kvmlab-nvgp; ip -n kvmlab-nguest link set kvmlab-nvgp up
ip -n kvmlab-nguest link set lo up; ip -n kvmlab-nguest route add default via 192.168.139.1
nft add table ip libvirt_network
nft add chain ip libvirt_network forward '{{ type filter hook forward priority filter; policy accept; }}'
nft add chain ip libvirt_network guest_input
nft add rule ip libvirt_network forward counter jump guest_input
{LIBVIRT_RULES}systemd-run --unit kvmlab-nguest-listen \\
  ip netns exec kvmlab-nguest python3 -m http.server --bind {GUEST} 8080
"""
CLEANUP = f"""systemctl stop kvmlab-nguest-listen; ip netns del kvmlab-npeer; ip netns del kvmlab-nguest
ip link del tailscale0; ip link del kvmlab-nvg0; ip link del {BRIDGE}; nft delete table ip libvirt_network
rm -f /tmp/kvmlab-tailnet-hook /tmp/kvmlab-tailnet.json
"""
PROBE = f"""ip netns exec kvmlab-npeer python3 -c "
import socket
try:
    socket.create_connection(('{GUEST}', 8080), timeout=3)
    print('connected')
except OSError as exc:
    print('refused', exc)
"
"""
RUN = "KVMLAB_TAILNET_CONFIG=/tmp/kvmlab-tailnet.json /tmp/kvmlab-tailnet-hook tailnft "


def probe(host, expected: str) -> str:
    result = ""
    for _try in range(5):
        result = host.check_output(PROBE)
        if result.startswith(expected):
            return result
        time.sleep(1)
    return result


@pytest.fixture(scope="module")
def nft(host):
    assert host.run("nft list table ip libvirt_network").rc != 0, "libvirt already uses nftables here"
    host.run_test(SETUP)
    host.run_test("cat > /tmp/kvmlab-tailnet-hook <<'KVMLAB_END'\n#!/usr/bin/python3\n%sKVMLAB_END\n"
                  "chmod 0755 /tmp/kvmlab-tailnet-hook" % HOOK.read_text())
    host.run_test("echo '%s' > /tmp/kvmlab-tailnet.json" % json.dumps(CONFIG))
    reach = "python3 -c \"import socket; socket.create_connection(('%s', 8080), timeout=1)\"" % GUEST
    host.run_test("for i in $(seq 30); do %s && exit 0; sleep 0.3; done; exit 1" % reach)
    yield
    host.run(CLEANUP)


def ours(host) -> list[str]:
    chain = host.check_output("nft list chain ip libvirt_network guest_input").splitlines()
    rules = [line.strip() for line in chain if line.strip() and not line.strip().startswith(("chain", "table", "}"))]
    return [i for i, rule in enumerate(rules) if "kvmlab-tailnet" in rule] + [len(rules)]


def test_libvirts_nft_rules_reject_the_tailnet(host, nft):
    assert probe(host, "refused").startswith("refused")
    assert host.check_output(RUN + "check") == "would allow tailnft: new connections from tailscale0 to %s on %s" % (
        NET, BRIDGE)
    assert probe(host, "refused").startswith("refused")  # check changed nothing


def test_the_hook_puts_one_rule_on_top_of_libvirts_chain(host, nft):
    assert host.check_output(RUN + "started begin -").startswith("allowed tailnft")
    assert probe(host, "connected") == "connected"
    assert ours(host)[0] == 0 and len(ours(host)) == 2  # one rule, first in the chain
    assert host.check_output(RUN + "ensure") == ""  # nothing to do


def test_after_libvirt_reinserts_its_rules_the_hook_puts_ours_back_on_top(host, nft):
    host.run_test(LIBVIRT_RULES)
    assert probe(host, "refused").startswith("refused")
    # The displaced rule is removed (and said so), then made again on top.
    said = host.check_output(RUN + "started begin -").splitlines()
    assert said[0].startswith("removed tailnft: the rule ") and said[-1].startswith("allowed tailnft"), said
    assert probe(host, "connected") == "connected"
    assert ours(host)[0] == 0 and len(ours(host)) == 2
