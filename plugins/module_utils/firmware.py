# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""QEMU firmware descriptors, and the UEFI variable store with enrolled keys the collection builds
where the distribution ships none.

libvirt picks a guest's UEFI firmware from QEMU's firmware descriptors (JSON files, described in
QEMU's docs/interop/firmware.json): a file in /etc/qemu/firmware overrides the one of the same
name in /usr/share/qemu/firmware, and the first matching file in name order wins. A guest asking
for Secure Boot with enrolled keys needs a descriptor with the features `secure-boot` and
`enrolled-keys`. Debian's ovmf ships one (40-edk2-x86_64-secure-enrolled.json, with
OVMF_VARS_4M.ms.fd); Arch's edk2-ovmf ships none and no variable store with Microsoft's keys.
There the collection enrols them into a copy of the distribution's Secure Boot template with
virt-fw-vars (virt-firmware), and installs a descriptor of its own that points at that copy and
at the same code file.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import os

FIRMWARE_DIRS = ("/etc/qemu/firmware", "/usr/share/qemu/firmware")

# The collection's descriptors: this prefix in the first directory is what it owns there.
OWN_PREFIX = "45-kvmlab-"
ENROLLED_DIR = "/var/lib/kvmlab/firmware"
# virt-fw-vars: enrol Red Hat's PK and Microsoft's KEK and db (the keys Windows and shim are
# signed with), and turn Secure Boot on. Its manual's example for "default (microsoft) secure boot
# certificates".
ENROL_ARGS = ("--enroll-redhat", "--secure-boot")


def malformed(desc) -> str | None:
    """Why a parsed descriptor cannot be read as QEMU's firmware.json schema describes it (the
    fields used here, with their types), or None."""
    if not isinstance(desc, dict):
        return "it is not a JSON object"
    for field, kind in (("interface-types", list), ("features", list), ("targets", list), ("mapping", dict)):
        if field in desc and not isinstance(desc[field], kind):
            return "%s is not a %s" % (field, "list" if kind is list else "mapping")
    for field in ("interface-types", "features"):
        if not all(isinstance(v, str) for v in desc.get(field, [])):
            return "%s holds a value that is not a string" % field
    for target in desc.get("targets", []):
        if not isinstance(target, dict) or not isinstance(target.get("machines", []), list) \
                or not all(isinstance(m, str) for m in target.get("machines", [])):
            return "targets holds an entry that is not {architecture, machines: [strings]}"
    template = desc.get("mapping", {}).get("nvram-template", {})
    if not isinstance(template, dict) or not isinstance(template.get("filename", ""), str):
        return "mapping.nvram-template is not {filename: string}"
    return None


def descriptors(dirs=None, skipped: list | None = None) -> list[dict]:
    """The descriptors libvirt reads, in its order, each with its path under `_file`.

    As libvirt (qemuBuildFileList), every file whose name does not start with a dot counts,
    whatever its suffix; an empty file in an earlier directory masks the one of the same name.
    A file that cannot be read, is not JSON or is malformed is left out; with `skipped`, each is
    appended to it as "FILE: why", for a warning.
    """
    seen: dict[str, str] = {}
    for directory in reversed(dirs or FIRMWARE_DIRS):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if not name.startswith(".") and os.path.isfile(os.path.join(directory, name)):
                seen[name] = os.path.join(directory, name)
    out = []
    for name in sorted(seen):
        try:
            with open(seen[name], encoding="utf-8") as handle:
                text = handle.read()
            if not text.strip():
                continue  # an empty file masks a descriptor, as in libvirt
            desc = json.loads(text)
            why = malformed(desc)
        except (OSError, ValueError) as exc:
            why = "%s" % (exc.strerror if isinstance(exc, OSError) and exc.strerror else "not JSON (%s)" % exc)
        if why is not None:
            if skipped is not None:
                skipped.append("%s: %s" % (seen[name], why))
            continue
        desc["_file"] = seen[name]
        out.append(desc)
    return out


def is_own(desc: dict, descriptor_dir: str = FIRMWARE_DIRS[0]) -> bool:
    path = desc.get("_file", "")
    return os.path.dirname(path) == descriptor_dir and os.path.basename(path).startswith(OWN_PREFIX)


def _uefi_targets(desc: dict, arch: str) -> list[list[str]]:
    if "uefi" not in desc.get("interface-types", []):
        return []
    return [t.get("machines", []) for t in desc.get("targets", []) if t.get("architecture") == arch]


def installed(desc: dict) -> bool:
    """Whether the firmware files a descriptor names exist. Arch's edk2-ovmf ships descriptors
    of IA32 firmware (80-/81-edk2-ovmf-ia32-on-x86_64*.json) whose files under /usr/share/edk2/ia32/
    not every build installs: such a descriptor offers nothing."""
    mapping = desc.get("mapping", {})
    files = [mapping.get(key, {}).get("filename") for key in ("executable", "nvram-template")]
    return all(os.path.isfile(f) for f in files if f)


def matching(descs: list[dict], arch: str, machine: str, secure: bool, enrolled: bool) -> list[str]:
    """Files of the UEFI descriptors for `arch` and `machine` with exactly these two features,
    whose firmware files are installed."""
    found = []
    for desc in descs:
        if not installed(desc):
            continue
        features = set(desc.get("features", []))
        if secure != ("secure-boot" in features) or enrolled != ("enrolled-keys" in features):
            continue
        if any(fnmatch.fnmatch(machine, pattern) for machines in _uefi_targets(desc, arch) for pattern in machines):
            found.append(desc["_file"])
    return found


def _q35(desc: dict, arch: str) -> bool:
    return any("q35" in pattern for machines in _uefi_targets(desc, arch) for pattern in machines)


def _template(desc: dict) -> str | None:
    mapping = desc.get("mapping", {})
    if mapping.get("device") != "flash" or mapping.get("mode", "split") != "split":
        return None
    return mapping.get("nvram-template", {}).get("filename")


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def plan(descs: list[dict], arch: str = "x86_64", directory: str = ENROLLED_DIR,
         descriptor_dir: str = FIRMWARE_DIRS[0]) -> dict:
    """What the host needs for enrolled keys on q35 guests of `arch`.

    Returns {"state": ...} with state
      distribution - a descriptor not of the collection offers them: nothing to do;
      current      - the collection's descriptor and template are there and built from the
                     distribution's template as it is now;
      build        - they must be (re)built: also source, template, descriptor, content;
      no-firmware  - no UEFI firmware is installed (yet);
      no-template  - UEFI firmware without a Secure Boot variable template to enrol into.
    """
    q35 = [d for d in descs if _q35(d, arch)]
    for desc in q35:
        features = desc.get("features", [])
        if not is_own(desc, descriptor_dir) and "secure-boot" in features and "enrolled-keys" in features:
            return {"state": "distribution", "descriptor": desc["_file"]}
    sources = [d for d in q35 if not is_own(d, descriptor_dir) and "secure-boot" in d.get("features", [])
               and "enrolled-keys" not in d.get("features", []) and _template(d) and installed(d)]
    if not sources:
        return {"state": "no-template" if q35 else "no-firmware"}
    source = sources[0]
    vars_in = _template(source)
    stem = os.path.basename(source["_file"]).split("-", 1)[-1]
    stem = stem[:-len(".json")] if stem.endswith(".json") else stem
    base = os.path.basename(vars_in)
    root, ext = os.path.splitext(base)
    template = os.path.join(directory, "%s.ms%s" % (root, ext or ".fd"))
    try:
        source_sum = sha256(vars_in)
    except OSError as exc:
        return {"state": "no-template", "error": "%s names %s: %s" % (source["_file"], vars_in, exc.strerror)}
    desc = copy.deepcopy(source)
    desc.pop("_file")
    what = (source.get("description", stem), " ".join(ENROL_ARGS), vars_in, source_sum)
    desc["description"] = "kvmlab.hypervisor: %s with Microsoft's keys enrolled (virt-fw-vars %s) into a copy of %s " \
        "(sha256 %s)" % what
    desc["features"] = [*source.get("features", []), "enrolled-keys"]
    desc["mapping"]["nvram-template"] = dict(desc["mapping"]["nvram-template"], filename=template)
    content = json.dumps(desc, indent=4) + "\n"
    path = os.path.join(descriptor_dir, "%s%s-enrolled.json" % (OWN_PREFIX, stem))
    try:
        with open(path, encoding="utf-8") as handle:
            current = handle.read()
    except OSError:
        current = None
    state = "current" if current == content and os.path.isfile(template) else "build"
    return {"state": state, "source": source["_file"], "source_template": vars_in, "template": template,
            "descriptor": path, "content": content, "current": current,
            "stale": sorted(d["_file"] for d in descs if is_own(d, descriptor_dir) and d["_file"] != path)}
