# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's CPU topology from sysfs, and CPU pinning computed from it.

`read_topology` reads a sysfs tree (a path argument, so unit tests use fixture trees);
`compute_pinning` is pure: topology + guest requests -> vcpupin, emulatorpin, iothreadpin and
a guest <topology> per guest, or a list of errors that name the guest and the CPUs.
"""

from __future__ import annotations

import os
import re


def parse_cpulist(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]."""
    cpus: set[int] = set()
    for raw in text.strip().split(","):
        part = raw.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            step = 1
            if ":" in hi:  # 0-15:2 (stride form of isolcpus)
                hi, stride = hi.split(":", 1)
                step = int(stride.split("/")[0])
            cpus.update(range(int(lo), int(hi) + 1, step))
        else:
            cpus.add(int(part))
    return sorted(cpus)


def format_cpulist(cpus) -> str:
    """[0, 1, 2, 3, 8] -> '0-3,8'."""
    out: list[str] = []
    run: list[int] = []
    for cpu in sorted(set(cpus)):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else "%d-%d" % (run[0], run[-1]))
        run = [cpu]
    if run:
        out.append(str(run[0]) if len(run) == 1 else "%d-%d" % (run[0], run[-1]))
    return ",".join(out)


def _read(path: str, default: str = "") -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return default


def _cmdline_cpus(cmdline: str, key: str) -> list[int]:
    m = re.search(r"(?:^|\s)%s=(\S+)" % re.escape(key), cmdline)
    if not m:
        return []
    # isolcpus may carry flags first: isolcpus=domain,managed_irq,2-7
    parts = [p for p in m.group(1).split(",") if p and (p[0].isdigit())]
    return parse_cpulist(",".join(parts))


def read_topology(cpu_dir: str = "/sys/devices/system/cpu", node_dir: str = "/sys/devices/system/node",
                  devices_dir: str = "/sys/devices", hugepages_dir: str = "/sys/kernel/mm/hugepages",
                  cmdline: str = "") -> dict:
    present = parse_cpulist(_read(os.path.join(cpu_dir, "present")) or _read(os.path.join(cpu_dir, "possible")))
    online = set(parse_cpulist(_read(os.path.join(cpu_dir, "online"))))
    # Hybrid Intel CPUs expose their core types as two PMUs.
    p_cores = set(parse_cpulist(_read(os.path.join(devices_dir, "cpu_core", "cpus"))))
    e_cores = set(parse_cpulist(_read(os.path.join(devices_dir, "cpu_atom", "cpus"))))
    nodes: dict[int, list[int]] = {}
    if os.path.isdir(node_dir):
        for entry in sorted(os.listdir(node_dir)):
            m = re.fullmatch(r"node(\d+)", entry)
            if m:
                nodes[int(m.group(1))] = parse_cpulist(_read(os.path.join(node_dir, entry, "cpulist")))
    node_of = {cpu: node for node, cpus in nodes.items() for cpu in cpus}
    cpus = []
    l3_groups: dict[str, list[int]] = {}
    for cpu in present:
        base = os.path.join(cpu_dir, "cpu%d" % cpu)
        topo = os.path.join(base, "topology")
        is_online = cpu in online
        info = {"id": cpu, "online": is_online}
        if is_online:
            siblings = parse_cpulist(_read(os.path.join(topo, "thread_siblings_list")) or str(cpu))
            l3 = ""
            cache = os.path.join(base, "cache")
            if os.path.isdir(cache):
                for index in sorted(os.listdir(cache)):
                    if _read(os.path.join(cache, index, "level")) == "3":
                        l3 = _read(os.path.join(cache, index, "shared_cpu_list"))
            if l3:
                l3_groups.setdefault(l3, parse_cpulist(l3))
            info.update(
                core_id=int(_read(os.path.join(topo, "core_id"), "0")),
                package=int(_read(os.path.join(topo, "physical_package_id"), "0")),
                die=int(_read(os.path.join(topo, "die_id"), "0") or 0),
                siblings=siblings,
                node=node_of.get(cpu, 0),
                l3=l3 or None,
                type="performance" if cpu in p_cores else "efficiency" if cpu in e_cores else None,
            )
        cpus.append(info)
    hugepages = {}
    if os.path.isdir(hugepages_dir):
        for entry in sorted(os.listdir(hugepages_dir)):
            m = re.fullmatch(r"hugepages-(\d+)kB", entry)
            if m:
                hugepages[int(m.group(1))] = {
                    "total": int(_read(os.path.join(hugepages_dir, entry, "nr_hugepages"), "0")),
                    "free": int(_read(os.path.join(hugepages_dir, entry, "free_hugepages"), "0")),
                }
    online_cpus = [c for c in cpus if c["online"]]
    return {
        "cpus": cpus,
        "online": sorted(online),
        "threads_per_core": max((len(c["siblings"]) for c in online_cpus), default=1),
        "nodes": {n: [c for c in cs if c in online] for n, cs in nodes.items()} or {0: sorted(online)},
        "l3_groups": sorted(l3_groups.values()),
        "hybrid": bool(p_cores and e_cores),
        "core_types": {"performance": sorted(p_cores), "efficiency": sorted(e_cores)},
        "isolcpus": _cmdline_cpus(cmdline, "isolcpus"),
        "nohz_full": _cmdline_cpus(cmdline, "nohz_full"),
        "hugepages": hugepages,
    }


def default_housekeeping(topology: dict) -> list[int]:
    """The first online CPU's core (core 0) with its SMT siblings: kept for the host."""
    online = [c for c in topology["cpus"] if c["online"]]
    return sorted(online[0]["siblings"]) if online else []


def _cores(topology: dict, free: set[int]) -> list[dict]:
    """Physical cores with their free threads, in preference order: performance cores first,
    whole cores before partly used ones, then by node and first CPU."""
    seen: dict[tuple, dict] = {}
    for cpu in topology["cpus"]:
        if not cpu["online"]:
            continue
        key = tuple(cpu["siblings"])
        core = seen.setdefault(key, {"siblings": list(key), "threads": [], "node": cpu["node"], "l3": cpu["l3"],
                                     "type": cpu["type"]})
        if cpu["id"] in free:
            core["threads"].append(cpu["id"])
    cores = [c for c in seen.values() if c["threads"]]
    cores.sort(key=lambda c: (c["type"] == "efficiency", len(c["threads"]) < len(c["siblings"]), c["node"],
                              c["siblings"][0]))
    return cores


def _take(cores: list[dict], count: int) -> list[dict]:
    """Whole cores, in order, until `count` threads; the last core may be used in part."""
    chosen, total = [], 0
    for core in cores:
        if total >= count:
            break
        threads = sorted(core["threads"])[: count - total]
        chosen.append(dict(core, threads=threads))
        total += len(threads)
    return chosen if total >= count else []


def _place(topology: dict, free: set[int], count: int) -> tuple:
    """(cores, scope): the preferred cores for `count` threads, staying inside one L3 group, else
    one NUMA node, else the whole host (scope says which)."""
    cores = _cores(topology, free)
    for group in topology["l3_groups"]:
        members = set(group)
        chosen = _take([c for c in cores if set(c["threads"]) <= members], count)
        if chosen:
            return chosen, "l3"
    for node in sorted(topology["nodes"]):
        chosen = _take([c for c in cores if c["node"] == node], count)
        if chosen:
            return chosen, "node"
    return _take(cores, count), "host"


def _explicit(req: dict, ctx: dict) -> dict:
    """Validate one explicit {vCPU: CPUs} map; ctx has all, online, housekeeping, owner, errors."""
    all_ids, online, housekeeping = ctx["all"], ctx["online"], ctx["housekeeping"]
    owner, errors = ctx["owner"], ctx["errors"]
    name, pins = req["name"], {}
    for vcpu, cpus in sorted((int(k), v) for k, v in (req.get("cpu_pins") or {}).items()):
        wanted = parse_cpulist(str(cpus))
        if vcpu >= int(req["vcpus"]):
            errors.append("guest %s: cpu_pins names vCPU %d, but the guest has %d vCPUs (0-%d)."
                          % (name, vcpu, req["vcpus"], int(req["vcpus"]) - 1))
        for cpu in wanted:
            if cpu not in all_ids:
                errors.append("guest %s: vCPU %d is pinned to CPU %d, which does not exist (CPUs: %s)."
                              % (name, vcpu, cpu, format_cpulist(all_ids)))
            elif cpu not in online:
                errors.append("guest %s: vCPU %d is pinned to CPU %d, which is offline (online: %s)."
                              % (name, vcpu, cpu, format_cpulist(online)))
            elif cpu in housekeeping:
                errors.append("guest %s: vCPU %d is pinned to CPU %d, a housekeeping CPU (%s) kept for the host; "
                              "pin it elsewhere or change cpu_housekeeping."
                              % (name, vcpu, cpu, format_cpulist(housekeeping)))
            elif owner.get(cpu, name) != name:
                errors.append("guest %s: vCPU %d is pinned to CPU %d, which guest %s pins too; pinned guests must "
                              "not share CPUs." % (name, vcpu, cpu, owner[cpu]))
            else:
                owner[cpu] = name
        pins[vcpu] = wanted
    return pins


def _guest_topology(chosen: list[dict], count: int, threads_per_core: int) -> dict:
    whole = all(len(c["threads"]) == threads_per_core for c in chosen)
    threads = threads_per_core if whole and count % threads_per_core == 0 else 1
    return {"sockets": 1, "dies": 1, "cores": count // threads, "threads": threads}


def compute_pinning(topology: dict, requests: list[dict], housekeeping=None, numa_strict: bool = False,
                    taken: dict | None = None) -> tuple:
    """Pins for every guest that asks for them; returns (results by guest name, errors).

    A request has name, vcpus, and either cpu_pinning ("auto": pin every vCPU; a number: pin
    that many) or cpu_pins (an explicit {vCPU: CPU list} map, validated, not trusted). Explicit
    maps are placed first, then automatic ones in the order given; no two guests share a CPU,
    and the housekeeping CPUs (default: core 0 with its siblings) run the emulator and I/O
    threads of every pinned guest. `taken` maps CPUs to the guests (not in `requests`) that
    already pin them: they are not free, and explicit maps must not use them.
    """
    errors: list[str] = []
    all_ids = {c["id"] for c in topology["cpus"]}
    online = set(topology["online"])
    if housekeeping in (None, "", []):
        hk = set(default_housekeeping(topology))
    elif isinstance(housekeeping, list):
        hk = {int(c) for c in housekeeping}
    else:
        hk = set(parse_cpulist(str(housekeeping)))
    if not hk <= online:
        errors.append("cpu_housekeeping: CPUs %s are not online (online: %s)."
                      % (format_cpulist(hk - online), format_cpulist(online)))
    asked = {req["name"] for req in requests}
    owner: dict[int, str] = {int(c): g for c, g in (taken or {}).items() if g not in asked}
    results: dict[str, dict] = {}
    hk_list = format_cpulist(hk & online)
    for req in requests:
        if req.get("cpu_pins"):
            pins = _explicit(req, {"all": all_ids, "online": online, "housekeeping": hk, "owner": owner,
                                   "errors": errors})
            results[req["name"]] = {
                "vcpupin": [{"vcpu": v, "cpuset": format_cpulist(c)} for v, c in sorted(pins.items())],
                "emulatorpin": hk_list, "iothreadpin": hk_list,
                "topology": {"sockets": 1, "dies": 1, "cores": int(req["vcpus"]), "threads": 1},
                "cpus": sorted({c for cs in pins.values() for c in cs}),
            }
    for req in requests:
        mode = req.get("cpu_pinning")
        if req.get("cpu_pins") or mode in (None, "", "none", False):
            continue
        name = req["name"]
        count = int(req["vcpus"]) if mode == "auto" else int(mode)
        free = online - hk - set(owner)
        if count > len(free):
            others = sorted(set(owner.values()))
            errors.append("guest %s: %d vCPUs to pin, but only %d CPUs are free outside the housekeeping CPUs (%s)%s: "
                          "%s. Pin fewer vCPUs or free CPUs." % (
                              name, count, len(free), hk_list,
                              " and those of %s" % ", ".join(others) if others else "", format_cpulist(free) or "none"))
            continue
        chosen, scope = _place(topology, free, count)
        if scope == "host" and numa_strict and len(topology["nodes"]) > 1:
            per_node = ", ".join("node %d has %d" % (n, len(free & set(cs)))
                                 for n, cs in sorted(topology["nodes"].items()))
            errors.append("guest %s: %d vCPUs do not fit in one NUMA node (%s free) and numa_strict is "
                          "set; pin fewer vCPUs or allow crossing nodes." % (name, count, per_node))
            continue
        threads = [t for core in chosen for t in core["threads"]]
        for cpu in threads:
            owner[cpu] = name
        results[name] = {
            "vcpupin": [{"vcpu": i, "cpuset": str(cpu)} for i, cpu in enumerate(threads)],
            "emulatorpin": hk_list, "iothreadpin": hk_list,
            "topology": _guest_topology(chosen, count, topology["threads_per_core"]),
            "cpus": sorted(threads),
        }
    return results, errors


def hugepage_errors(topology: dict, guests: list[dict]) -> list[str]:
    """Whether the host's free huge pages cover the guests that ask for hugepage backing.

    guests: name, memory_mib, and hugepages (true for the default 2 MiB pages, or a page size
    in KiB). Guests that are running already hold their pages; pass only those to be started.
    """
    errors = []
    need: dict[int, list] = {}
    for guest in guests:
        size = guest.get("hugepages")
        if not size:
            continue
        size_kib = 2048 if size is True else int(size)
        pages = -(-int(guest["memory_mib"]) * 1024 // size_kib)
        need.setdefault(size_kib, []).append((guest["name"], pages))
    pools = {int(k): v for k, v in topology.get("hugepages", {}).items()}
    for size_kib, wants in sorted(need.items()):
        total = sum(w[1] for w in wants)
        free = pools.get(size_kib, {}).get("free", 0)
        if total > free:
            errors.append("hugepages: %s need %d pages of %d KiB, but the host has %d free (%s). Reserve more "
                          "(vm.nr_hugepages, or hugepages=N on the kernel command line) or turn hugepages off."
                          % (", ".join("%s %d" % w for w in wants), total, size_kib, free,
                             "sizes offered: %s KiB" % ", ".join(str(s) for s in sorted(pools)) if pools
                             else "no huge page sizes offered"))
    return errors
