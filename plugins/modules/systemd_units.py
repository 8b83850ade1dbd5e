#!/usr/bin/python
# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: systemd_units
short_description: Install systemd unit files and keep units enabled and started, in one call
version_added: 0.1.0
description:
  - Writes each unit file whose content differs (atomically, root-owned, mode 0644), reloads
    systemd once when any file changed, then enables and starts the units in O(start) that are
    not enabled or not active - with one C(systemctl show) to read them all.
  - A unit is never restarted or stopped. A changed file applies when the unit next starts; for
    the swtpm units of the C(kvmlab.hypervisor.guest) role that is the guest's next boot after a
    host reboot or a restart of the socket, so a running guest keeps its TPM.
  - Unit files it no longer lists are left alone.
  - The C(kvmlab.hypervisor.guest) role installs the swtpm units of all its external TPMs with
    one call of this module; the units' text is built on the controller with each guest.
author:
  - kvmlab developers (@kvmlab)
options:
  units:
    description: The unit files.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The unit's file name, such as C(kvmlab-swtpm-win11.socket); no C(/).
        type: str
        required: true
      content:
        description: The whole file.
        type: str
        required: true
  start:
    description: Units to keep enabled and started (for example the sockets among O(units)).
    type: list
    elements: str
    default: []
  directory:
    description: Where the unit files go.
    type: path
    default: /etc/systemd/system
attributes:
  check_mode:
    support: full
    description: Reports which files it would write and which units it would enable or start.
  diff_mode:
    support: full
    description: Shows each changed file, before and after.
"""

EXAMPLES = r"""
- name: The swtpm units of all guests with an external TPM
  kvmlab.hypervisor.systemd_units:
    units: "{{ __site.guests | map(attribute='units') | flatten }}"
    start: "{{ __site.guests | map(attribute='units') | flatten | map(attribute='name')
               | select('match', '.*[.]socket$') }}"
"""

RETURN = r"""
written:
  description: The unit files written (or that would be written).
  returned: always
  type: list
  elements: str
  sample: [/etc/systemd/system/kvmlab-swtpm-win11.socket]
enabled:
  description: The units enabled.
  returned: always
  type: list
  elements: str
started:
  description: The units started.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.files import write_file


def read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def unit_states(module, names: list[str]) -> dict:
    """{unit: (UnitFileState, ActiveState)} with one systemctl call."""
    if not names:
        return {}
    rc, out, err = module.run_command(
        ["systemctl", "show", "--property=Id,UnitFileState,ActiveState", "--", *names])
    if rc != 0:
        module.fail_json(msg="systemctl show failed: %s" % (err or out).strip())
    states, block = {}, {}
    for line in [*out.splitlines(), ""]:
        if not line.strip():
            if block:
                states[block.get("Id", "")] = (block.get("UnitFileState", ""), block.get("ActiveState", ""))
            block = {}
            continue
        key, _sep, value = line.partition("=")
        block[key] = value
    return states


def systemctl(module, *args: str) -> None:
    rc, out, err = module.run_command(["systemctl", *args])
    if rc != 0:
        module.fail_json(msg="systemctl %s failed: %s" % (" ".join(args), (err or out).strip()))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "units": {"type": "list", "elements": "dict", "required": True, "options": {
                "name": {"type": "str", "required": True},
                "content": {"type": "str", "required": True},
            }},
            "start": {"type": "list", "elements": "str", "default": []},
            "directory": {"type": "path", "default": "/etc/systemd/system"},
        },
        supports_check_mode=True,
    )
    units, directory = module.params["units"], module.params["directory"]
    for unit in units:
        if "/" in unit["name"] or unit["name"] in ("", ".", ".."):
            module.fail_json(msg="units: %r is not a unit file name." % unit["name"])
    written, diff = [], []
    for unit in units:
        path = os.path.join(directory, unit["name"])
        before = read(path)
        if before == unit["content"]:
            continue
        written.append(path)
        diff.append({"before_header": path, "before": before or "", "after_header": path, "after": unit["content"]})
        if not module.check_mode:
            write_file(module, path, unit["content"], 0o644)
    if written and not module.check_mode:
        systemctl(module, "daemon-reload")
    enabled, started = [], []
    states = unit_states(module, module.params["start"])
    for name in module.params["start"]:
        file_state, active = states.get(name, ("", ""))
        if file_state != "enabled":
            enabled.append(name)
        if active != "active":
            started.append(name)
    if not module.check_mode:
        if enabled:
            systemctl(module, "enable", "--", *enabled)
        if started:
            systemctl(module, "start", "--", *started)
    module.exit_json(changed=bool(written or enabled or started), written=written, enabled=enabled,
                     started=started, diff=diff)


if __name__ == "__main__":
    main()
