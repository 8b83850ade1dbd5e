"""Traffic from the tailnet to a guest, through libvirt's NAT rules for `default` (virbr0).

A veth named tailscale0, whose other end lives in its own network namespace, plays the remote
tailnet peer (100.64.0.2, routing 192.168.122.0/24 through this host). The guest is the real win11
at its reservation 192.168.122.136 in the scenario `guests`, where it runs the guest OS (whose TCP
service on port 7777 answers with its name); in the scenarios whose guests have no OS, a namespace
attached to virbr0 with an address from the DHCP range plays it, listening on TCP 8080. libvirt's
rules admit only replies into virbr0, so the peer's connection is rejected until the network
role's hook (kvmlab_network_tailscale_allow_in) puts its rule ahead of them; the rule survives a
libvirtd restart and comes back when libvirt restarts the network (libvirt runs the hook).
The backend here is the one Debian's libvirt uses (iptables); the nftables path is tested in
molecule/debian13/tests/test_tailnet_nft.py.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import FAKE_TAILSCALE

# The real guest where it has an OS, else the namespace that plays it.
REAL = os.environ.get("MOLECULE_SCENARIO_NAME") == "guests"
GUEST_IP, PORT = ("192.168.122.136", 7777) if REAL else ("192.168.122.250", 8080)
ON = json.dumps({"kvmlab_network_tailscale_enabled": True})
OFF = json.dumps({"kvmlab_network_tailscale_enabled": True, "kvmlab_network_tailscale_allow_in": False})
HOOK = "/etc/libvirt/hooks/network.d/50-kvmlab-tailnet"
PEER = """set -e
ip netns add kvmlab-peer
ip link add tailscale0 type veth peer name kvmlab-tsp
ip link set kvmlab-tsp netns kvmlab-peer
ip addr add 100.64.0.1/24 dev tailscale0; ip link set tailscale0 up
ip -n kvmlab-peer addr add 100.64.0.2/24 dev kvmlab-tsp; ip -n kvmlab-peer link set kvmlab-tsp up
ip -n kvmlab-peer link set lo up; ip -n kvmlab-peer route add 192.168.122.0/24 via 100.64.0.1
"""
STAND_IN = f"""set -e
ip netns add kvmlab-guest
ip link add kvmlab-vg0 type veth peer name kvmlab-vgp
ip link set kvmlab-vgp netns kvmlab-guest; ip link set kvmlab-vg0 master virbr0 up
ip -n kvmlab-guest addr add {GUEST_IP}/24 dev kvmlab-vgp; ip -n kvmlab-guest link set kvmlab-vgp up
ip -n kvmlab-guest link set lo up; ip -n kvmlab-guest route add default via 192.168.122.1
systemd-run --unit kvmlab-guest-listen ip netns exec kvmlab-guest python3 -m http.server --bind {GUEST_IP} {PORT}
"""
SETUP = PEER if REAL else PEER + STAND_IN
CLEANUP = f"""systemctl stop kvmlab-guest-listen; ip netns del kvmlab-peer; ip netns del kvmlab-guest
ip link del tailscale0; ip link del kvmlab-vg0
rm -f {HOOK} /etc/libvirt/hooks/kvmlab-tailnet.json
iptables -w -S FORWARD | grep kvmlab-tailnet | sed 's/^-A /-D /' | while read -r rule; do eval "iptables -w $rule"; done
"""
# The real guest's service speaks first (its name); the stand-in's HTTP server waits for a request.
PROBE = f"""ip netns exec kvmlab-peer python3 -c "
import socket
try:
    s = socket.create_connection(('{GUEST_IP}', {PORT}), timeout=3)
    print('connected', s.recv(64).decode().strip() if {REAL} else '')
except OSError as exc:
    print('refused', exc)
"
"""


def probe(host, expected: str) -> str:
    """The peer's TCP connection to the guest: 'connected' or 'refused ...'. A bridge port just
    attached may drop the first packets: a few tries before concluding."""
    result = ""
    for _try in range(5):
        result = host.check_output(PROBE)
        if result.startswith(expected):
            return result
        time.sleep(1)
    return result


@pytest.fixture(scope="module")
def tailnet(host, fake_tailscale, request):
    if REAL:
        request.getfixturevalue("guests")  # booted
    host.run_test(SETUP)
    # The guest answers from this host (no firewall between): what follows is about forwarding.
    reach = "python3 -c \"import socket; socket.create_connection(('%s', %d), timeout=1)\"" % (GUEST_IP, PORT)
    host.run_test("for i in $(seq 30); do %s && exit 0; sleep 0.3; done; exit 1" % reach)
    yield
    host.run(CLEANUP)


@pytest.fixture(scope="module")
def fake_tailscale(host):
    """The stand-in tailscale command (molecule/conftest.py), for the whole module."""
    host.run_test("cat > /usr/local/bin/tailscale <<'EOF'\n" + FAKE_TAILSCALE
                  + "EOF\nchmod 0755 /usr/local/bin/tailscale")
    host.run_test("""echo '{"AdvertiseRoutes": [], "WantRunning": true}' > /run/fake-tailscale.json""")
    yield
    host.run("rm -f /usr/local/bin/tailscale /run/fake-tailscale.json")


def test_libvirt_rejects_the_tailnet_without_the_rule(host, site, tailnet):
    run = site("-e", OFF)
    assert run.rc == 0, run
    assert not host.file(HOOK).exists
    assert probe(host, "refused").startswith("refused"), "libvirt's NAT rules let a new connection in"


def test_the_rule_lets_the_tailnet_in_and_nothing_else(host, site, tailnet, request):
    check = site("--check", "--diff", "-e", ON)
    assert check.rc == 0 and check.changed >= 1, check
    assert probe(host, "refused").startswith("refused")
    run = site("-e", ON)
    assert run.rc == 0, run
    connected = probe(host, "connected")
    assert connected.startswith("connected"), connected
    if REAL:  # the real win11 answered, by its name
        name = request.getfixturevalue("guests").sh("win11", "hostname").strip()
        assert connected == "connected kvmlab-guest " + name, connected
    # One rule, for that interface, bridge and route, ahead of libvirt's.
    rules = host.check_output("iptables -w -S FORWARD").splitlines()
    ours = [r for r in rules if "kvmlab-tailnet" in r]
    assert ours == ['-A FORWARD -d 192.168.122.0/24 -i tailscale0 -o virbr0 -m comment --comment '
                    '"kvmlab-tailnet 192.168.122.0/24" -j ACCEPT']
    assert rules.index(ours[0]) < min(i for i, r in enumerate(rules) if "-j LIBVIRT_" in r)
    again = site("-e", ON)
    assert again.rc == 0 and again.changed == 0, again


def test_a_removed_rule_is_reported_and_repaired(host, site, tailnet):
    host.run_test("iptables -w -D FORWARD -d 192.168.122.0/24 -i tailscale0 -o virbr0 -m comment --comment "
                  "'kvmlab-tailnet 192.168.122.0/24' -j ACCEPT")
    assert probe(host, "refused").startswith("refused")
    check = site("--check", "-e", ON)
    assert check.rc == 0 and check.changed == 1, check
    assert probe(host, "refused").startswith("refused")  # the check run changed nothing
    run = site("-e", ON)
    assert run.rc == 0 and run.changed == 1, run
    assert probe(host, "connected").startswith("connected")


def test_the_rule_survives_libvirtd_and_comes_back_with_the_network(host, site, tailnet):
    host.run_test("systemctl restart libvirtd && virsh -c qemu:///system version >/dev/null")
    assert probe(host, "connected").startswith("connected")
    # libvirt runs the hook when it starts the network: the rule, removed by hand, is made again.
    host.run_test("iptables -w -D FORWARD -d 192.168.122.0/24 -i tailscale0 -o virbr0 -m comment --comment "
                  "'kvmlab-tailnet 192.168.122.0/24' -j ACCEPT")
    host.run_test("virsh -c qemu:///system net-destroy default && virsh -c qemu:///system net-start default"
                  + ("" if REAL else " && ip link set kvmlab-vg0 master virbr0 up"))
    # libvirtd reattaches the running guests' interfaces to the new bridge when it restarts.
    host.run_test("systemctl restart libvirtd && virsh -c qemu:///system version >/dev/null")
    assert "kvmlab-tailnet 192.168.122.0/24" in host.check_output("iptables -w -S FORWARD")
    assert probe(host, "connected").startswith("connected")
    running = host.check_output("virsh -c qemu:///system list --name").split()
    for name in running:
        for tap in host.check_output("virsh -c qemu:///system domiflist %s | awk '$3 == \"default\" {print $1}'"
                                     % name).split():
            assert "master virbr0" in host.check_output("ip -o link show %s" % tap), (name, tap)
    again = site("-e", ON)
    assert again.rc == 0 and again.changed == 0, again
