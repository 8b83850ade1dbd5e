"""Make a new guest role from tools/vm-skeleton and check its spec.

    tools/new-vm NAME [ROLES_DIR]     (or: make new-vm NAME=fedora [PROJECT=dir])

Creates ROLES_DIR/vm_NAME, a role of the user's project (default: the example project's
examples/workstation/roles; never the collection's own roles/), with a short, commented defaults
file holding the guest spec, checks that spec with the guest role's own rules, and says which
line to add to the inventory.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "collections"))

import yaml  # noqa: E402 - after the path set-up, like the collection import below
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.guest import NAME_RE, normalize  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or not argv[1]:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    name = argv[1]
    if not NAME_RE.match(name):
        print("new-vm: %r is not a usable guest name; use letters, digits, '.', '_' or '-', starting with a "
              "letter or digit." % name, file=sys.stderr)
        return 2
    role = "vm_" + re.sub(r"[^A-Za-z0-9_]", "_", name).lower()
    roles_dir = Path(argv[2]) if len(argv) == 3 else ROOT / "examples" / "workstation" / "roles"
    if roles_dir.resolve() == (ROOT / "roles").resolve():
        print("new-vm: %s is the collection's own roles/; a VM role belongs to your project: give its "
              "roles/ directory (make new-vm PROJECT=...)." % roles_dir, file=sys.stderr)
        return 2
    target = roles_dir / role
    if target.exists():
        print("new-vm: %s exists already; edit its defaults/main.yml instead." % target, file=sys.stderr)
        return 1
    shutil.copytree(ROOT / "tools" / "vm-skeleton", target)
    for path in target.rglob("*.yml"):
        path.write_text(path.read_text().replace("VMROLE", role).replace("VMNAME", name))
    spec = yaml.safe_load((target / "defaults" / "main.yml").read_text())[role + "_guest"]
    errors = normalize(spec, role + "_guest")[1]
    if errors:
        shutil.rmtree(target)
        print("new-vm: the skeleton's spec is not valid:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    print("Created %s; its spec (defaults/main.yml) is valid.\n"
          "Next: edit %s/defaults/main.yml, then add it to your inventory's kvmlab_vm_roles:\n"
          "  kvmlab_vm_roles:\n    - ...\n    - %s\n"
          "and run ansible-playbook -i INVENTORY site.yml from the project" % (target, target, role))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
