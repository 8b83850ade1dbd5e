"""Tailnet subnet routing, against a stand-in `tailscale` command.

Tailscale cannot be installed in the test host (its packages come from Tailscale's own
repository). The stand-in implements the two calls the role makes, `tailscale debug prefs`
(JSON with AdvertiseRoutes) and `tailscale set --advertise-routes=...`, over a state file, so
these tests check the role's reading, merging and idempotence, not Tailscale itself.
"""

from __future__ import annotations

import json

from conftest import FAKE_TAILSCALE

# The firewall side (kvmlab_network_tailscale_allow_in) is tested by molecule/shared/tests/test_tailnet.py.
ON = json.dumps({"kvmlab_network_tailscale_enabled": True, "kvmlab_network_tailscale_allow_in": False})


def test_vm_subnet_is_advertised_keeping_other_routes(site, tailscale):
    check = site("--check", "-v", "-e", ON)
    assert check.rc == 0 and check.changed == 1, check
    assert "would advertise 192.168.122.0/24" in " ".join(check.stdout.split()), check
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
    assert "kvmlab_network_tailscale_install: true" in run.stderr, run


# A package named tailscale in a local apt repository (file:, trusted), as Tailscale's own
# repository would offer it: the stand-in command, and a tailscaled unit that its maintainer
# scripts do not enable (as on Arch).
CONTROL = """Package: tailscale
Version: 1.0-kvmlab
Architecture: all
Maintainer: kvmlab tests <root@localhost>
Description: stand-in for Tailscale (kvmlab tests)
"""
UNIT = """[Unit]
Description=stand-in tailscaled (kvmlab tests)
[Service]
ExecStart=/bin/sh -c 'test -e /run/fake-tailscale.json || echo {} > /run/fake-tailscale.json; exec sleep infinity'
[Install]
WantedBy=multi-user.target
"""
REPO = "/srv/kvmlab-apt"
DEB = "tailscale_1.0-kvmlab_all.deb"


def test_an_installed_tailscale_gets_tailscaled_enabled_and_started(host, site):
    host.run_test(f"rm -rf {REPO}; mkdir -p {REPO}/pkg/DEBIAN {REPO}/pkg/usr/bin {REPO}/pkg/lib/systemd/system")
    files = (("pkg/DEBIAN/control", CONTROL, "0644"), ("pkg/usr/bin/tailscale", FAKE_TAILSCALE, "0755"),
             ("pkg/lib/systemd/system/tailscaled.service", UNIT, "0644"))
    for path, content, mode in files:
        host.run_test(f"cat > {REPO}/{path} <<'KVMLAB_END'\n{content}KVMLAB_END\nchmod {mode} {REPO}/{path}")
    host.run_test("cd %s && dpkg-deb --build --root-owner-group pkg %s >/dev/null && { dpkg-deb -f %s;"
                  " echo Filename: ./%s; echo Size: $(stat -c %%s %s); echo SHA256: $(sha256sum %s | cut -d' ' -f1);"
                  " echo; } > Packages" % (REPO, DEB, DEB, DEB, DEB, DEB))
    host.run_test("echo 'deb [trusted=yes] file:%s ./' > /etc/apt/sources.list.d/kvmlab-test.list && apt-get update -qq"
                  " -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/kvmlab-test.list -o Dir::Etc::sourceparts=-"
                  " -o APT::Get::List-Cleanup=0" % REPO)
    install = json.dumps({"kvmlab_network_tailscale_enabled": True, "kvmlab_network_tailscale_install": True,
                          "kvmlab_network_tailscale_allow_in": False})
    try:
        assert not host.package("tailscale").is_installed
        run = site("-e", install)
        assert run.rc == 0, run
        assert host.package("tailscale").is_installed
        assert host.service("tailscaled").is_enabled and host.service("tailscaled").is_running
        assert "192.168.122.0/24" in host.check_output("tailscale debug prefs")
        again = site("-e", install)
        assert again.rc == 0 and again.changed == 0, again
    finally:
        host.run("systemctl disable --now tailscaled; DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq tailscale;"
                 " rm -rf %s /etc/apt/sources.list.d/kvmlab-test.list /run/fake-tailscale.json" % REPO)
