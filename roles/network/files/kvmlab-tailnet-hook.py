# Managed by kvmlab.hypervisor.network: do not edit (the role rewrites it, with a #!/usr/bin/python3
# line first so that libvirt can run it).
#
# Lets the tailnet open connections to the guests of the subnets advertised as Tailscale routes.
# libvirt's rules for a NAT network admit only replies into its bridge: a new connection from
# Tailscale's interface to a guest is rejected. This adds, per advertised route inside a NAT
# network, one rule that accepts new connections from that interface, to that bridge, for that
# route - and nothing else - ahead of libvirt's reject, with the backend libvirt used for the
# network's bridge:
#   iptables backend: at the top of FORWARD, before libvirt's LIBVIRT_FWI jump;
#   nftables backend: at the top of libvirt's own chain ip libvirt_network guest_input (a
#   separate table cannot override a reject in libvirt's).
# libvirt inserts its rules at the top of its chains whenever it starts a network, so the rules
# are made again each time it does: libvirt runs this file from hooks/network.d as
#   kvmlab-tailnet NETWORK started begin -        (other operations are ignored)
# and the role runs it as `kvmlab-tailnet NETWORK ensure` (or `check`, which changes nothing).
# When the tailnet is turned off, the role runs its own copy as `kvmlab-tailnet - remove` (or
# `remove-check`): this file first (so that libvirt cannot make the rules again), then every rule
# of ours in both backends, then the settings file last, so that a run killed halfway leaves the
# settings behind and the next run finishes the removal.
# It prints one line per change (or, for check, per change it would make); for the role, exit 1
# on failure. Run by libvirt (`started`), it never fails: libvirt stops a network whose hook
# fails, which would cut every guest on it off, so any error of its own (a missing, empty or
# malformed settings file, no nft nor iptables, a refused rule) goes to the journal (syslog,
# tag kvmlab-tailnet) and to stderr, and it exits 0 with the network up and the tailnet kept out.
# Its settings: /etc/libvirt/hooks/kvmlab-tailnet.json, written by the role:
#   {"interface": "tailscale0", "networks": {"default": {"bridge": "virbr0", "routes": [...]}}}

import json
import os
import subprocess
import sys
import syslog

CONFIG = os.environ.get("KVMLAB_TAILNET_CONFIG", "/etc/libvirt/hooks/kvmlab-tailnet.json")
MARK = "kvmlab-tailnet"


def run(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:  # the tool is not installed
        return subprocess.CompletedProcess(argv, 127, "", str(exc))


def nft_backend(listing, bridge):
    """Whether libvirt put this bridge's rules in its nftables chain (else it uses iptables)."""
    return any(('oif "%s"' % bridge in line or 'oifname "%s"' % bridge in line) and 'comment "%s ' % MARK not in line
               for line in listing.splitlines())


def comment(route):
    return "%s %s" % (MARK, route)


def _rule_bridge(rule, flag):
    """The bridge a rule of ours is for: the word after `flag` (-o, or oifname)."""
    words = rule.replace('"', " ").split()
    return words[words.index(flag) + 1] if flag in words[:-1] else None


def nft_plan(listing, interface, bridge, routes, bridges=None):
    """(handles of our rules to delete, routes to insert, the deleted rules) for `nft -a list chain` output: this
    network's rules must all come first in the chain, one per route; the rules of bridges that are
    no longer in the settings (`bridges`, default this one only) go. Other networks' rules stay."""
    rules = [line.strip() for line in listing.splitlines()
             if "# handle " in line and not line.strip().startswith(("table ", "chain ", "type "))]
    ours = [(i, r) for i, r in enumerate(rules) if 'comment "%s ' % MARK in r]
    first_other = next((i for i, r in enumerate(rules) if 'comment "%s ' % MARK not in r), len(rules))
    mine = [(i, r) for i, r in ours if _rule_bridge(r, "oifname") == bridge]
    stale = [r for _i, r in ours if _rule_bridge(r, "oifname") not in (bridges or {bridge})]
    found = [r for _i, r in mine if 'iifname "%s"' % interface in r]
    routes_found = sorted(r.split('comment "%s ' % MARK)[1].split('"')[0] for r in found)
    ok = routes_found == sorted(routes) and len(mine) == len(found) and all(i < first_other for i, _r in mine)
    delete = ([] if ok else [r for _i, r in mine]) + stale
    return [r.rsplit("# handle ", 1)[1].split()[0] for r in delete], [] if ok else list(routes), delete


def iptables_plan(listing, interface, bridge, routes, bridges=None):
    """(line numbers of our rules to delete, highest first; routes to insert; the deleted rules)
    for `iptables -S FORWARD` output: this network's rules must all come before libvirt's jumps,
    one per route; the rules of bridges no longer in the settings (`bridges`, default this one
    only) go. Other networks' stay."""
    rules = [line for line in listing.splitlines() if line.startswith("-A ")]
    ours = [(i + 1, r) for i, r in enumerate(rules) if '--comment "%s ' % MARK in r]
    first_libvirt = next((i + 1 for i, r in enumerate(rules) if "-j LIBVIRT_" in r), len(rules) + 1)
    mine = [(n, r) for n, r in ours if _rule_bridge(r, "-o") == bridge]
    stale = [n for n, r in ours if _rule_bridge(r, "-o") not in (bridges or {bridge})]
    wanted = {route: "-A FORWARD -d %s -i %s -o %s -m comment --comment \"%s\" -j ACCEPT"
              % (route, interface, bridge, comment(route)) for route in routes}
    ok = sorted(r for _n, r in mine) == sorted(wanted.values()) and all(n < first_libvirt for n, _r in mine)
    delete = sorted(set(([] if ok else [n for n, _r in mine]) + stale), reverse=True)
    return delete, [] if ok else list(routes), [rules[n - 1] for n in delete]


def ensure(network, check):
    with open(CONFIG, encoding="utf-8") as handle:
        config = json.load(handle)
    net = config["networks"].get(network)
    if not net:
        return 0
    interface, bridge, routes = config["interface"], net["bridge"], net["routes"]
    bridges = {n["bridge"] for n in config["networks"].values() if n}
    nft = run(["nft", "-a", "list", "chain", "ip", "libvirt_network", "guest_input"])
    if nft.returncode == 0 and nft_backend(nft.stdout, bridge):
        delete, insert, removed = nft_plan(nft.stdout, interface, bridge, routes, bridges)
        commands = [["nft", "delete", "rule", "ip", "libvirt_network", "guest_input", "handle", h] for h in delete]
        commands += [["nft", "insert", "rule", "ip", "libvirt_network", "guest_input", "iifname", '"%s"' % interface,
                      "oifname", '"%s"' % bridge, "ip", "daddr", route, "counter", "accept", "comment",
                      '"%s"' % comment(route)] for route in insert]
    else:
        listing = run(["iptables", "-w", "-S", "FORWARD"])
        if listing.returncode != 0:
            sys.stderr.write("%s: neither libvirt's nftables chain nor iptables' FORWARD chain can be read: %s\n"
                             % (MARK, (nft.stderr + listing.stderr).strip()))
            return 1
        delete, insert, removed = iptables_plan(listing.stdout, interface, bridge, routes, bridges)
        commands = [["iptables", "-w", "-D", "FORWARD", str(n)] for n in delete]
        commands += [["iptables", "-w", "-I", "FORWARD", "1", "-i", interface, "-o", bridge, "-d", route,
                      "-m", "comment", "--comment", comment(route), "-j", "ACCEPT"] for route in insert]
    for rule in removed:
        print("%s %s: the rule %s" % ("would remove" if check else "removed", network, rule))
    for route in insert:
        verb = "would allow" if check else "allowed"
        print("%s %s: new connections from %s to %s on %s" % (verb, network, interface, route, bridge))
    if check:
        return 0
    for command in commands:
        done = run(command)
        if done.returncode != 0:
            sys.stderr.write("%s: %s failed: %s\n" % (MARK, " ".join(command), done.stderr.strip()))
            return 1
    return 0


def _our_rules():
    """(backend, listing command, delete command per rule) for every rule of ours, in both backends."""
    found = []
    nft = run(["nft", "-a", "list", "chain", "ip", "libvirt_network", "guest_input"])
    if nft.returncode == 0:
        for line in nft.stdout.splitlines():
            if 'comment "%s ' % MARK in line and "# handle " in line:
                handle = line.rsplit("# handle ", 1)[1].split()[0]
                found.append((line.strip(), ["nft", "delete", "rule", "ip", "libvirt_network", "guest_input",
                                             "handle", handle]))
    listing = run(["iptables", "-w", "-S", "FORWARD"])
    if listing.returncode == 0:
        rules = [line for line in listing.stdout.splitlines() if line.startswith("-A ")]
        ours = [(n + 1, r) for n, r in enumerate(rules) if '--comment "%s ' % MARK in r]
        found += [(r, ["iptables", "-w", "-D", "FORWARD", str(n)]) for n, r in reversed(ours)]
    return found


def remove(check):
    """Remove this hook, every rule of ours and the settings (in that order); print each removal."""
    verb = "would remove" if check else "removed"
    hook = os.environ.get("KVMLAB_TAILNET_HOOK", "/etc/libvirt/hooks/network.d/50-kvmlab-tailnet")
    if os.path.lexists(hook):
        print("%s %s" % (verb, hook))
        if not check:
            os.unlink(hook)
    for rule, command in _our_rules():
        print("%s the rule %s" % (verb, rule))
        if not check:
            done = run(command)
            if done.returncode != 0:
                sys.stderr.write("%s: %s failed: %s\n" % (MARK, " ".join(command), done.stderr.strip()))
                return 1
    if os.path.lexists(CONFIG):
        print("%s %s" % (verb, CONFIG))
        if not check:
            os.unlink(CONFIG)
    return 0


def log(message):
    """An error of libvirt's call, where it cannot fail: to the journal and to stderr."""
    sys.stderr.write("%s: %s\n" % (MARK, message))
    try:
        syslog.openlog(MARK, 0, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_ERR, message)
    except OSError:
        pass


def started(network):
    """libvirt started `network`: make its rules, never failing the network."""
    try:
        if ensure(network, check=False) != 0:
            log("network %s: the tailnet's rules could not be made (above); the network stays up, the tailnet "
                "cannot reach its guests. Run the network role to repair it." % network)
    except Exception as exc:
        log("network %s: %s: %s; the network stays up, the tailnet cannot reach its guests. Run the network "
            "role to repair it." % (network, CONFIG, "%s: %s" % (type(exc).__name__, exc)))
    return 0


def main(argv):
    if len(argv) < 3:
        sys.stderr.write("usage: %s NETWORK ensure|check|started ... | %s - remove|remove-check\n"
                         % (argv[0], argv[0]))
        return 0 if len(argv) >= 3 and argv[2] == "started" else 2
    network, operation = argv[1], argv[2]
    if operation == "started":
        return started(network)
    if operation in ("ensure", "check"):
        return ensure(network, check=operation == "check")
    if operation in ("remove", "remove-check"):
        return remove(check=operation == "remove-check")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
