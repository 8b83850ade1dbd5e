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
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.client
import json
import lzma
import os
import re
import subprocess
import tempfile
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
                          % (label, url))
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
    timeout = source.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
        errors.append("%s.timeout: must be a number of seconds above 0, got %r." % (label, timeout))
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


def _copy(reader, writer, digest=None) -> int:
    total = 0
    while True:
        chunk = reader.read(CHUNK)
        if not chunk:
            return total
        total += len(chunk)
        if digest is not None:
            digest.update(chunk)
        writer.write(chunk)


def fetch(source: dict, target: str) -> str:
    """Copy the source (URL or local file) to `target`, returning the hex digest of what was read
    with the checksum's algorithm."""
    algorithm = source["checksum"].split(":", 1)[0]
    digest = hashlib.new(algorithm)
    with open(target, "wb") as out:
        if source.get("url"):
            timeout = source.get("timeout") or DEFAULT_TIMEOUT
            try:
                with open_url(request_url(source["url"]), timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    got = _copy(response, out, digest)
                    if length and length.isdigit() and got != int(length):
                        raise OSError("the download ended after %d of %s bytes" % (got, length))
            except (OSError, ValueError, http.client.HTTPException, UrlConnectionError) as exc:  # URLError: OSError
                raise ImageError("cannot download %s: %s" % (source["url"], exc)) from exc
        else:
            try:
                with open(source["path"], "rb") as reader:
                    _copy(reader, out, digest)
            except OSError as exc:
                raise ImageError("cannot read %s: %s" % (source["path"], exc)) from exc
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _run(argv: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, env=env, check=False, **kw)
    except FileNotFoundError as exc:
        hint = " (package %s)" % SEVEN_ZIP_PACKAGES if argv[0] == "7z" else " (package qemu-utils, Arch: qemu-img)"
        raise ImageError("%s: %s is not installed%s." % (what, argv[0], hint)) from exc
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip() if isinstance(done.stderr, bytes) else done.stderr
        raise ImageError("%s failed (exit %d): %s" % (what, done.returncode, err))
    return done


def archive_members(archive: str) -> list[str]:
    """The files (not directories) in a 7z archive, as 7z lists them."""
    out = _run(["7z", "l", "-slt", "-spd", "--", archive], "listing the 7z archive",
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
                files.append(record["Path"])
            record = {}
            continue
        key, sep, value = line.partition(" = ")
        if sep:
            record[key] = value
    return files


def decompress(compression: str, packed: str, target: str) -> None:
    if compression in OPENERS:
        try:
            with OPENERS[compression](packed, "rb") as reader, open(target, "wb") as out:
                _copy(reader, out)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise ImageError("cannot decompress the %s download: %s" % (compression, exc)) from exc
        return
    members = archive_members(packed)
    images = [m for m in members if m.lower().endswith(IMAGE_SUFFIXES)]
    if len(images) != 1:
        raise ImageError("the 7z archive must hold exactly one disk image (%s), it holds %s."
                         % (", ".join(IMAGE_SUFFIXES), ", ".join(repr(m) for m in members) or "no file"))
    with open(target, "wb") as out:
        _run(["7z", "e", "-so", "-spd", "--", packed, images[0]], "extracting %r from the 7z archive" % images[0],
             stdout=out, stderr=subprocess.PIPE)


def image_info(path: str) -> dict:
    out = _run(["qemu-img", "info", "--output=json", path], "qemu-img info",
               stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    return json.loads(out)


def _verified(source: dict, temp) -> tuple[str, str, str]:
    """The source fetched and checked against its checksum, then decompressed: (image, checksum, compression)."""
    downloaded = temp("download")
    actual = fetch(source, downloaded)
    algorithm, expected = source["checksum"].split(":", 1)
    if actual != expected.lower():
        raise ImageError("checksum mismatch for %s: expected %s:%s, got %s:%s; nothing was kept."
                         % (describe(source), algorithm, expected.lower(), algorithm, actual))
    compression = compression_of(source)
    if compression == "none":
        return downloaded, "%s:%s" % (algorithm, actual), compression
    image = temp("image")
    decompress(compression, downloaded, image)
    os.unlink(downloaded)  # the archive's space back before the resize
    return image, "%s:%s" % (algorithm, actual), compression


def _checked(image: str, fmt: str, compression: str, capacity: int) -> dict:
    """qemu-img's word on the image: its format must be `fmt`, it must stand alone and not be
    larger than `capacity`."""
    info = image_info(image)
    found = info.get("format")
    if found != fmt:
        raise ImageError("the image is %s according to qemu-img, not %s (compression %s); give the format "
                         "(and compression) the source really has." % (found, fmt, compression))
    if info.get("backing-filename") or (info.get("format-specific") or {}).get("data", {}).get("data-file"):
        raise ImageError("the image refers to another file (a backing or data file); a disk's source must "
                         "stand alone.")
    size = int(info.get("virtual-size") or 0)
    if size > capacity:
        raise ImageError("the image's virtual size is %d bytes, larger than the disk's size of %d bytes; a "
                         "disk is never shrunk: give a size of at least %d bytes." % (size, capacity, size))
    return info


def _link(image: str, dest: str) -> None:
    with open(image, "rb+") as handle:
        os.fsync(handle.fileno())
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
    behind when anything is wrong. `dest` must not exist (it is never overwritten).

    Returns {path, checksum, compression, format, virtual_size} (virtual_size before the resize).
    """
    fmt = source.get("format") or volume_format
    if os.path.lexists(dest):
        raise ImageError("%s exists already; an existing disk is never replaced." % dest)
    directory, name = os.path.split(dest)
    temps = []

    def temp(kind: str) -> str:
        fd, path = tempfile.mkstemp(prefix=".%s." % name, suffix=".%s.part" % kind, dir=directory)
        os.close(fd)
        temps.append(path)
        return path

    try:
        image, checksum, compression = _verified(source, temp)
        info = _checked(image, fmt, compression, capacity)
        size = int(info.get("virtual-size") or 0)
        if size < capacity:
            _run(["qemu-img", "resize", "-f", fmt, image, str(capacity)], "qemu-img resize",
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _link(image, dest)
        return {"path": dest, "checksum": checksum, "compression": compression, "format": info.get("format"),
                "virtual_size": size}
    finally:
        for path in temps:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def describe(source: dict) -> str:
    """The source as a diff or message shows it."""
    return source.get("url") or source.get("path") or ""
