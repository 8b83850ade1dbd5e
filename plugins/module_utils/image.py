# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A disk's first content from a prebuilt image (a disk spec's `source`): the Python standard
library and Ansible's open_url only, nothing to install but qemu-img (and 7z for 7z archives).

`source_errors(source, label)` checks a source spec (on the controller and again in the module);
`place(source, dest, capacity, volume_format)` fetches the image (an http(s) URL or a local file)
to a temporary file in the destination's directory, verifies its checksum as downloaded,
decompresses it (xz, gz, bz2 by the standard library; 7z by the `7z` binary), checks its format
with `qemu-img info`, grows it to the capacity with `qemu-img resize` and only then links it into
place. A destination that exists is never touched; every temporary file is removed on every
failure. No shell anywhere: paths and URLs go verbatim as arguments.

Bounded (a misbehaving server or archive cannot fill the host's VM filesystem, which would pause
every guest whose sparse disk needs to grow, nor hold a run forever):
- bytes: nothing written (download or decompressed image) grows past `byte_limit(capacity)`, the
  disk's size plus a margin for qcow2 metadata; a known size (Content-Length, a local file's
  size, a 7z member's stated size) above it is refused before anything is written; and the
  target filesystem keeps `reserve()` free: checked before the download against its known size
  and again as it is written;
- time: `timeout` bounds each wait for the server, `deadline` the whole preparation (download,
  decompression, qemu-img and 7z);
- crashes: the temporary files are `.<name>.<random>.<kind>.part` beside the disk, each held
  under an flock(2) while its run lives; `stale_parts()` finds those of a killed run (no lock
  held) and the next run removes them;
- secrets: a URL's user and password never appear in a message or result (`redact()`).
"""

from __future__ import annotations

import bz2
import errno
import fcntl
import gzip
import hashlib
import http.client
import json
import lzma
import os
import re
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse

# Ansible's own HTTP client (shipped with every module, no dependency to install): urllib with
# certificate checks, proxies from the environment and redirects.
from ansible.module_utils.urls import ConnectionError as UrlConnectionError
from ansible.module_utils.urls import open_url
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.guest_schema import SUBFIELDS

CHUNK = 1024 * 1024
ALGORITHMS = {"sha256": 64, "sha512": 128}  # accepted checksum algorithms -> hex digits
# A source's fields, defaults and allowed values: those of a guest disk's source in the guest role's
# argument spec (module_utils/guest_schema.py), which libvirt_volume's volumes[].source repeats.
SOURCE = SUBFIELDS["disks.source"]
SOURCE_KEYS = tuple(SOURCE)
FORMATS = SOURCE["format"]["choices"]
COMPRESSIONS = SOURCE["compression"]["choices"]
DEFAULT_TIMEOUT = SOURCE["timeout"]["default"]
DEFAULT_DEADLINE = SOURCE["deadline"]["default"]
MIB = 1024 * 1024
GIB = 1024 * MIB
MAX_REDIRECTS = 10
# Free space is checked again after each this many bytes written.
SPACE_CHECK_EVERY = 64 * MIB
# A temporary file of place(): .<disk name>.<mkstemp's 8 characters>.<kind>.part
PART_KINDS = ("download", "image")
SUFFIXES = ((".xz", "xz"), (".gz", "gz"), (".bz2", "bz2"), (".7z", "7z"))
OPENERS = {"xz": lzma.open, "gz": gzip.open, "bz2": bz2.open}
# Inside a 7z archive, the disk image is the one file with one of these suffixes.
IMAGE_SUFFIXES = (".qcow2", ".qcow", ".img", ".raw")
SEVEN_ZIP_PACKAGES = "Debian 13 and Arch: 7zip; Debian 12: p7zip-full"
CHECKSUM_RE = re.compile(r"([a-z0-9]+):([0-9A-Fa-f]+)")


class ImageError(Exception):
    """A source that cannot become the volume; the message says why."""


def source_errors(source, label: str, volume_format: str | None = None) -> list[str]:
    """Why `source` (a disk's or volume's source spec) is unusable, each naming its field under `label`."""
    if not isinstance(source, dict):
        return ["%s: must be a mapping with url or path, and checksum, got %r." % (label, source)]
    errors = ["%s.%s: unknown field; known fields are %s." % (label, key, ", ".join(SOURCE_KEYS))
              for key in sorted(set(source) - set(SOURCE_KEYS), key=str) if source[key] is not None]
    url, path = source.get("url"), source.get("path")
    if (url is None) == (path is None):
        errors.append("%s: give either url (http or https) or path (a local file), %s." % (
            label, "not both" if url is not None else "one of them"))
    elif url is not None:
        scheme = urllib.parse.urlsplit(url).scheme.lower() if isinstance(url, str) else ""
        if scheme not in ("http", "https") or not urllib.parse.urlsplit(url).netloc:
            errors.append("%s.url: %r is not an http:// or https:// URL; give one, or a local file as path."
                          % (label, redact(url) if isinstance(url, str) else url))
    elif not isinstance(path, str) or not path.startswith("/"):
        errors.append("%s.path: %r is not an absolute path; give the image file such as /mnt/vm/iso/arch.qcow2."
                      % (label, path))
    errors += checksum_errors(source.get("checksum"), label + ".checksum")
    fmt = source.get("format")
    if fmt is not None and fmt not in FORMATS:
        errors.append("%s.format: %r is not one of %s." % (label, fmt, ", ".join(FORMATS)))
    elif fmt is not None and volume_format is not None and fmt != volume_format:
        errors.append("%s.format: the image is %s but the disk's format is %s; give them the same format."
                      % (label, fmt, volume_format))
    compression = source.get("compression")
    if compression is not None and compression not in COMPRESSIONS:
        errors.append("%s.compression: %r is not one of %s." % (label, compression, ", ".join(COMPRESSIONS)))
    for field in ("timeout", "deadline"):
        seconds = source.get(field)
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0):
            errors.append("%s.%s: must be a number of seconds above 0, got %r." % (label, field, seconds))
    return errors


def checksum_errors(checksum, label: str) -> list[str]:
    match = CHECKSUM_RE.fullmatch(checksum) if isinstance(checksum, str) else None
    if match and ALGORITHMS.get(match.group(1)) == len(match.group(2)):
        return []
    return ["%s: %r is not a checksum of the file as published; give one as sha256:<64 hex digits> or "
            "sha512:<128 hex digits> (of the file downloaded, such as the .7z archive)." % (label, checksum)]


def compression_of(source: dict) -> str:
    """The source's compression: its `compression` field, else its URL's or path's suffix."""
    if source.get("compression"):
        return source["compression"]
    if source.get("url"):
        name = urllib.parse.unquote(urllib.parse.urlsplit(source["url"]).path)
    else:
        name = source.get("path") or ""
    for suffix, compression in SUFFIXES:
        if name.lower().endswith(suffix):
            return compression
    return "none"


def request_url(url: str) -> str:
    """`url` as an HTTP request can carry it: the host in IDNA, spaces, quotes and non-ASCII
    letters percent-encoded (UTF-8); existing %XX escapes are kept."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        host = host.encode("idna").decode("ascii")
    if ":" in host:
        host = "[%s]" % host
    netloc = host + (":%d" % parts.port if parts.port else "")
    if parts.username is not None:
        userinfo = urllib.parse.quote(parts.username, safe="%!$&'()*+,;=")
        if parts.password is not None:
            userinfo += ":" + urllib.parse.quote(parts.password, safe="%!$&'()*+,;=")
        netloc = userinfo + "@" + netloc
    safe = "%/:@!$&'()*+,;=~"
    return urllib.parse.urlunsplit((parts.scheme, netloc, urllib.parse.quote(parts.path, safe=safe),
                                    urllib.parse.quote(parts.query, safe=safe + "?"), ""))


def redact(url: str) -> str:
    """`url` without its user and password (as every message and result shows it)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit((parts.scheme, "***@" + parts.netloc.rpartition("@")[2], parts.path,
                                    parts.query, parts.fragment))


def secrets(source) -> list[str]:
    """The user and password of a source's URL, as they appear in it (for AnsibleModule.no_log_values)."""
    url = source.get("url") if isinstance(source, dict) else None
    if not isinstance(url, str):
        return []
    parts = urllib.parse.urlsplit(url)
    found = [parts.password, urllib.parse.unquote(parts.password or "")] if parts.password else []
    if parts.username:
        found += [parts.netloc.rpartition("@")[0]]
    return [value for value in found if value]


def byte_limit(capacity: int) -> int:
    """The most any file of a disk's preparation may hold: the disk's size, plus room for a fully
    allocated qcow2's metadata (an L2 entry per 64 KiB cluster and refcounts: under 1/4096)."""
    return capacity + capacity // 256 + 64 * MIB


def reserve(directory: str) -> int:
    """The free space a disk's preparation leaves on its filesystem for the other disks: 1 GiB,
    or a twentieth of a smaller filesystem."""
    st = os.statvfs(directory)
    return min(GIB, st.f_frsize * st.f_blocks // 20)


def free_space(directory: str) -> int:
    st = os.statvfs(directory)
    return st.f_frsize * st.f_bavail


class Budget:
    """The bounds of one preparation: bytes per file, the filesystem's reserve, the deadline."""

    def __init__(self, directory: str, capacity: int, deadline_seconds: int):
        self.directory = directory
        self.limit = byte_limit(capacity)
        self.reserve = reserve(directory)
        self.seconds = deadline_seconds
        self.deadline = time.monotonic() + deadline_seconds

    def left(self, what: str) -> float:
        """Seconds left before the deadline; raises when none is."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ImageError("%s did not finish within the source's deadline of %d seconds; nothing was kept. "
                             "Give a larger deadline, or a closer or faster source." % (what, self.seconds))
        return remaining

    def room(self, size: int, what: str) -> None:
        """Refuses `size` more bytes when they pass the limit or would eat into the reserve."""
        if size > self.limit:
            raise ImageError("%s is %d bytes or more, more than the disk's size allows (at most %d bytes); "
                             "nothing was kept. Give the right source, or a larger disk size."
                             % (what, size, self.limit))
        free = free_space(self.directory)
        if size > free - self.reserve:
            raise ImageError("%s needs %d bytes, but %s has %d bytes free and keeps %d of them for the other "
                             "disks; nothing was kept. Free some space there." % (
                                 what, size, self.directory, free, self.reserve))

    def copy(self, reader, writer, what: str, digest=None) -> int:
        """Copies `reader` to `writer` within the bounds; `what` names the stream in messages."""
        read = getattr(reader, "read1", reader.read)  # read1: one wait each, so a drip meets the deadline
        total, checked = 0, 0
        while True:
            self.left(what)
            chunk = read(CHUNK)
            if not chunk:
                return total
            total += len(chunk)
            if total > self.limit:
                self.room(total, what)
            if total - checked >= SPACE_CHECK_EVERY:
                self.room(SPACE_CHECK_EVERY, what)
                checked = total
            if digest is not None:
                digest.update(chunk)
            writer.write(chunk)


def _open_url(source: dict, budget: Budget):
    """The response for the source's URL, redirects followed by hand: at most MAX_REDIRECTS, to
    http or https only; the body as served (no Content-Encoding undone: the checksum is of the
    file as published)."""
    url = source["url"]
    timeout = source.get("timeout") or DEFAULT_TIMEOUT
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            return open_url(request_url(url), timeout=min(timeout, budget.left("downloading " + redact(url))),
                            follow_redirects="none", decompress=False, headers={"Accept-Encoding": "identity"})
        except urllib.error.HTTPError as exc:
            location = exc.headers.get("Location") if exc.code in (301, 302, 303, 307, 308) else None
            exc.close()
            if location is None:
                raise
            url = urllib.parse.urljoin(url, location)
            if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
                raise ImageError("cannot download %s: it redirects to %s, which is not http or https."
                                 % (redact(source["url"]), redact(url))) from None
    raise ImageError("cannot download %s: more than %d redirects." % (redact(source["url"]), MAX_REDIRECTS))


def _open_path(path: str, budget: Budget):
    """The local image file, opened without blocking on a FIFO; only a regular file is accepted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageError("cannot read %s: %s" % (path, exc.strerror or exc)) from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ImageError("%s is not a regular file (a device, FIFO or directory); give an image file." % path)
    budget.room(info.st_size, path)
    return os.fdopen(fd, "rb")


def fetch(source: dict, target, budget: Budget) -> str:
    """Copy the source (URL or local file) to the open file `target`, returning the hex digest of
    what was read with the checksum's algorithm."""
    algorithm = source["checksum"].split(":", 1)[0]
    digest = hashlib.new(algorithm)
    if source.get("url"):
        what = "the download of " + redact(source["url"])
        try:
            with _open_url(source, budget) as response:
                length = response.headers.get("Content-Length")
                if length and length.isdigit():
                    budget.room(int(length), what)
                got = budget.copy(response, target, what, digest)
                if length and length.isdigit() and got != int(length):
                    raise OSError("the download ended after %d of %s bytes" % (got, length))
        except (OSError, ValueError, http.client.HTTPException, UrlConnectionError) as exc:  # URLError: OSError
            raise ImageError("cannot download %s: %s" % (redact(source["url"]), scrub(exc, source))) from None
    else:
        with _open_path(source["path"], budget) as reader:
            try:
                budget.copy(reader, target, source["path"], digest)
            except OSError as exc:
                raise ImageError("cannot read %s: %s" % (source["path"], exc)) from exc
    target.flush()
    os.fsync(target.fileno())
    return digest.hexdigest()


def scrub(exc: Exception, source: dict) -> str:
    """An exception's message without the source's secrets (urllib can name the URL it tried)."""
    text = str(exc)
    for secret in secrets(source):
        text = text.replace(secret, "***")
    return text


def _missing(argv: list[str], what: str, exc: Exception) -> ImageError:
    hint = " (package %s)" % SEVEN_ZIP_PACKAGES if argv[0] == "7z" else " (package qemu-utils, Arch: qemu-img)"
    return ImageError("%s: %s is not installed%s." % (what, argv[0], hint))


ENV = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")


def _run(argv: list[str], what: str, budget: Budget, **kw) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, env=ENV, check=False, timeout=budget.left(what), **kw)
    except FileNotFoundError as exc:
        raise _missing(argv, what, exc) from exc
    except subprocess.TimeoutExpired:
        budget.left(what)  # raises: the deadline passed
        raise
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip() if isinstance(done.stderr, bytes) else done.stderr
        raise ImageError("%s failed (exit %d): %s" % (what, done.returncode, err))
    return done


def archive_members(archive: str, budget: Budget) -> list[tuple[str, int]]:
    """The files (not directories) in a 7z archive, with their stated sizes, as 7z lists them."""
    out = _run(["7z", "l", "-slt", "-spd", "--", archive], "listing the 7z archive", budget,
               stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout.decode("utf-8", "surrogateescape")
    files, record, started = [], {}, False
    for line in [*out.splitlines(), ""]:
        if line.startswith("----------"):
            started = True
            continue
        if not started:
            continue
        if not line.strip():
            if "Path" in record and record.get("Folder") != "+" and not record.get("Attributes", "").startswith("D"):
                size = record.get("Size", "")
                files.append((record["Path"], int(size) if size.isdigit() else 0))
            record = {}
            continue
        key, sep, value = line.partition(" = ")
        if sep:
            record[key] = value
    return files


def _extract(packed: str, member: str, out, budget: Budget) -> None:
    """7z's output of `member`, copied within the bounds; 7z is killed when a bound is passed."""
    argv = ["7z", "e", "-so", "-spd", "--", packed, member]
    what = "extracting %r from the 7z archive" % member
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=ENV)
    except FileNotFoundError as exc:
        raise _missing(argv, what, exc) from exc
    try:
        budget.copy(proc.stdout, out, what)
        _out, err = proc.communicate(timeout=budget.left(what))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise ImageError("%s failed (exit %d): %s" % (what, proc.returncode, err.decode("utf-8", "replace").strip()))


def decompress(compression: str, packed: str, out, budget: Budget) -> None:
    """The decompressed download written to the open file `out`, within the bounds."""
    what = "the %s download, decompressed," % compression
    if compression in OPENERS:
        try:
            with OPENERS[compression](packed, "rb") as reader:
                budget.copy(reader, out, what)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise ImageError("cannot decompress the %s download: %s" % (compression, exc)) from exc
        return
    members = archive_members(packed, budget)
    images = [(m, size) for m, size in members if m.lower().endswith(IMAGE_SUFFIXES)]
    if len(images) != 1:
        raise ImageError("the 7z archive must hold exactly one disk image (%s), it holds %s."
                         % (", ".join(IMAGE_SUFFIXES), ", ".join(repr(member[0]) for member in members) or "no file"))
    member, size = images[0]
    budget.room(size, "%r in the 7z archive" % member)  # its stated size, before anything is written
    _extract(packed, member, out, budget)


def image_info(path: str, budget: Budget) -> dict:
    out = _run(["qemu-img", "info", "--output=json", path], "qemu-img info", budget,
               stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    return json.loads(out)


class Parts:
    """The temporary files of one preparation, each created exclusively beside the disk and held
    under an exclusive flock(2) until it is removed, so that stale_parts() of another run never
    takes it for a killed run's."""

    def __init__(self, directory: str, name: str):
        self.directory, self.name = directory, name
        self.files: list[tuple[str, object]] = []

    def new(self, kind: str):
        """A new, empty temporary file of `kind`, open for writing."""
        fd, path = tempfile.mkstemp(prefix=".%s." % self.name, suffix=".%s.part" % kind, dir=self.directory)
        handle = os.fdopen(fd, "wb+")
        self.files.append((path, handle))
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        return handle

    def drop(self, handle) -> None:
        for path, held in list(self.files):
            if held is handle:
                _unlink(path)
                handle.close()
                self.files.remove((path, held))

    def path(self, handle) -> str:
        return next(path for path, held in self.files if held is handle)

    def close(self) -> None:
        for path, handle in self.files:
            _unlink(path)
            handle.close()
        self.files = []


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _is_part(name: str, entry: str) -> bool:
    prefix = "." + name + "."
    if not entry.startswith(prefix):
        return False
    middle, dot, kind = entry[len(prefix):].rpartition(".part")[0].rpartition(".")
    return bool(dot) and kind in PART_KINDS and len(middle) == 8 and entry.endswith(".part")


def stale_parts(directory: str, name: str, remove: bool) -> list[str]:
    """The temporary files a killed run left for the disk `name` in `directory` (named as
    Parts names them, no run holding their lock): removed unless `remove` is false (check mode)."""
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for entry in sorted(entries):
        if not _is_part(name, entry):
            continue
        path = os.path.join(directory, entry)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # gone meanwhile, or a link: not ours
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live run holds it
            found.append(path)
            if remove:
                _unlink(path)
        finally:
            os.close(fd)
    return found


def _verified(source: dict, parts: Parts, budget: Budget) -> tuple[object, str, str]:
    """The source fetched and checked against its checksum, then decompressed: (image, checksum, compression)."""
    downloaded = parts.new("download")
    actual = fetch(source, downloaded, budget)
    algorithm, expected = source["checksum"].split(":", 1)
    if actual != expected.lower():
        raise ImageError("checksum mismatch for %s: expected %s:%s, got %s:%s; nothing was kept."
                         % (describe(source), algorithm, expected.lower(), algorithm, actual))
    compression = compression_of(source)
    if compression == "none":
        return downloaded, "%s:%s" % (algorithm, actual), compression
    image = parts.new("image")
    decompress(compression, parts.path(downloaded), image, budget)
    image.flush()
    parts.drop(downloaded)  # the archive's space back before the resize
    return image, "%s:%s" % (algorithm, actual), compression


def _checked(image: str, fmt: str, compression: str, capacity: int, budget: Budget) -> dict:
    """qemu-img's word on the image: its format must be `fmt`, it must stand alone, be unencrypted
    and not be larger than `capacity`."""
    info = image_info(image, budget)
    found = info.get("format")
    if found != fmt:
        raise ImageError("the image is %s according to qemu-img, not %s (compression %s); give the format "
                         "(and compression) the source really has." % (found, fmt, compression))
    data = (info.get("format-specific") or {}).get("data") or {}
    if info.get("backing-filename") or data.get("data-file"):
        raise ImageError("the image refers to another file (a backing or data file); a disk's source must "
                         "stand alone.")
    if info.get("encrypted") or data.get("encrypt"):
        raise ImageError("the image is encrypted; libvirt would need its secret to open it. Give an unencrypted "
                         "image (qemu-img convert it first).")
    size = int(info.get("virtual-size") or 0)
    if size > capacity:
        raise ImageError("the image's virtual size is %d bytes, larger than the disk's size of %d bytes; a "
                         "disk is never shrunk: give a size of at least %d bytes." % (size, capacity, size))
    return info


def _link(image: str, dest: str) -> None:
    try:
        os.link(image, dest)  # fails rather than replace a file that appeared meanwhile
    except FileExistsError as exc:
        raise ImageError("%s appeared while the image was prepared; it is left as it is." % dest) from exc
    except OSError:  # a filesystem without hard links
        if os.path.lexists(dest):
            raise ImageError("%s appeared while the image was prepared; it is left as it is." % dest) from None
        os.rename(image, dest)


def place(source: dict, dest: str, capacity: int, volume_format: str) -> dict:
    """Make `dest` from `source`, grown to `capacity` bytes; raises ImageError and leaves nothing
    behind when anything is wrong (a killed run's files are removed by the next: stale_parts).
    `dest` must not exist (it is never overwritten).

    Returns {path, checksum, compression, format, virtual_size} (virtual_size before the resize).
    """
    fmt = source.get("format") or volume_format
    if os.path.lexists(dest):
        raise ImageError("%s exists already; an existing disk is never replaced." % dest)
    directory, name = os.path.split(dest)
    budget = Budget(directory, capacity, source.get("deadline") or DEFAULT_DEADLINE)
    parts = Parts(directory, name)
    try:
        image, checksum, compression = _verified(source, parts, budget)
        path = parts.path(image)
        info = _checked(path, fmt, compression, capacity, budget)
        size = int(info.get("virtual-size") or 0)
        if size < capacity:
            _run(["qemu-img", "resize", "-f", fmt, path, str(capacity)], "qemu-img resize", budget,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.fsync(image.fileno())
        budget.left("preparing the image")
        _link(path, dest)
        return {"path": dest, "checksum": checksum, "compression": compression, "format": info.get("format"),
                "virtual_size": size}
    except subprocess.TimeoutExpired as exc:
        raise ImageError("%s did not finish within the source's deadline of %d seconds; nothing was kept."
                         % (exc.cmd[0], budget.seconds)) from None
    finally:
        parts.close()


def describe(source: dict) -> str:
    """The source as a diff or message shows it (a URL without its user and password)."""
    return redact(source["url"]) if source.get("url") else source.get("path") or ""
