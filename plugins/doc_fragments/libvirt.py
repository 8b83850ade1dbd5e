# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection option and requirement of every module that talks to libvirt."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  uri:
    description: libvirt connection URI.
    type: str
    default: qemu:///system
requirements:
  - libvirt-python on the managed host (Debian python3-libvirt, Arch libvirt-python)
"""
