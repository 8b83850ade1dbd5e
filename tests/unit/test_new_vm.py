"""tools/new-vm writes a VM role into a project's roles/, never into the collection's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def new_vm():
    spec = importlib.util.spec_from_file_location("new_vm", ROOT / "tools" / "new_vm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_new_role_lands_in_the_projects_roles(tmp_path, capsys):
    assert new_vm().main(["new-vm", "fedora", str(tmp_path / "roles")]) == 0
    defaults = yaml.safe_load((tmp_path / "roles" / "vm_fedora" / "defaults" / "main.yml").read_text())
    assert defaults["vm_fedora_guest"]["name"] == "fedora"
    assert "    - vm_fedora\n" in capsys.readouterr().out  # the plain name for kvmlab_vm_roles


def test_the_collections_own_roles_are_refused(capsys):
    assert new_vm().main(["new-vm", "fedora", str(ROOT / "roles")]) == 2
    assert "is the collection's own roles/" in capsys.readouterr().err
    assert not (ROOT / "roles" / "vm_fedora").exists()
