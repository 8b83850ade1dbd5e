"""The admins' libvirt client config (~/.config/libvirt/libvirt.conf, uri_default) is written as
root: along a symbolic link, or into a directory that is not the admin's own, it would land
elsewhere. Such an admin is left alone with a warning naming the reason; nothing is written."""

from __future__ import annotations

import pytest

ADMIN_HOME = "/home/kvmlab"
TARGET = "/etc/kvmlab-admin-config-target"


@pytest.fixture
def linked_config(host):
    """kvmlab's ~/.config moved aside and replaced by a link to a root-owned directory."""
    host.run_test("mv %s/.config %s/.config.kvmlab-test && mkdir -m 0755 %s && ln -s %s %s/.config"
                  % (ADMIN_HOME, ADMIN_HOME, TARGET, TARGET, ADMIN_HOME))
    yield
    host.run("rm -f %s/.config && mv %s/.config.kvmlab-test %s/.config && rm -rf %s"
             % (ADMIN_HOME, ADMIN_HOME, ADMIN_HOME, TARGET))


def test_an_admin_whose_config_is_a_link_is_warned_about_and_nothing_is_written(host, site, linked_config):
    check = site("--check")
    assert check.rc == 0 and check.changed == 0, check
    run = site()
    assert run.rc == 0 and run.changed == 0, run
    warning = "The libvirt client config of kvmlab is left alone (%s/.config is a symbolic link)" % ADMIN_HOME
    assert warning in run.stderr.replace("\n", " ") or warning in run.stdout.replace("\n", " "), run
    assert host.check_output("find %s -mindepth 1 | wc -l" % TARGET) == "0"
    assert host.file(TARGET).user == "root"


def test_the_admins_real_config_is_still_converged(host, site):
    assert host.file(ADMIN_HOME + "/.config/libvirt/libvirt.conf").contains('uri_default = "qemu:///system"')
    assert not host.file(ADMIN_HOME + "/.config").is_symlink
