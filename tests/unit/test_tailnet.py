"""The tailnet rules: which routes the network role lets into which NAT bridge (filters), and the
libvirt hook's plans against real listings of both firewall backends (iptables -S, nft -a list)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.network import tailnet_config, tailnet_errors

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "roles" / "network" / "files" / "kvmlab-tailnet-hook.py"
SPEC = importlib.util.spec_from_file_location("tailnet_hook", HOOK)
hook = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(hook)

DEFAULT = {"name": "default", "bridge": "virbr0", "forward": "nat", "address": "192.168.122.1", "prefix": 24}
ROUTE = "192.168.122.0/24"

# iptables -S FORWARD on the demo host (Debian 12, libvirt 9), with and without the rule.
IPT_WITHOUT = """-P FORWARD ACCEPT
-A FORWARD -j LIBVIRT_FWX
-A FORWARD -j LIBVIRT_FWI
-A FORWARD -j LIBVIRT_FWO
"""
OURS_IPT = ('-A FORWARD -d 192.168.122.0/24 -i tailscale0 -o virbr0 -m comment --comment '
            '"kvmlab-tailnet 192.168.122.0/24" -j ACCEPT')
IPT_WITH = IPT_WITHOUT.replace("-P FORWARD ACCEPT\n", "-P FORWARD ACCEPT\n" + OURS_IPT + "\n")
# nft -a list chain ip libvirt_network guest_input, rules as libvirt 10.4+ inserts them.
NFT_LIBVIRT = (
    "table ip libvirt_network {\n"
    "\tchain guest_input { # handle 2\n"
    '\t\toif "virbr0" ip daddr 192.168.122.0/24 ct state established,related counter packets 0 bytes 0 accept'
    " # handle 9\n"
    '\t\toif "virbr0" counter packets 1 bytes 60 reject # handle 8\n'
    "\t}\n"
    "}\n")
OURS_NFT = ('\t\tiifname "tailscale0" oifname "virbr0" ip daddr 192.168.122.0/24 counter packets 5 bytes 276 accept '
            'comment "kvmlab-tailnet 192.168.122.0/24" # handle 10\n')
NFT_WITH = NFT_LIBVIRT.replace("# handle 2\n", "# handle 2\n" + OURS_NFT)
# libvirt restarted the network: its rules are inserted above ours again.
NFT_BELOW = NFT_LIBVIRT.replace("\t}\n}", OURS_NFT + "\t}\n}")


def test_routes_inside_nat_networks_give_one_narrow_rule_each():
    routed = dict(DEFAULT, name="routed", bridge="virbr1", forward="route", address="10.1.0.1")
    gone = dict(DEFAULT, name="gone", bridge="virbr2", address="10.2.0.1", state="absent")
    config = tailnet_config([DEFAULT, routed, gone], [ROUTE, "10.0.0.0/8", "172.16.0.0/12"], "tailscale0")
    assert config == {"interface": "tailscale0", "networks": {"default": {"bridge": "virbr0", "routes": [ROUTE]}}}
    # A wider route is narrowed to the network's subnet; a narrower one is kept as it is.
    assert tailnet_config([DEFAULT], ["192.168.0.0/16"])["networks"]["default"]["routes"] == [ROUTE]
    assert tailnet_config([DEFAULT], ["192.168.122.128/25"])["networks"]["default"]["routes"] == ["192.168.122.128/25"]


def test_bad_routes_and_interface_are_named():
    errors = tailnet_errors(["192.168.122.1/24", "nonsense", ROUTE], "tail scale'0")
    assert errors[0].startswith("kvmlab_network_tailscale_routes[0]: '192.168.122.1/24' is not a subnet")
    assert errors[1].startswith("kvmlab_network_tailscale_routes[1]: 'nonsense' is not a subnet")
    assert errors[2].startswith("kvmlab_network_tailscale_interface:") and len(errors) == 3
    assert tailnet_errors([ROUTE]) == []


def test_iptables_rule_is_made_before_libvirts_jumps_once():
    assert hook.iptables_plan(IPT_WITHOUT, "tailscale0", "virbr0", [ROUTE])[:2] == ([], [ROUTE])
    assert hook.iptables_plan(IPT_WITH, "tailscale0", "virbr0", [ROUTE])[:2] == ([], [])
    below = IPT_WITHOUT + OURS_IPT + "\n"
    assert hook.iptables_plan(below, "tailscale0", "virbr0", [ROUTE])[:2] == ([4], [ROUTE])
    # A route no longer advertised: its rule goes.
    assert hook.iptables_plan(IPT_WITH, "tailscale0", "virbr0", [])[:2] == ([1], [])


def test_nft_rule_is_made_at_the_top_of_libvirts_chain_again_after_libvirt_inserts_its_own():
    assert hook.nft_backend(NFT_LIBVIRT, "virbr0") and not hook.nft_backend(NFT_LIBVIRT, "virbr1")
    assert not hook.nft_backend(OURS_NFT, "virbr0")
    assert hook.nft_plan(NFT_LIBVIRT, "tailscale0", "virbr0", [ROUTE])[:2] == ([], [ROUTE])
    assert hook.nft_plan(NFT_WITH, "tailscale0", "virbr0", [ROUTE])[:2] == ([], [])
    assert hook.nft_plan(NFT_BELOW, "tailscale0", "virbr0", [ROUTE])[:2] == (["10"], [ROUTE])


def test_the_hook_ignores_libvirts_other_operations(monkeypatch):
    calls = []
    monkeypatch.setattr(hook, "run", calls.append)
    for operation in ("start", "stopped", "port-created", "updated"):
        assert hook.main(["hook", "default", operation, "begin", "-"]) == 0
    assert calls == []


@pytest.mark.parametrize("config", [None, "", "{not json", '{"networks": {"default": {"bridge": "virbr0"}}}', '["x"]'])
def test_libvirts_call_never_fails_on_a_broken_config(monkeypatch, tmp_path, capsys, config):
    """libvirt stops a network whose started hook fails: a missing, empty or malformed settings
    file is logged, and the hook exits 0. The role's own call (ensure) still fails."""
    path = tmp_path / "kvmlab-tailnet.json"
    if config is not None:
        path.write_text(config)
    monkeypatch.setattr(hook, "CONFIG", str(path))
    logged = []
    monkeypatch.setattr(hook.syslog, "syslog", lambda level, message: logged.append(message))
    assert hook.main(["hook", "default", "started", "begin", "-"]) == 0
    assert logged and "network default" in logged[0] and "stays up" in logged[0]
    assert "kvmlab-tailnet: network default" in capsys.readouterr().err
    with pytest.raises(Exception):  # noqa: B017  (the role's run shows the error)
        hook.main(["hook", "default", "ensure"])


def test_libvirts_call_never_fails_without_a_firewall_tool(monkeypatch, tmp_path):
    path = tmp_path / "kvmlab-tailnet.json"
    path.write_text('{"interface": "tailscale0", "networks": {"default": {"bridge": "virbr0", "routes": ["%s"]}}}'
                    % ROUTE)
    monkeypatch.setattr(hook, "CONFIG", str(path))
    monkeypatch.setattr(hook, "run", lambda argv: hook.subprocess.CompletedProcess(argv, 127, "", "not found"))
    logged = []
    monkeypatch.setattr(hook.syslog, "syslog", lambda level, message: logged.append(message))
    assert hook.main(["hook", "default", "started", "begin", "-"]) == 0
    assert len(logged) == 1 and "could not be made" in logged[0]
    assert hook.main(["hook", "default", "ensure"]) == 1


OTHER_IPT = OURS_IPT.replace("192.168.122.0/24", "192.168.100.0/24").replace("virbr0", "virbr1")
GONE_IPT = OURS_IPT.replace("192.168.122.0/24", "10.9.0.0/24").replace("virbr0", "virbr9")


def test_iptables_keeps_other_networks_rules_and_drops_those_of_networks_gone():
    """FORWARD is shared by every network: one network's ensure leaves another's rules alone, and
    removes those of a bridge no longer in the settings."""
    listing = "-P FORWARD ACCEPT\n%s\n%s\n%s\n" % (OURS_IPT, OTHER_IPT, GONE_IPT) + IPT_WITHOUT.split("\n", 1)[1]
    both = {"virbr0", "virbr1"}
    assert hook.iptables_plan(listing, "tailscale0", "virbr0", [ROUTE], both) == ([3], [], [GONE_IPT])
    assert hook.iptables_plan(listing, "tailscale0", "virbr1", ["192.168.100.0/24"], both) == ([3], [], [GONE_IPT])
    # This network's route changed: only its own rule is replaced (and the stale one goes).
    changed = hook.iptables_plan(listing, "tailscale0", "virbr0", ["192.168.122.0/25"], both)
    assert changed == ([3, 1], ["192.168.122.0/25"], [GONE_IPT, OURS_IPT])


def test_nft_keeps_other_networks_rules_and_drops_those_of_networks_gone():
    other = OURS_NFT.replace("virbr0", "virbr1").replace("192.168.122.0/24", "192.168.100.0/24").replace(
        "handle 10", "handle 11")
    gone = OURS_NFT.replace("virbr0", "virbr9").replace("handle 10", "handle 12")
    listing = NFT_LIBVIRT.replace("# handle 2\n", "# handle 2\n" + OURS_NFT + other + gone)
    both = {"virbr0", "virbr1"}
    assert hook.nft_plan(listing, "tailscale0", "virbr0", [ROUTE], both) == (["12"], [], [gone.strip()])
    assert hook.nft_plan(listing, "tailscale0", "virbr1", ["192.168.100.0/24"], both) == (["12"], [], [gone.strip()])


@pytest.mark.parametrize("check", [True, False])
def test_remove_takes_the_hook_first_every_rule_of_ours_then_the_settings(monkeypatch, tmp_path, capsys, check):
    """Turning the tailnet off: the hook goes first (libvirt cannot make the rules again), then our
    rules in both backends (libvirt's and other tools' stay), the settings file last."""
    config, hook_file = tmp_path / "kvmlab-tailnet.json", tmp_path / "50-kvmlab-tailnet"
    config.write_text("{}")
    hook_file.write_text("#!/usr/bin/python3\n")
    monkeypatch.setattr(hook, "CONFIG", str(config))
    monkeypatch.setenv("KVMLAB_TAILNET_HOOK", str(hook_file))
    listings = {"nft": NFT_WITH, "iptables": "-P FORWARD ACCEPT\n%s\n%s\n" % (OURS_IPT, OTHER_IPT)
                + IPT_WITHOUT.split("\n", 1)[1]}
    calls = []

    def run(argv):
        calls.append(argv)
        listing = listings[argv[0]] if "-S" in argv or "list" in argv else ""
        return hook.subprocess.CompletedProcess(argv, 0, listing, "")

    monkeypatch.setattr(hook, "run", run)
    assert hook.main(["-c", "-", "remove-check" if check else "remove"]) == 0
    out = capsys.readouterr().out.splitlines()
    verb = "would remove" if check else "removed"
    assert out[0] == "%s %s" % (verb, hook_file) and out[-1] == "%s %s" % (verb, config)
    assert len(out) == 5  # the hook, one nft rule, two iptables rules, the settings
    deletes = [c for c in calls if "delete" in c or "-D" in c]
    if check:
        assert deletes == [] and hook_file.exists() and config.exists()
    else:
        assert deletes == [["nft", "delete", "rule", "ip", "libvirt_network", "guest_input", "handle", "10"],
                           ["iptables", "-w", "-D", "FORWARD", "2"], ["iptables", "-w", "-D", "FORWARD", "1"]]
        assert not hook_file.exists() and not config.exists()


def test_remove_keeps_the_settings_when_a_rule_cannot_be_removed(monkeypatch, tmp_path):
    """The settings file is what the role's removal is keyed on: it stays until every rule is gone."""
    config = tmp_path / "kvmlab-tailnet.json"
    config.write_text("{}")
    monkeypatch.setattr(hook, "CONFIG", str(config))
    monkeypatch.setenv("KVMLAB_TAILNET_HOOK", str(tmp_path / "absent"))
    monkeypatch.setattr(hook, "run", lambda argv: hook.subprocess.CompletedProcess(
        argv, 0 if "-S" in argv else 1, IPT_WITH if "-S" in argv else "", "refused"))
    assert hook.main(["-c", "-", "remove"]) == 1
    assert config.exists()
