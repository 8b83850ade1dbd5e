"""CPU topology from sysfs trees, and pinning computed from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.kvmlab.hypervisor.plugins.module_utils import topology as topo

from . import sysfs

HERE = Path(__file__).parent / "fixtures" / "sysfs-ci-2cpu"


def read(args: dict, cmdline: str = "") -> dict:
    return topo.read_topology(args["cpu_dir"], args["node_dir"], args["devices_dir"], args["hugepages_dir"], cmdline)


def pins(result: dict) -> dict:
    return {p["vcpu"]: p["cpuset"] for p in result["vcpupin"]}


@pytest.mark.parametrize(("text", "cpus"), [("0-3,8,10-11", [0, 1, 2, 3, 8, 10, 11]), ("", []), ("5", [5]),
                                            ("0-7:2", [0, 2, 4, 6])])
def test_cpulists(text, cpus):
    assert topo.parse_cpulist(text) == cpus
    if ":" not in text:
        assert topo.format_cpulist(cpus) == text


def test_machines_here():
    t = topo.read_topology(str(HERE / "cpu"), str(HERE / "node"), str(HERE / "none"), str(HERE / "none"),
                           "console=ttyS0 quiet")
    assert t["online"] == [0, 1]
    assert t["threads_per_core"] == 1
    assert t["nodes"] == {0: [0, 1]}
    assert t["l3_groups"] == [[0, 1]]
    assert t["hybrid"] is False
    assert [c["siblings"] for c in t["cpus"]] == [[0], [1]]
    results, errors = topo.compute_pinning(t, [{"name": "demo", "vcpus": 1, "cpu_pinning": "auto"}])
    assert errors == []
    assert pins(results["demo"]) == {0: "1"}
    assert results["demo"]["emulatorpin"] == "0"


def test_two_vcpus_do_not_fit_here():
    t = topo.read_topology(str(HERE / "cpu"), str(HERE / "node"), str(HERE / "none"), str(HERE / "none"))
    errors = topo.compute_pinning(t, [{"name": "win11", "vcpus": 6, "cpu_pinning": "auto"}])[1]
    assert errors == ["guest win11: 6 vCPUs to pin, but only 1 CPUs are free outside the housekeeping CPUs (0): 1. "
                      "Pin fewer vCPUs or free CPUs."]


def test_hybrid_laptop_pins_win11_on_three_p_cores(tmp_path):
    t = read(sysfs.hybrid_laptop(tmp_path), "BOOT_IMAGE=/vmlinuz-linux isolcpus=domain,2-7 nohz_full=2-7")
    assert t["hybrid"] is True
    assert t["core_types"] == {"performance": list(range(12)), "efficiency": list(range(12, 20))}
    assert (t["isolcpus"], t["nohz_full"]) == ([2, 3, 4, 5, 6, 7], [2, 3, 4, 5, 6, 7])
    results, errors = topo.compute_pinning(t, [{"name": "win11", "vcpus": 6, "cpu_pinning": "auto"}])
    assert errors == []
    win11 = results["win11"]
    # Three P-cores with their siblings, not core 0; the emulator on core 0.
    assert pins(win11) == {0: "2", 1: "3", 2: "4", 3: "5", 4: "6", 5: "7"}
    assert win11["emulatorpin"] == "0-1"
    assert win11["iothreadpin"] == "0-1"
    assert win11["topology"] == {"sockets": 1, "dies": 1, "cores": 3, "threads": 2}


def test_hybrid_prefers_p_cores_then_e_cores(tmp_path):
    t = read(sysfs.hybrid_laptop(tmp_path))
    results, errors = topo.compute_pinning(t, [
        {"name": "win11", "vcpus": 6, "cpu_pinning": "auto"},
        {"name": "arch", "vcpus": 6, "cpu_pinning": "auto"},
    ])
    assert errors == []
    assert results["arch"]["cpus"] == [8, 9, 10, 11, 12, 13]
    assert results["arch"]["topology"]["threads"] == 1  # P and E cores mixed: no SMT to mirror
    assert not set(results["win11"]["cpus"]) & set(results["arch"]["cpus"])


def test_desktop_keeps_siblings_together(tmp_path):
    t = read(sysfs.smt_desktop(tmp_path))
    assert t["threads_per_core"] == 2
    results, errors = topo.compute_pinning(t, [{"name": "a", "vcpus": 4, "cpu_pinning": "auto"},
                                               {"name": "b", "vcpus": 3, "cpu_pinning": "auto"}])
    assert errors == []
    assert pins(results["a"]) == {0: "1", 1: "9", 2: "2", 3: "10"}
    assert results["a"]["emulatorpin"] == "0,8"
    assert pins(results["b"]) == {0: "3", 1: "11", 2: "4"}
    assert results["b"]["topology"] == {"sockets": 1, "dies": 1, "cores": 3, "threads": 1}


def test_smt_disabled(tmp_path):
    t = read(sysfs.smt_desktop(tmp_path, smt=False))
    assert t["online"] == list(range(8))
    assert [c["online"] for c in t["cpus"]].count(False) == 8
    results, errors = topo.compute_pinning(t, [{"name": "a", "vcpus": 4, "cpu_pinning": "auto"}])
    assert errors == []
    assert pins(results["a"]) == {0: "1", 1: "2", 2: "3", 3: "4"}
    assert results["a"]["topology"]["threads"] == 1


def test_numa_server_stays_in_one_node(tmp_path):
    t = read(sysfs.numa_server(tmp_path))
    assert sorted(t["nodes"]) == [0, 1]
    assert len(t["l3_groups"]) == 2
    results, errors = topo.compute_pinning(t, [{"name": "a", "vcpus": 8, "cpu_pinning": "auto"},
                                               {"name": "b", "vcpus": 12, "cpu_pinning": "auto"}])
    assert errors == []
    node_of = {c["id"]: c["node"] for c in t["cpus"]}
    assert {node_of[c] for c in results["a"]["cpus"]} == {0}
    # 14 threads are left on node 0 after a and core 0: b does not fit there, so it goes to node 1.
    assert {node_of[c] for c in results["b"]["cpus"]} == {1}


def test_numa_strict_refuses_crossing(tmp_path):
    t = read(sysfs.numa_server(tmp_path))
    errors = topo.compute_pinning(t, [{"name": "big", "vcpus": 20, "cpu_pinning": "auto"}], numa_strict=True)[1]
    assert errors == ["guest big: 20 vCPUs do not fit in one NUMA node (node 0 has 14, node 1 has 16 free) and "
                      "numa_strict is set; pin fewer vCPUs or allow crossing nodes."]
    results, errors = topo.compute_pinning(t, [{"name": "big", "vcpus": 20, "cpu_pinning": "auto"}])
    assert errors == [] and len(results["big"]["cpus"]) == 20


def test_explicit_maps_are_validated(tmp_path):
    t = read(sysfs.smt_desktop(tmp_path, smt=False))
    errors = topo.compute_pinning(t, [
        {"name": "a", "vcpus": 2, "cpu_pins": {0: 2, 1: 40}},
        {"name": "b", "vcpus": 2, "cpu_pins": {0: 2, 1: 9}},
        {"name": "c", "vcpus": 1, "cpu_pins": {0: 0, 3: 5}},
    ])[1]
    assert errors == [
        "guest a: vCPU 1 is pinned to CPU 40, which does not exist (CPUs: 0-15).",
        "guest b: vCPU 0 is pinned to CPU 2, which guest a pins too; pinned guests must not share CPUs.",
        "guest b: vCPU 1 is pinned to CPU 9, which is offline (online: 0-7).",
        "guest c: vCPU 0 is pinned to CPU 0, a housekeeping CPU (0) kept for the host; pin it elsewhere or change "
        "cpu_housekeeping.",
        "guest c: cpu_pins names vCPU 3, but the guest has 1 vCPUs (0-0).",
    ]


def test_explicit_pins_are_kept_and_auto_avoids_them(tmp_path):
    t = read(sysfs.smt_desktop(tmp_path, smt=False))
    results, errors = topo.compute_pinning(t, [
        {"name": "auto", "vcpus": 2, "cpu_pinning": "auto"},
        {"name": "manual", "vcpus": 2, "cpu_pins": {"0": "1", "1": "2-3"}},
    ])
    assert errors == []
    assert pins(results["manual"]) == {0: "1", 1: "2-3"}
    assert pins(results["auto"]) == {0: "4", 1: "5"}


def test_count_and_custom_housekeeping(tmp_path):
    t = read(sysfs.smt_desktop(tmp_path))
    results, errors = topo.compute_pinning(t, [{"name": "a", "vcpus": 4, "cpu_pinning": 2},
                                               {"name": "free", "vcpus": 2}], housekeeping="0-1,8-9")
    assert errors == []
    assert pins(results["a"]) == {0: "2", 1: "10"}
    assert results["a"]["emulatorpin"] == "0-1,8-9"
    assert "free" not in results


def test_hugepages(tmp_path):
    args = sysfs.smt_desktop(tmp_path)
    hp = Path(args["hugepages_dir"]) / "hugepages-2048kB"
    sysfs.write(hp / "nr_hugepages", "4096")
    sysfs.write(hp / "free_hugepages", "1024")
    assert read(args)["hugepages"] == {2048: {"total": 4096, "free": 1024}}


def test_hugepage_check():
    t = {"hugepages": {"2048": {"total": 8192, "free": 8192}, "1048576": {"total": 0, "free": 0}}}
    assert topo.hugepage_errors(t, [{"name": "win11", "memory_mib": 16384, "hugepages": True}]) == []
    errors = topo.hugepage_errors(t, [{"name": "win11", "memory_mib": 16384, "hugepages": True},
                                      {"name": "arch", "memory_mib": 2048, "hugepages": True},
                                      {"name": "kali", "memory_mib": 2048}])
    assert errors == ["hugepages: win11 8192, arch 1024 need 9216 pages of 2048 KiB, but the host has 8192 free "
                      "(sizes offered: 2048, 1048576 KiB). Reserve more (vm.nr_hugepages, or hugepages=N on the "
                      "kernel command line) or turn hugepages off."]
    assert topo.hugepage_errors(t, [{"name": "big", "memory_mib": 2048, "hugepages": 1048576}])[0].startswith(
        "hugepages: big 2 need 2 pages of 1048576 KiB, but the host has 0 free")


def test_housekeeping_as_a_list(tmp_path):
    t = read(sysfs.smt_desktop(tmp_path))
    results, errors = topo.compute_pinning(t, [{"name": "a", "vcpus": 2, "cpu_pinning": "auto"}],
                                           housekeeping=[0, 8, 1, 9])
    assert errors == []
    assert results["a"]["emulatorpin"] == "0-1,8-9"
    assert pins(results["a"]) == {0: "2", 1: "10"}
