"""The admins' libvirt client config (~/.config/libvirt/libvirt.conf, uri_default) is written as
root in a home the admin controls: along a symbolic link, or into a directory that is not the
admin's own, it would land elsewhere. Such an admin is left alone with a warning naming the
reason; nothing is written. The module opens every part without following links, so a link
swapped in during the write is refused too (a real race, below)."""

from __future__ import annotations

import ast
import os
import shlex

import pytest
from conftest import run_site

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


# The user swaps ~/.config/libvirt between their real directory and a link to a root directory,
# as fast as they can, while root writes their config again and again with the module's code.
SWAPPER = f"""import os
os.chdir("{ADMIN_HOME}/.config")
i = 0
while True:
    i += 1
    for step in (lambda: os.rename("libvirt", "away-%d" % i), lambda: os.symlink("{TARGET}", "libvirt"),
                 lambda: os.unlink("libvirt"), lambda: os.rename("away-%d" % i, "libvirt")):
        try:
            step()
        except OSError:
            pass
"""
WRITER = """import collections, os, pwd, sys, time
sys.path.insert(0, "/run/kvmlab-race")
import host_info
user = pwd.getpwnam("kvmlab")
seen = collections.Counter()
for i in range(%d):
    try:
        host_info.set_client_uri(user.pw_dir, (user.pw_uid, user.pw_gid), "test:///race-%%d" %% i, check=False)
        seen["written"] += 1
    except host_info.ConfigRefused:
        seen["refused"] += 1
    except OSError as exc:  # ENOENT: the directory was away at that moment
        seen[exc.__class__.__name__] += 1
print(dict(seen))
"""


def test_a_link_swapped_in_during_the_write_never_redirects_a_root_write(host, summary):
    """A real race on the test host: the admin (as their own uid) swaps a link in and out while
    root writes with the module's code thousands of times. Nothing lands in the root directory."""
    module_utils = os.path.join(os.path.dirname(__file__), "../../../plugins/module_utils/host_info.py")
    host.run_test("mkdir -p /run/kvmlab-race && mkdir -m 0755 -p %s" % TARGET)
    with open(module_utils, encoding="utf-8") as handle:
        host.run_test("cat > /run/kvmlab-race/host_info.py <<'EOF'\n%sEOF" % handle.read())
    host.run_test("systemd-run --unit kvmlab-race-swapper --uid kvmlab python3 -c %s" % shlex.quote(SWAPPER))
    try:
        seen = host.check_output("timeout 120 python3 -c %s" % shlex.quote(WRITER % 3000))
    finally:
        host.run("systemctl stop kvmlab-race-swapper; systemctl reset-failed kvmlab-race-swapper")
    counts = ast.literal_eval(seen)
    assert sum(counts.values()) == 3000, counts
    assert counts.get("refused", 0) > 0 and counts.get("written", 0) > 0, counts  # the race was on
    assert host.check_output("find %s -mindepth 1 | wc -l" % TARGET) == "0", host.check_output("ls -la " + TARGET)
    assert host.file(TARGET).user == "root"
    # The admin's directory is back (the swapper may have stopped at either state), and the site
    # converges it to the right URI again.
    host.run_test("cd %s/.config && if [ -L libvirt ] || [ ! -e libvirt ]; then rm -f libvirt; "
                  "mv -T \"$(ls -d away-* | head -1)\" libvirt; fi; rm -rf away-* %s" % (ADMIN_HOME, TARGET))
    run = run_site()
    assert run.rc == 0 and run.changed == 1, run
    assert host.file(ADMIN_HOME + "/.config/libvirt/libvirt.conf").contains('uri_default = "qemu:///system"')
    summary["link swaps survived"] += counts.get("refused", 0)
