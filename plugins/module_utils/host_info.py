# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure readers of the host facts the hypervisor roles decide on.

Every function takes the paths it reads as arguments, so unit tests run them against fixture
trees; kvmlab.hypervisor.host_info only wires them to the real system.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import os
import pwd
import re
import stat

# The KVM module of each CPU vendor, as /proc/cpuinfo names the vendor.
KVM_MODULE_BY_VENDOR = {
    "GenuineIntel": "kvm_intel",
    "AuthenticAMD": "kvm_amd",
    "HygonGenuine": "kvm_amd",
}


def parse_os_release(text: str) -> dict:
    """Return ID, VERSION_ID, ID_LIKE and PRETTY_NAME of an os-release file as lower-case keys."""
    values = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return {
        "id": values.get("ID", "linux"),
        "version_id": values.get("VERSION_ID", ""),
        # Debian's major release; rolling distributions such as Arch have none.
        "major": values.get("VERSION_ID", "").split(".")[0],
        "id_like": values.get("ID_LIKE", "").split(),
        "pretty_name": values.get("PRETTY_NAME", values.get("NAME", "Linux")),
    }


# A package name each manager's query takes as a plain name. Anything else (an architecture,
# a version, a glob, a group) is left to the package module: it is reported missing, so the
# install task runs and decides.
_PLAIN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+._-]*$")


def wanted_packages(packages: dict, os_release: dict) -> list[str]:
    """The host's packages from a {key: [names]} map: those of its os-release ID, of
    ID-<major release> and of "*" (every distribution), in that order and without repeats."""
    keys = [os_release["id"]] + (["%s-%s" % (os_release["id"], os_release["major"])] if os_release["major"] else [])
    keys.append("*")
    result: list[str] = []
    for key in keys:
        result.extend(name for name in packages.get(key) or [] if name not in result)
    return result


def package_manager(os_release: dict) -> str | None:
    """How installed packages are read on this distribution: dpkg (Debian and its derivatives),
    pacman (Arch and its derivatives), or None."""
    family = [os_release["id"]] + os_release["id_like"]
    if "debian" in family:
        return "dpkg"
    if "arch" in family:
        return "pacman"
    return None


def parse_dpkg_status(text: str) -> set[str]:
    """The installed packages in `dpkg-query -W -f '${Package}\\t${db:Status-Abbrev}\\n'` output:
    the status's second letter is the package's state, i for installed (dpkg-query(1))."""
    found = set()
    for line in text.splitlines():
        name, _tab, status = line.partition("\t")
        if len(status) >= 2 and status[1] == "i":
            found.add(name)
    return found


def missing_packages(manager: str | None, names: list[str], run) -> list[str]:
    """The names of `names` that are not installed, in their order. run(argv) -> (rc, stdout,
    stderr). dpkg: `dpkg-query -W`, which names the packages it finds (rc 1 when one is unknown);
    pacman: `pacman -T` (--deptest), which prints each name no installed package satisfies (by
    name or by provides) and exits 127 (pacman's src/pacman/deptest.c). Without a manager, or
    when the query fails otherwise, every name counts as missing: the install task decides."""
    plain = [name for name in names if _PLAIN_PACKAGE.match(name)]
    if manager is None or not plain:
        return list(names)
    if manager == "dpkg":
        rc, out, _err = run(["dpkg-query", "-W", "-f", "${Package}\t${db:Status-Abbrev}\n", "--", *plain])
        if rc not in (0, 1):
            return list(names)
        installed = parse_dpkg_status(out)
        return [name for name in names if name not in installed]
    rc, out, _err = run(["pacman", "-T", "--", *plain])
    if rc not in (0, 127):
        return list(names)
    unsatisfied = set(out.split())
    return [name for name in names if name not in plain or name in unsatisfied]


def kvm_device(path: str = "/dev/kvm") -> dict:
    """Say whether the KVM device exists and can really be opened, and who may use it.

    Opening it is the only honest test: nested setups expose a working /dev/kvm without the
    vmx/svm CPU flags, and a node that exists can still be unusable.
    """
    result = {"path": path, "present": os.path.exists(path), "openable": False,
              "error": "", "mode": "", "uid": None, "gid": None}
    if not result["present"]:
        result["error"] = "%s does not exist" % path
        return result
    st = os.stat(path)
    result.update(mode="%04o" % (st.st_mode & 0o7777), uid=st.st_uid, gid=st.st_gid)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        result["error"] = "cannot open %s: %s" % (path, exc.strerror)
    else:
        os.close(fd)
        result["openable"] = True
    return result


def parse_cpuinfo(text: str) -> dict:
    """Vendor and the virtualisation-related flags of the first CPU in /proc/cpuinfo."""
    vendor = ""
    flags: list[str] = []
    for line in text.splitlines():
        key, _sep, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = value.split()
        if vendor and flags:
            break
    virt = [f for f in ("vmx", "svm") if f in flags]
    return {
        "vendor": vendor,
        "virtualization_flags": virt,
        "running_under_hypervisor": "hypervisor" in flags,
        "kvm_module": KVM_MODULE_BY_VENDOR.get(vendor, ""),
    }


def iommu_state(iommu_groups_dir: str, cmdline: str) -> dict:
    """IOMMU groups the kernel created, and the IOMMU options on its command line."""
    try:
        groups = len(os.listdir(iommu_groups_dir))
    except OSError:
        groups = 0
    options = [w for w in cmdline.split() if re.match(r"^(intel_iommu|amd_iommu|iommu)=", w)]
    return {"enabled": groups > 0, "groups": groups, "cmdline_options": options}


def kernel_module_state(names: list[str], sys_module_dir: str, modules_dir: str) -> dict:
    """For each kernel module name: loaded (or built in and initialised) and available.

    `available` means the running kernel can load it: it is listed in modules.dep or
    modules.builtin of /lib/modules/$(uname -r). Containers have no such directory, so nothing
    there is available and nothing is loaded by the role.
    """
    known: set[str] = set()
    for index in ("modules.dep", "modules.builtin"):
        try:
            with open(os.path.join(modules_dir, index), encoding="utf-8") as f:
                for line in f:
                    path = line.split(":", 1)[0].strip()
                    name = os.path.basename(path).split(".ko", 1)[0]
                    known.add(name.replace("-", "_"))
        except OSError:
            continue
    state = {}
    for name in names:
        canonical = name.replace("-", "_")
        loaded = os.path.isdir(os.path.join(sys_module_dir, canonical))
        state[name] = {"loaded": loaded, "available": loaded or canonical in known}
    return state


# A `key = value` line of a libvirt-style config file, commented out or not: the lines that
# ansible.builtin.lineinfile's regexp '^\s*#?\s*<key>\s*=' finds (the host role's qemu.conf task).
ASSIGNMENT = re.compile(r"^\s*#?\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")
FILE_READ_LIMIT = 1 << 20  # bytes read of a file for its lines and checksum


def file_state(path: str) -> dict:
    """A file as the host role compares it: whether it exists, owner, group, mode, the SHA-1 of its
    content (what ansible.builtin.copy compares) and, per key, the last `key =` line, which
    ansible.builtin.lineinfile would rewrite. A file over FILE_READ_LIMIT has `sha1` and `lines`
    null (they then never match, so the role's tasks run and decide)."""
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            data = f.read(FILE_READ_LIMIT + 1)
    except FileNotFoundError:
        return {"exists": False, "owner": None, "group": None, "mode": None, "sha1": None, "lines": {}}
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    found = {"exists": True, "owner": owner, "group": group, "mode": "%04o" % stat.S_IMODE(st.st_mode),
             "sha1": None, "lines": None}
    if len(data) <= FILE_READ_LIMIT:
        found["sha1"] = hashlib.sha1(data).hexdigest()
        found["lines"] = {}
        # Split on newlines only: a line ending in \r is not the line lineinfile would write.
        for line in data.decode("utf-8", errors="replace").split("\n"):
            match = ASSIGNMENT.match(line)
            if match:
                found["lines"][match.group(1)] = line
    return found


def parse_systemctl_show(text: str) -> dict:
    """Parse `systemctl show -p Id,LoadState,ActiveState,UnitFileState U1 U2 ...` output.

    systemctl prints one block per unit, in the order asked, separated by blank lines.
    """
    units = {}
    for block in re.split(r"\n\s*\n", text.strip()):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" not in fields:
            continue
        units[fields["Id"]] = {
            "load_state": fields.get("LoadState", ""),
            "active_state": fields.get("ActiveState", ""),
            "unit_file_state": fields.get("UnitFileState", ""),
        }
    return units


def user_state(names: list[str], accounts: dict[str, dict], members: dict[str, list[str]]) -> dict:
    """For each user: whether it exists, which groups list it as a supplementary member, its home,
    the default URI of its libvirt clients (None when its libvirt.conf sets none) and why that
    config must not be written for it (None when it may).

    `accounts` maps the user names that resolve to {home, uri_default, config_problem}, `members`
    each group to its member names (from NSS, so directory users count too).
    """
    return {
        name: {
            "exists": name in accounts,
            "groups": sorted(g for g, users in members.items() if name in users),
            "home": accounts.get(name, {}).get("home"),
            "uri_default": accounts.get(name, {}).get("uri_default"),
            "config_problem": accounts.get(name, {}).get("config_problem"),
        }
        for name in names
    }


CLIENT_CONFIG = (".config", ".config/libvirt", ".config/libvirt/libvirt.conf")


def _path_problem(path: str, is_dir: bool, uid: int | None) -> str | None:
    """Why `path`, which exists (lstat), is not a real directory (or regular file) owned by
    `uid` (any owner when None)."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "%s is a symbolic link" % path
    if is_dir != stat.S_ISDIR(st.st_mode) or not (is_dir or stat.S_ISREG(st.st_mode)):
        return "%s is not a %s" % (path, "directory" if is_dir else "regular file")
    if uid is not None and st.st_uid != uid:
        return "%s belongs to uid %d, not to the user (uid %d)" % (path, st.st_uid, uid)
    if not is_dir and st.st_nlink != 1:
        return "%s has other hard links" % path
    return None


def config_problem(home: str, uid: int) -> str | None:
    """Why a user's libvirt client config (~/.config/libvirt/libvirt.conf) must not be written for
    them, or None. The home must be a real directory, and each part of the path that exists a
    real directory (the file: a regular file) of the user's own: never a symbolic link, which
    would send the write elsewhere."""
    if not os.path.lexists(home):
        return "the home directory %s does not exist" % home
    parts = [(home, True, None)] + [(os.path.join(home, rel), not rel.endswith(".conf"), uid) for rel in CLIENT_CONFIG]
    for path, is_dir, owner in parts:
        if not os.path.lexists(path):
            return None  # made by the role, as the user's
        try:
            problem = _path_problem(path, is_dir, owner)
        except OSError as exc:
            return "%s cannot be read: %s" % (path, exc.strerror)
        if problem:
            return problem
    return None


def parse_uri_default(text: str) -> str | None:
    """The uri_default of a libvirt client config (~/.config/libvirt/libvirt.conf), if set."""
    found = None
    for line in text.splitlines():
        match = re.match(r"""\s*uri_default\s*=\s*(["'])(.*)\1\s*(?:#.*)?$""", line)
        if match:
            found = match.group(2)
    return found


URI_LINE = re.compile(r"^\s*#?\s*uri_default\s*=")
SAFE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'\\]*$")


class ConfigRefused(Exception):
    """A part of the client config path is not the user's own real directory (or file)."""


def _open_dir(parent: int, name: str, owner: tuple[int, int], check: bool) -> int | None:
    """Open `name` under the directory fd `parent` without following a link, making it (0755,
    `owner`'s (uid, gid)) when missing. None in check mode for a directory that would be made."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        if check:
            return None
        os.mkdir(name, 0o755, dir_fd=parent)
        fd = os.open(name, flags, dir_fd=parent)  # a link swapped in since: ELOOP below
        os.fchown(fd, *owner)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ConfigRefused("%s is a symbolic link or not a directory" % name) from None
        raise
    st = os.fstat(fd)
    if st.st_uid != owner[0]:
        os.close(fd)
        raise ConfigRefused("%s belongs to uid %d, not to the user (uid %d)" % (name, st.st_uid, owner[0]))
    return fd


def _read_conf(parent: int, uid: int) -> str:
    """The user's libvirt.conf in the directory fd `parent` ("" when missing), read without
    following a link; refused when it is not a regular file of the user's own with one link."""
    try:
        conf = os.open("libvirt.conf", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigRefused("libvirt.conf is a symbolic link") from None
        raise
    with os.fdopen(conf, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            raise ConfigRefused("libvirt.conf is not a regular file of the user's own")
        if st.st_nlink != 1:  # its content may be another file's (a hard link)
            raise ConfigRefused("libvirt.conf has other hard links")
        return handle.read(1 << 20).decode("utf-8", "replace")


def _replace_conf(parent: int, text: str, owner: tuple[int, int]) -> None:
    """Write libvirt.conf in the directory fd `parent` as a new file renamed over the old one."""
    tmp = ".libvirt.conf.kvmlab-%d" % os.getpid()
    try:
        os.unlink(tmp, dir_fd=parent)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
    try:
        os.fchown(fd, *owner)
        os.fchmod(fd, 0o644)
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, "libvirt.conf", src_dir_fd=parent, dst_dir_fd=parent)


def set_client_uri(home: str, owner: tuple[int, int], uri: str, check: bool) -> tuple[str, str]:
    """Make the user's ~/.config/libvirt/libvirt.conf set uri_default = "uri", keeping its other
    lines; return (before, after). `owner` is the user's (uid, gid). Every part is opened through
    the descriptor of its parent, never following a link (O_NOFOLLOW), and checked to be the
    user's own after it is opened, so a link swapped in at any moment makes the write fail instead
    of landing elsewhere; the file is written as a new file beside the old one (O_EXCL) and renamed
    over it, never through the old one; a file with other hard links is refused (its content may
    be another file's). Raises ConfigRefused, naming the part."""
    if not SAFE_URI.match(uri):
        raise ValueError("%r is not a plain libvirt URI (no spaces, quotes or backslashes)" % uri)
    try:
        fds = [os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)]
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise ConfigRefused("the home %s is missing, a symbolic link or not a directory" % home) from None
        raise
    try:
        if os.fstat(fds[0]).st_uid not in (owner[0], 0):
            raise ConfigRefused("%s belongs to neither the user nor root" % home)
        for name in (".config", "libvirt"):
            fd = _open_dir(fds[-1], name, owner, check)
            if fd is None:  # check mode: it would be made
                break
            fds.append(fd)
        made = len(fds) == 3
        before = _read_conf(fds[-1], owner[0]) if made else ""
        lines = before.splitlines()
        matches = [i for i, line in enumerate(lines) if URI_LINE.match(line)]
        if matches:
            lines[matches[-1]] = 'uri_default = "%s"' % uri
        else:
            lines.append('uri_default = "%s"' % uri)
        after = "\n".join(lines) + "\n"
        if after != before and not check:
            _replace_conf(fds[-1], after, owner)
        return before, after
    finally:
        for fd in fds:
            os.close(fd)
