"""The guest spec is defined once, in roles/guest/meta/argument_specs.yml: the generated
module_utils/guest_schema.py is current, every allowed value the code checks is the spec's, no
check carries a list of its own, and every default the spec documents is the one normalize()
fills in."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import image
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.guest_schema import FIELDS
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils import guest

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "roles/guest/meta/argument_specs.yml").read_text())
OPTIONS = SPEC["argument_specs"]["main"]["options"]["kvmlab_guests"]["options"]
# The code that checks or uses guest spec values.
CHECKERS = [ROOT / "plugins" / name
            for name in ("plugin_utils/guest.py", "module_utils/image.py", "plugin_utils/site.py",
                         "plugin_utils/domain_render.py", "module_utils/systemd.py")]
# Literal lists that checks may keep, because they are not a field's allowed values.
NOT_CHOICES = {
    ("http", "https"): "the URL schemes of a disk source's url",
    (".", ".."): "the file names a disk cannot have",
    ("graphics_password",): "SECRETS: field names, never shown in a message",
    ("none", "auto"): "CPU_PINNING_MODES: cpu_pinning also takes a number, so the spec cannot list choices",
    ("disk", "NVRAM file"): "site.py: the kinds of file a guest owns",
    ("exec", "list"): "systemd.py: the ways a value is quoted in a unit",
    ("download", "image"): "image.py: PART_KINDS, the kinds of a disk preparation's temporary file",
    (301, 302, 303, 307, 308): "image.py: the HTTP status codes of a redirect",
}
# Fields the spec documents without a default that normalize() computes (for a guest named x).
DERIVED = {"enrolled_keys": False, "boot": ["hd"], "interfaces.mac": guest.guest_mac("x", 0)}
# The smallest item of each kind, its required fields only.
ITEMS = {
    "disks": {"name": "x.qcow2", "size": "1G"},
    "cdroms": {"path": "/mnt/vm/iso/x.iso"},
    "interfaces": {},
    "filesystems": {"source": "/mnt/vm/share", "target": "share"},
}
SOURCE = {"url": "https://example.org/x.qcow2", "checksum": "sha256:" + "0" * 64}


def spec_fields(options: dict = OPTIONS, prefix: str = ""):
    """(dotted path, option) of every field of the spec, nested ones too."""
    for name, option in options.items():
        yield prefix + name, option
        if option.get("options"):
            yield from spec_fields(option["options"], "%s%s." % (prefix, name))


def load_generator():
    loader = importlib.util.spec_from_file_location("gen_guest_schema", ROOT / "tools/gen_guest_schema.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def test_the_generated_schema_is_current():
    gen = load_generator()
    fresh = gen.render((ROOT / gen.SPEC).read_text(encoding="utf-8"))
    assert fresh.encode("utf-8") == (ROOT / gen.TARGET).read_bytes(), "run `make schema`"


def test_the_generator_carries_every_field_of_a_spec_it_was_not_written_for(tmp_path):
    """The schema holds what the spec says only if the generator reads every field, nested ones
    too: render a spec with new fields at each depth (none of which the committed schema has)
    and read them back from the rendered module."""
    gen = load_generator()
    spec = yaml.safe_load((ROOT / gen.SPEC).read_text(encoding="utf-8"))
    options = spec["argument_specs"]["main"]["options"]["kvmlab_guests"]["options"]
    options["kvmlab_probe"] = {"type": "str", "default": "b", "choices": ["a", "b"], "description": "x"}
    options["disks"]["options"]["kvmlab_probe"] = {"type": "int", "default": 3, "description": "x"}
    options["disks"]["options"]["source"]["options"]["kvmlab_probe"] = {"type": "bool", "description": "x"}
    (tmp_path / "probe_schema.py").write_text(gen.render(yaml.safe_dump(spec)), encoding="utf-8")
    loader = importlib.util.spec_from_file_location("probe_schema", tmp_path / "probe_schema.py")
    rendered = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(rendered)
    fields, subfields = rendered.FIELDS, rendered.SUBFIELDS
    assert fields["kvmlab_probe"]["type"] == "str" and fields["kvmlab_probe"]["choices"] == ("a", "b")
    assert fields["kvmlab_probe"]["default"] == "b"
    assert subfields["disks"]["kvmlab_probe"]["default"] == 3
    assert subfields["disks.source"]["kvmlab_probe"]["type"] == "bool"
    tables = {"": fields, **subfields}
    for path, option in spec_fields(options):
        table, _sep, name = path.rpartition(".")
        entry = tables[table][name]
        assert entry["type"] == option["type"], path
        assert entry["default"] == option.get("default"), path
        assert entry["choices"] == (tuple(option["choices"]) if "choices" in option else None), path
    assert sum(len(t) for t in tables.values()) == len(list(spec_fields(options)))
    assert "kvmlab_probe" not in FIELDS  # the committed schema is the real spec's


# (2) Allowed values


def choices_of(path: str):
    return dict(spec_fields())[path].get("choices")


def test_the_codes_choice_lists_are_the_specs():
    top = {k: tuple(o["choices"]) for k, o in OPTIONS.items() if "choices" in o and o["type"] == "str"}
    assert guest.CHOICES == top
    for kind, table in (("disks", guest.DISK_CHOICES), ("interfaces", guest.INTERFACE_CHOICES)):
        assert table == {k: tuple(o["choices"]) for k, o in OPTIONS[kind]["options"].items() if "choices" in o}
    assert list(guest.BOOT_DEVICES) == choices_of("boot")
    assert list(guest.HUGEPAGES) == choices_of("hugepages")
    assert list(image.FORMATS) == choices_of("disks.source.format")
    assert list(image.COMPRESSIONS) == choices_of("disks.source.compression")
    assert list(image.SOURCE_KEYS) == list(OPTIONS["disks"]["options"]["source"]["options"])
    assert guest.DEFAULTS["cpu_pinning"] in guest.CPU_PINNING_MODES


def literal_lists(tree: ast.Module) -> dict:
    """Module-level names bound to a literal tuple, list or set of constants."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Tuple, ast.List, ast.Set)):
            values = literal(node.value)
            if values is not None:
                out.update({t.id: values for t in node.targets if isinstance(t, ast.Name)})
    return out


def literal(node):
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(isinstance(e, ast.Constant) for e in node.elts):
        return tuple(e.value for e in node.elts)
    return None


def inline_lists(path: Path) -> list:
    """Every `x in <literal list>` / `x not in <literal list>` of a file (a name bound to a literal
    list counts too): the lists a check carries of its own."""
    tree = ast.parse(path.read_text())
    named = literal_lists(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                values = literal(right) if not isinstance(right, ast.Name) else named.get(right.id)
                if values is not None:
                    found.append((path.name, node.lineno, values))
    return found


def test_no_check_carries_a_list_of_allowed_values():
    """A new `if disk["cache"] not in ("none", "writeback")` fails here: its values belong in the
    argument spec's choices."""
    found = [f for path in CHECKERS for f in inline_lists(path)]
    assert [f for f in found if f[2] not in NOT_CHOICES] == []
    assert {f[2] for f in found} == set(NOT_CHOICES), "NOT_CHOICES lists a literal no check uses"


def compared_values(path: Path) -> list:
    """(field, value, line) of every `x["field"] == "value"` and `!=` in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare) or len(node.ops) != 1 or not isinstance(node.ops[0], (ast.Eq, ast.NotEq)):
            continue
        for side, other in ((node.left, node.comparators[0]), (node.comparators[0], node.left)):
            if (isinstance(side, ast.Subscript) and isinstance(side.slice, ast.Constant)
                    and isinstance(other, ast.Constant) and isinstance(other.value, str)):
                out.append((side.slice.value, other.value, "%s:%d" % (path.name, node.lineno)))
    return out


def test_every_value_the_code_compares_a_field_with_is_allowed():
    """`g["tpm"] == "extrenal"` would never be true: each value compared with a field that has
    choices is one of them."""
    allowed: dict = {"cpu_pinning": set(guest.CPU_PINNING_MODES)}
    for path, option in spec_fields():
        if "choices" in option:
            allowed.setdefault(path.rpartition(".")[2], set()).update(option["choices"])
    compared = [c for path in CHECKERS for c in compared_values(path) if c[0] in allowed]
    assert len(compared) > 10  # the scan sees the builder's and the checks' comparisons
    assert [c for c in compared if c[1] not in allowed[c[0]]] == []


def with_field(path: str, value) -> dict:
    """A minimal guest with one field set, nested ones in the first item of their kind."""
    spec = {"name": "x"}
    parts = path.split(".")
    if len(parts) == 1:
        spec[path] = value
        return spec
    item = dict(ITEMS[parts[0]])
    spec[parts[0]] = [item]
    if parts[1] == "source":
        item["source"] = dict(SOURCE, **{parts[2]: value})
        if parts[2] == "format":  # must equal the disk's format
            item["format"] = value
    else:
        item[parts[1]] = value
    return spec


def label(path: str) -> str:
    parts = path.split(".")
    return "guest_spec." + (path if len(parts) == 1 else "%s[0].%s" % (parts[0], ".".join(parts[1:])))


CHOICE_FIELDS = [path for path, option in spec_fields() if "choices" in option]


@pytest.mark.parametrize("path", CHOICE_FIELDS)
def test_each_field_with_choices_takes_them_and_nothing_else(path):
    """Every field the spec gives choices is checked against them, nested ones too."""
    listed = dict(spec_fields())[path]["type"] == "list"
    for choice in choices_of(path):
        errors = guest.normalize(with_field(path, [choice] if listed else choice))[1]
        assert [e for e in errors if e.startswith(label(path) + ":")] == [], choice
    bogus = ["floppy"] if listed else 3 if path == "hugepages" else "no-such-value"
    errors = guest.normalize(with_field(path, bogus))[1]
    assert [e for e in errors if e.startswith(label(path) + ":")], errors


# Types


def test_fields_with_more_types_are_fields_and_keep_the_specs_type():
    spec_types = dict(spec_fields())
    for key, types in guest.MORE_TYPES.items():
        assert key in spec_types, key
        if spec_types[key]["type"] != "raw":
            assert guest.SPEC_TYPES[spec_types[key]["type"]] in types, key
    # Every other field's type is the spec's.
    for key, types in guest.TYPES.items():
        if key not in guest.MORE_TYPES:
            assert types is guest.SPEC_TYPES[spec_types[key]["type"]], key


# (3) Defaults


def normalized(path: str):
    """What normalize() makes of a field left out, on a minimal guest (nested: on a minimal item)."""
    parts = path.split(".")
    if len(parts) == 1:
        g, errors = guest.normalize({"name": "x"})
        assert errors == []
        return g[path]
    item = dict(ITEMS[parts[0]])
    if parts[1] == "source" and len(parts) == 3:
        item["source"] = dict(SOURCE)
    g, errors = guest.normalize({"name": "x", parts[0]: [item]})
    assert errors == []
    item = g[parts[0]][0]
    if len(parts) == 3:  # a source is passed on as given; libvirt_volume fills in timeout and deadline
        filled = {"timeout": image.DEFAULT_TIMEOUT, "deadline": image.DEFAULT_DEADLINE}
        return item["volume"]["source"].get(parts[2], filled.get(parts[2]))
    return item[parts[1]]


# Every field a minimal guest leaves out: not the required ones, nor those a source must give.
LEFT_OUT = [path for path, option in spec_fields()
            if not option.get("required") and path not in {"disks.source." + key for key in SOURCE}]


@pytest.mark.parametrize("path", LEFT_OUT)
def test_each_default_of_the_spec_is_the_one_normalize_fills_in(path):
    option = dict(spec_fields())[path]
    value = normalized(path)
    if path in DERIVED:
        assert "default" not in option
        assert value == DERIVED[path]
    elif option.get("options") and option["type"] == "list":  # items get their own defaults
        defaults = option.get("default") or []
        assert len(value) == len(defaults)
        for item, default in zip(value, defaults, strict=True):
            assert item | default == item
    else:
        assert value == option.get("default"), path


def test_libvirt_volumes_source_is_a_disks_source():
    """The volume modules document volumes[].source (in the kvmlab.hypervisor.storage fragment) as
    the guest spec's disks[].source."""
    text = (ROOT / "plugins/doc_fragments/storage.py").read_text()
    doc = yaml.safe_load(text.split('VOLUMES = r"""')[1].split('"""')[0])
    module = doc["options"]["volumes"]["suboptions"]["source"]["suboptions"]
    spec = OPTIONS["disks"]["options"]["source"]["options"]
    assert list(module) == list(spec)
    for key, option in spec.items():
        assert (module[key]["type"], module[key].get("choices"), module[key].get("default")) == (
            option["type"], option.get("choices"), option.get("default")), key
