"""Checksums of guest data on the test host, for the Molecule tests that must lose none of it."""

from __future__ import annotations

# SHA-256 of a file's content that skips its holes (the seed's disks are sparse: 40G of mostly
# nothing would take minutes to read); a hole reads as zeros, so equal files hash equal.
SPARSE_SHA256 = """
import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
end = os.lseek(fd, 0, os.SEEK_END)
digest, offset = hashlib.sha256(str(end).encode()), 0
while offset < end:
    try:
        data = os.lseek(fd, offset, os.SEEK_DATA)
    except OSError:
        break
    hole = os.lseek(fd, data, os.SEEK_HOLE)
    os.lseek(fd, data, os.SEEK_SET)
    digest.update(str(data).encode())
    for _ in range(0, hole - data, 1 << 20):
        digest.update(os.read(fd, min(1 << 20, hole - os.lseek(fd, 0, os.SEEK_CUR))))
    offset = hole
print(digest.hexdigest())
"""


def sums(host, *paths: str) -> dict:
    return {p: host.check_output("python3 -c '%s' %s" % (SPARSE_SHA256, p)) for p in paths}


def assert_kept(host, summary, before: dict) -> None:
    """The files hash as `before`; their bytes count as checked, and as lost if they differ."""
    after = sums(host, *before)
    for path, digest in before.items():
        size = int(host.check_output("stat -c %%s %s" % path))
        summary["guest data bytes checked"] += size
        if after[path] != digest:
            summary["guest data bytes lost"] += size
    assert after == before
