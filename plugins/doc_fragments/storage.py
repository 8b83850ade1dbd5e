# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The storage options shared by kvmlab.hypervisor.libvirt_pool, libvirt_volume and vm_storage, each
written once (their argument specs: POOL_OPTIONS, VOLUME_OPTIONS and DIRECTORY_OPTIONS in
module_utils/pool.py, volume.py and directories.py)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options: {}
"""

    POOLS = r"""
options:
  pools:
    description: The pools.
    type: list
    elements: dict
    suboptions:
      name:
        description: Pool name.
        type: str
        required: true
      path:
        description: Absolute path of the pool's directory. Required unless C(state=absent).
        type: path
      state:
        description: Whether the pool should exist.
        type: str
        choices: [present, absent]
        default: present
      active:
        description: Whether the pool should be running.
        type: bool
        default: true
      autostart:
        description: Whether libvirt starts the pool at boot.
        type: bool
        default: true
"""

    VOLUMES = r"""
options:
  volumes:
    description: The volumes.
    type: list
    elements: dict
    suboptions:
      pool:
        description: Name of the pool that holds the volume.
        type: str
        required: true
      name:
        description: File name of the volume in the pool.
        type: str
        required: true
      capacity:
        description: Virtual size, such as C(40G) or a number of bytes (binary units).
        type: str
        required: true
      format:
        description: Image format.
        type: str
        choices: [qcow2, raw]
        default: qcow2
      preallocation:
        description: C(metadata) preallocates qcow2 metadata (faster first writes); C(off) does not.
        type: str
        choices: [metadata, "off"]
        default: metadata
      backing_file:
        description: Absolute path of a backing image (qcow2 only).
        type: path
      backing_format:
        description: Format of O(volumes[].backing_file).
        type: str
        choices: [qcow2, raw]
        default: qcow2
      allow_grow:
        description: Grow an existing volume that is smaller than O(volumes[].capacity).
        type: bool
        default: false
      source:
        description:
          - The first content of a volume that does not exist yet - a prebuilt image, such as Arch's
            C(Arch-Linux-x86_64-basic.qcow2) or Kali's C(kali-linux-2025.2-qemu-amd64.7z). Give
            either O(volumes[].source.url) or O(volumes[].source.path), and always
            O(volumes[].source.checksum).
          - Needs C(qemu-img) on the host, and C(7z) for 7z archives (Debian 13 and Arch - C(7zip);
            Debian 12 - C(p7zip-full)).
          - Not with O(volumes[].backing_file). An image whose virtual size is above
            O(volumes[].capacity) is an error (never shrunk); a smaller one is grown.
        type: dict
        suboptions:
          url:
            description:
              - An C(http://) or C(https://) URL, taken verbatim (spaces and non-ASCII letters are
                percent-encoded for the request).
            type: str
          path:
            description: An absolute path of a local image file on the host (copied, never moved).
            type: str
          checksum:
            description:
              - The checksum of the file as downloaded (for an archive, of the archive, as the
                distributions publish it) - C(sha256:<64 hex digits>) or C(sha512:<128 hex digits>).
                Required.
              - Verified before the image becomes the volume; a mismatch is an error naming both sums.
            type: str
          format:
            description:
              - The image's format once decompressed, checked against C(qemu-img info); default
                O(volumes[].format), which it must equal.
            type: str
            choices: [qcow2, raw]
          compression:
            description:
              - How the download is compressed; default from the URL's or path's suffix (C(.xz),
                C(.gz), C(.bz2), C(.7z); anything else is C(none)).
              - A 7z archive must hold exactly one disk image (C(.qcow2), C(.qcow), C(.img) or C(.raw)).
            type: str
            choices: [none, xz, gz, bz2, 7z]
          timeout:
            description: Seconds the download may wait for the server at each step.
            type: int
            default: 60
          deadline:
            description:
              - Seconds the whole preparation may take - download, decompression and C(qemu-img)
                together. When it passes, the task fails naming the volume and nothing is kept.
            type: int
            default: 3600
"""

    DIRECTORIES = r"""
options:
  directories:
    description:
      - Directories to make when missing (with their missing parents, owned by root, mode 0755), and
        whose owner, group and mode are repaired where given. A field left out is never changed
        on an existing directory (a new one is owned by root with mode 0755).
      - A path that exists but is no directory, an unknown user or group and a mode that is not
        octal are errors, reported before any change.
    type: list
    elements: dict
    suboptions:
      path:
        description: Absolute path; a symbolic link to a directory is followed.
        type: path
        required: true
      owner:
        description: User name or numeric id.
        type: str
      group:
        description: Group name or numeric id.
        type: str
      mode:
        description: Octal mode, such as C('0750') (quote it; an unquoted YAML 0750 is taken as its value, 488).
        type: raw
"""
