"""What Galaxy and ansible-test read: one version for the collection and its content, a license,
and no placeholder addresses."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_every_version_added_is_at_most_the_collections_version():
    """Nothing is released yet (changelogs/changelog.yaml has no release): no plugin may claim a
    version after the collection's own."""
    found = {}
    for path in list((ROOT / "plugins").rglob("*.py")) + list((ROOT / "roles").rglob("argument_specs.yml")):
        for match in re.finditer(r"version_added:\s*\"?([0-9.]+)\"?", path.read_text()):
            found[str(path.relative_to(ROOT))] = match.group(1)
    assert found, "no version_added found"
    later = {p: v for p, v in found.items() if _version(v) > _version(GALAXY["version"])}
    assert later == {}, "version_added after galaxy.yml's %s" % GALAXY["version"]


def test_license_and_addresses():
    assert GALAXY["license"] == ["GPL-3.0-or-later"]
    assert "GNU GENERAL PUBLIC LICENSE" in (ROOT / "LICENSE").read_text()[:200]
    assert "Version 3" in (ROOT / "LICENSE").read_text()[:200]
    for key in ("repository", "documentation", "homepage", "issues"):
        assert "example" not in str(GALAXY.get(key, "")), key


def test_the_lowest_ansible_core_claimed_is_the_one_tested():
    """meta/runtime.yml's requires_ansible starts at the ansible-core minor version that
    `make sanity` and the tests run on (requirements.txt's pin): no claim of an untested one."""
    claim = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["requires_ansible"]
    lowest = re.fullmatch(r">=\s*([0-9.]+)", claim).group(1)
    pinned = re.search(r"^ansible-core==([0-9.]+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert _version(lowest)[:2] == _version(pinned)[:2], (claim, pinned)


def test_the_tarball_holds_the_collection_and_no_ones_site(tmp_path):
    """What `ansible-galaxy collection build` puts in the tarball users install: the roles,
    plugins and playbooks, and none of the example project, the tests or the harness."""
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    subprocess.run([str(galaxy), "collection", "build", "--output-path", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=120)
    with tarfile.open(tmp_path / ("kvmlab-hypervisor-%s.tar.gz" % GALAXY["version"])) as tar:
        names = tar.getnames()
    top = {name.split("/")[0] for name in names}
    assert {"roles", "plugins", "playbooks", "meta", "LICENSE", "README.md"} <= top
    assert not top & {"examples", "tests", "molecule", "tools", "inventories", ".kvmlab", "collections", "reports"}
    assert sorted({n.split("/")[1] for n in names if n.startswith("roles/") and n.count("/") >= 1}) == [
        "backup", "guest", "host", "network", "restore", "storage"]


def test_the_old_module_name_runs_the_new_module_with_a_deprecation(tmp_path):
    """meta/runtime.yml's redirect, run as a user would: `kvmlab.hypervisor.cpu_topology` from the
    installed tarball runs host_facts (its fact is kvmlab_host_facts) and warns with the new
    names. The environment is the user's, not the checkout's: no ansible.cfg, so the checkout's
    collections/ symlink cannot stand in for the installed tarball."""
    bindir = Path(sys.executable).parent
    env = {"PATH": "%s:/usr/bin:/bin" % bindir, "HOME": str(tmp_path), "ANSIBLE_CONFIG": "/nonexistent",
           "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections"), "ANSIBLE_LOCALHOST_WARNING": "false",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    subprocess.run([str(bindir / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=120, env=env, cwd=tmp_path)
    tarball = tmp_path / ("kvmlab-hypervisor-%s.tar.gz" % GALAXY["version"])
    subprocess.run([str(bindir / "ansible-galaxy"), "collection", "install", "--no-deps", "-p",
                    str(tmp_path / "collections"), str(tarball)], check=True, capture_output=True, timeout=120,
                   env=env, cwd=tmp_path)
    assert (tmp_path / "collections/ansible_collections/kvmlab/hypervisor/plugins/modules/host_facts.py").is_file()
    run = subprocess.run([str(bindir / "ansible"), "localhost", "-c", "local", "-e",
                          "ansible_python_interpreter=%s" % sys.executable, "-m", "kvmlab.hypervisor.cpu_topology",
                          "-a", "uri=test:///default"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert '"kvmlab_host_facts"' in run.stdout and "kvmlab_cpu_topology" not in run.stdout
    assert "kvmlab.hypervisor.host_facts" in run.stderr and "kvmlab_cpu_topology" in run.stderr


def test_the_example_projects_requirements_name_the_tarball_of_galaxys_version():
    """The example project installs the tarball by file name: a version bump in galaxy.yml must
    not leave it naming the old one (test_execution_environment checks the EE's)."""
    tarball = "kvmlab-hypervisor-%s.tar.gz" % GALAXY["version"]
    path = ROOT / "examples" / "workstation" / "requirements.yml"
    names = [c["name"] for c in yaml.safe_load(path.read_text())["collections"] if c.get("type") == "file"]
    assert [Path(n).name for n in names] == [tarball]


def test_the_declared_collection_dependencies_are_the_ones_the_content_uses():
    """Every collection the shipped roles, playbooks and plugins name (by FQCN) is in galaxy.yml's
    dependencies, and every dependency is named somewhere: a user installing from Galaxy gets
    what a run needs, and nothing it does not."""
    used = set()
    for path in [*ROOT.glob("roles/**/*.yml"), *ROOT.glob("playbooks/**/*.yml"), *ROOT.glob("plugins/**/*.py")]:
        for match in re.finditer(r"(?<![\w.])((?:community|ansible)\.[a-z_]+)\.[a-z_]+", path.read_text()):
            used.add(match.group(1))
    python_packages = {"ansible.module_utils", "ansible.plugins", "ansible.errors", "ansible.utils", "ansible.parsing",
                       "ansible.template", "ansible.inventory", "ansible.playbook", "ansible.release",
                       "ansible.config", "ansible.constants", "ansible.vars", "ansible.executor", "ansible.cli",
                       "ansible._internal"}
    used -= python_packages | {"ansible.builtin"}
    assert used == set(GALAXY["dependencies"]), (sorted(used), GALAXY["dependencies"])
