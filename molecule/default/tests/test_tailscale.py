"""Tailnet subnet routing, against a stand-in `tailscale` command.

Tailscale cannot be installed in the test host (its packages come from Tailscale's own
repository). The stand-in implements the two calls the role makes, `tailscale debug prefs`
(JSON with AdvertiseRoutes) and `tailscale set --advertise-routes=...`, over a state file, so
these tests check the role's reading, merging and idempotence, not Tailscale itself.
"""

from __future__ import annotations

import json

import pytest

FAKE = r"""#!/usr/bin/python3
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
ON = json.dumps({"network_tailscale_enabled": True})


@pytest.fixture
def tailscale(host):
    host.run_test("cat > /usr/local/bin/tailscale <<'EOF'\n" + FAKE + "EOF\nchmod 0755 /usr/local/bin/tailscale")
    host.run_test("""echo '{"AdvertiseRoutes": ["10.9.0.0/16"], "WantRunning": true}' > /run/fake-tailscale.json""")
    yield lambda: json.loads(host.check_output("cat /run/fake-tailscale.json"))["AdvertiseRoutes"]
    host.run("rm -f /usr/local/bin/tailscale /run/fake-tailscale.json")


def test_vm_subnet_is_advertised_keeping_other_routes(site, tailscale):
    check = site("--check", "-e", ON)
    assert check.rc == 0 and check.changed == 1, check
    assert "would advertise 192.168.122.0/24" in check.stdout, check
    assert tailscale() == ["10.9.0.0/16"]

    run = site("-e", ON)
    assert run.rc == 0 and run.changed == 1, run
    assert tailscale() == ["10.9.0.0/16", "192.168.122.0/24"]
    again = site("-e", ON)
    assert again.rc == 0 and again.changed == 0, again


def test_missing_tailscale_is_a_clear_error(host, site):
    assert host.run("command -v tailscale").rc != 0
    run = site("-e", ON)
    assert run.rc != 0, run
    assert "Tailscale is not installed on kvmlab-molecule-default" in run.stderr, run
    assert "network_tailscale_install: true" in run.stderr, run
