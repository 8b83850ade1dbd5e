"""Every field a message names exists. The messages are every string in the plugins' error,
warning and failure calls (errors.append, ValueError, fail_json, warn); each snake_case word in
them must be an option of a role's argument spec or a module's or filter's documented options,
or one of the few other names listed here with what they are. A message that tells the user to
change `cpu_pinning_housekeeping`, a field that does not exist, fails this test."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = [*ROOT.glob("plugins/module_utils/*.py"), *ROOT.glob("plugins/plugin_utils/*.py"),
           *ROOT.glob("plugins/modules/*.py"),
           *ROOT.glob("plugins/filter/*.py")]
# Names in messages that are not fields: plugin names and a kernel option.
NOT_FIELDS = {"guest_mac": "a filter", "systemd_quote": "a filter", "intel_iommu": "a kernel option"}
WORD = re.compile(r"(?<![\w./-])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?![\w(/-])")


def options(tree, out: set) -> set:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key in ("options", "suboptions") and isinstance(value, dict):
                out.update(value)
                for spec in value.values():
                    options(spec, out)
            else:
                options(value, out)
    elif isinstance(tree, list):
        for item in tree:
            options(item, out)
    return out


def fields() -> set:
    out: set = set()
    for path in ROOT.glob("roles/*/meta/argument_specs.yml"):
        options(yaml.safe_load(path.read_text()), out)
    for path in PLUGINS:
        doc = re.search(r'DOCUMENTATION = r"""(.*?)"""', path.read_text(), re.S)
        if doc:
            options(yaml.safe_load(doc.group(1)), out)
    return out


def is_message(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id.endswith(("Error", "Exception"))
    if not isinstance(func, ast.Attribute):
        return False
    if func.attr == "append":
        return isinstance(func.value, ast.Name) and "error" in func.value.id
    return func.attr in ("warn", "fail_json")


def named_in_messages() -> dict:
    found: dict = {}
    for path in PLUGINS:
        for call in ast.walk(ast.parse(path.read_text())):
            if isinstance(call, ast.Call) and is_message(call):
                for node in ast.walk(call):
                    if isinstance(node, ast.Constant) and isinstance(node.value, str):
                        for word in WORD.findall(node.value):
                            found.setdefault(word, set()).add(path.name)
    return found


def test_every_field_a_message_names_exists():
    known = fields() | set(NOT_FIELDS)
    named = named_in_messages()
    assert {w: sorted(files) for w, files in named.items() if w not in known} == {}


def test_the_scan_sees_the_messages():
    """The scan is not empty: it finds fields the guest checks name."""
    named = named_in_messages()
    assert {"cpu_housekeeping", "numa_strict", "tpm_state_dir", "graphics_public", "allow_foreign_paths"} <= set(named)
