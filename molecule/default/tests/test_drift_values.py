"""Drift of every value the builder writes, on the real libvirtd, derived from the built XML.

For each guest of the demo site, every attribute and text of its built domain XML
(tests/drift_values.py) is changed in libvirt's inactive definition, as `virsh edit` would
change it, all at once: the changes libvirt refuses as invalid are found by bisection and left
out (and counted), those it keeps are the drift cases. One check run must report each of them
(in the module's differences), one real run must repair them all - libvirt accepting every
repaired definition - and the next run must be changed=0.
"""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import domain_merge as dx
from ansible_collections.kvmlab.hypervisor.plugins.plugin_utils.site import resolve
from demo_site import demo_overrides
from drift_values import drifted_values, mutate

ROOT = Path(__file__).resolve().parents[3]
V = "virsh -c qemu:///system "
GUESTS = ("win11", "arch", "kali")


def demo_desired(host) -> dict:
    """Each demo guest's domain XML as the site builds it, from this host's topology."""
    pools = yaml.safe_load((ROOT / "roles/storage/defaults/main.yml").read_text())["kvmlab_storage_pools"]
    topology = host.ansible("kvmlab.hypervisor.host_facts", "", check=False)["ansible_facts"]["kvmlab_host_facts"]
    specs = []
    for vm in GUESTS:
        role = ROOT / "examples" / "workstation" / "roles" / ("vm_" + vm)
        defaults = yaml.safe_load((role / "defaults/main.yml").read_text())
        text = yaml.safe_dump(defaults["vm_%s_guest" % vm])
        if "vm_kali_release" in defaults:
            text = text.replace("{{ vm_kali_release }}", defaults["vm_kali_release"])
        specs.append(yaml.safe_load(text))
    guests, errors = resolve(specs, {"overrides": demo_overrides(), "pools": pools, "topology": topology})
    assert errors == []
    out = {}
    for g in guests:
        root = ET.fromstring(g["xml"])
        for disk in root.findall("devices/disk[@device='cdrom']"):
            if host.run("test -e '%s'" % disk.find("source").get("file")).rc != 0:
                disk.remove(disk.find("source"))  # the demo host has no ISOs: empty drives
        out[g["name"]] = ET.tostring(root, encoding="unicode")
    return out


def define(host, xml: str) -> bool:
    mark = "XML_%s" % uuid.uuid4().hex
    return host.run("cat > /tmp/drift.xml <<'%s'\n%s\n%s\n%s define /tmp/drift.xml" % (mark, xml, mark, V)).rc == 0


def accepted(host, baseline: str, desired: str, values: list) -> tuple[list, list]:
    """The values libvirt accepts changed together (defined, in the end), and those it refuses."""
    kept, refused = [], []

    def attempt(chunk: list) -> None:
        if define(host, mutate(baseline, desired, *kept, *chunk)):
            kept.extend(chunk)
        elif len(chunk) == 1:
            refused.extend(chunk)
        else:
            attempt(chunk[:len(chunk) // 2])
            attempt(chunk[len(chunk) // 2:])

    attempt(values)
    assert define(host, mutate(baseline, desired, *kept))
    return kept, refused


def reported(value, output: str) -> bool:
    """Whether the module's differences name the value's element, or the device it belongs to
    (a changed key, such as a disk's target, reports the whole device as removed and added)."""
    parts = value.where.split("/")
    paths = ["/".join(parts[:n]) for n in range(len(parts), 2, -1)] or [value.where]
    return any(json.dumps(path + mark)[1:-1] in output for path in paths for mark in ("@", ": "))


@pytest.fixture(scope="module")
def drifted(host, site):
    assert site("--tags", "guests").rc == 0  # start from the converged guests
    desired = demo_desired(host)
    cases = {}
    for name in GUESTS:
        baseline = host.check_output(V + "dumpxml --inactive " + name)
        assert dx.differences(desired[name], baseline) == [], name
        kept, refused = accepted(host, baseline, desired[name], drifted_values(desired[name]))
        now = host.check_output(V + "dumpxml --inactive " + name)
        # What libvirt stored differently from the edit (normalised) is no drift to repair.
        live = [v for v in kept if v.read(now, desired[name]) != v.original]
        cases[name] = {"desired": desired[name], "drifted": live, "refused": refused}
    yield cases
    assert site("--tags", "guests").rc == 0  # repaired, whatever the tests found


def test_the_battery_drifts_many_values_of_every_guest(drifted):
    for name, case in drifted.items():
        assert len(case["drifted"]) >= 25, (name, [v.label for v in case["drifted"]])


def test_every_drifted_value_is_reported_repaired_and_then_quiet(host, site, drifted, summary):
    json_output = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    check = site("--check", "--tags", "guests", "-v", env=json_output)
    assert check.rc == 0, check
    missed = [(name, v.label) for name, case in drifted.items() for v in case["drifted"]
              if not reported(v, check.stdout)]
    assert missed == [], missed
    total = sum(len(case["drifted"]) for case in drifted.values())
    summary["drift reported"] += total

    real = site("--tags", "guests", "-v", env=json_output)
    assert real.rc == 0, real  # libvirt accepted every repaired definition
    for name, case in drifted.items():
        now = host.check_output(V + "dumpxml --inactive " + name)
        assert dx.differences(case["desired"], now) == [], name
    summary["drift repaired"] += total

    again = site("--tags", "guests")
    assert again.rc == 0 and again.changed == 0, again
    summary["drift changed=0 after"] += total

    # The repaired definitions are not only accepted: the guests start from them.
    host.run_test("for g in %s; do %s destroy $g; done" % (" ".join(GUESTS), V))
    started = site("--tags", "guests")
    assert started.rc == 0, started
    for name in GUESTS:
        assert host.check_output(V + "domstate " + name) == "running", name
