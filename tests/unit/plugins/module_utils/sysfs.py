"""Build sysfs trees (cpu, node, devices) from compact CPU descriptions, for topology tests."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.kvmlab.hypervisor.plugins.module_utils.topology import format_cpulist


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def build(root: Path, cpus: list[dict], p_cores=(), e_cores=(), offline=()) -> dict:
    """cpus: {id, core, package, siblings, node, l3}; returns the read_topology() arguments."""
    cpu_dir, node_dir, dev_dir = root / "cpu", root / "node", root / "devices"
    ids = [c["id"] for c in cpus]
    write(cpu_dir / "present", format_cpulist(ids))
    write(cpu_dir / "online", format_cpulist([i for i in ids if i not in offline]))
    nodes: dict[int, list[int]] = {}
    for c in cpus:
        base = cpu_dir / ("cpu%d" % c["id"])
        nodes.setdefault(c["node"], []).append(c["id"])
        if c["id"] in offline:
            write(base / "online", "0")
            continue
        write(base / "topology" / "core_id", str(c["core"]))
        write(base / "topology" / "physical_package_id", str(c["package"]))
        write(base / "topology" / "die_id", "0")
        write(base / "topology" / "thread_siblings_list", format_cpulist(c["siblings"]))
        write(base / "cache" / "index3" / "level", "3")
        write(base / "cache" / "index3" / "shared_cpu_list", format_cpulist(c["l3"]))
    for node, members in nodes.items():
        write(node_dir / ("node%d" % node) / "cpulist", format_cpulist(members))
    if p_cores:
        write(dev_dir / "cpu_core" / "cpus", format_cpulist(p_cores))
        write(dev_dir / "cpu_atom" / "cpus", format_cpulist(e_cores))
    return {"cpu_dir": str(cpu_dir), "node_dir": str(node_dir), "devices_dir": str(dev_dir),
            "hugepages_dir": str(root / "hugepages")}


def smt_desktop(root: Path, cores: int = 8, smt: bool = True) -> dict:
    """One socket, `cores` cores; with SMT, CPU i and i+cores are siblings (AMD/Intel desktop order)."""
    n = cores * 2
    cpus = [{"id": i, "core": i % cores, "package": 0, "node": 0, "l3": list(range(n)),
             "siblings": [i % cores, i % cores + cores] if smt else [i]} for i in range(n)]
    return build(root, cpus, offline=() if smt else range(cores, n))


def hybrid_laptop(root: Path) -> dict:
    """20 threads: 6 P-cores with HT (0-11, siblings adjacent), 8 E-cores (12-19), like the seed."""
    cpus = [{"id": i, "core": i // 2 * 4, "package": 0, "node": 0, "l3": list(range(20)),
             "siblings": [i - i % 2, i - i % 2 + 1]} for i in range(12)]
    cpus += [{"id": i, "core": 40 + i - 12, "package": 0, "node": 0, "l3": list(range(20)), "siblings": [i]}
             for i in range(12, 20)]
    return build(root, cpus, p_cores=range(12), e_cores=range(12, 20))


def numa_server(root: Path) -> dict:
    """2 sockets x 8 cores x 2 threads; node0: 0-7,16-23, node1: 8-15,24-31; an L3 per socket."""
    cpus = []
    for i in range(32):
        core = i % 16
        socket = core // 8
        members = [c for c in range(32) if (c % 16) // 8 == socket]
        cpus.append({"id": i, "core": core % 8, "package": socket, "node": socket, "l3": members,
                     "siblings": [core, core + 16]})
    return build(root, cpus)
