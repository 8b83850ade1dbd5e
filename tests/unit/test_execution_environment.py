"""The execution environment's definition (execution-environment.yml) against the collection:
the tarball it installs is the version galaxy.yml builds, its ansible-core is the one the
project is tested with, and ansible-builder accepts it (`create` only, no image)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EE = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
BUILDER = Path(sys.executable).parent / "ansible-builder"


def pins(path: Path) -> dict:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==", 1) for line in lines if "==" in line)


def test_the_tarball_installed_is_the_version_galaxy_yml_builds():
    wanted = "collections/%s-%s-%s.tar.gz" % (GALAXY["namespace"], GALAXY["name"], GALAXY["version"])
    galaxy = yaml.safe_load((ROOT / EE["dependencies"]["galaxy"]).read_text())
    assert galaxy["collections"] == [{"name": wanted, "type": "file"}]
    assert [(f["src"], f["dest"]) for f in EE["additional_build_files"]] == [
        (".kvmlab/dist/%s-%s-*.tar.gz" % (GALAXY["namespace"], GALAXY["name"]), "collections")]
    # make collection writes the tarball there, and make ee uses it.
    assert "DIST := .kvmlab/dist" in (ROOT / "Makefile").read_text()


def test_ansible_core_is_the_tested_one():
    core = EE["dependencies"]["ansible_core"]["package_pip"]
    assert core == "ansible-core==" + pins(ROOT / "requirements.txt")["ansible-core"]


def test_the_collection_declares_the_same_requirements_and_ships_them():
    meta = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"] == {"python": EE["dependencies"]["python"], "system": EE["dependencies"]["system"]}
    ignored = set(GALAXY["build_ignore"])
    for name in meta["dependencies"].values():
        assert (ROOT / name).is_file() and name not in ignored
    # What builds this repository's own image stays out of the collection, and so does a context.
    assert {"execution-environment.yml", EE["dependencies"]["galaxy"], "context", ".kvmlab"} <= ignored


def test_system_requirements_have_both_families_and_compile_only_in_the_builder():
    lines = [line for line in (ROOT / "bindep.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert any("platform:rpm" in line for line in lines) and any("platform:dpkg" in line for line in lines)
    headers = [line for line in lines if line.split()[0] in ("libvirt-devel", "libvirt-dev", "gcc")]
    assert headers and all("compile" in line for line in headers)


def test_ansible_builder_creates_the_context(tmp_path):
    run = subprocess.run([str(BUILDER), "create", "-f", str(ROOT / "execution-environment.yml"), "-c",
                          str(tmp_path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    containerfile = (tmp_path / "Containerfile").read_text()
    assert 'EE_BASE_IMAGE="%s"' % EE["images"]["base_image"]["name"] in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert (tmp_path / "_build" / "bindep.txt").read_text() == (ROOT / "bindep.txt").read_text()
