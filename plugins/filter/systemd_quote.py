# Copyright (c) kvmlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: systemd_quote
short_description: Quote a value for a systemd unit file, by the rules of the setting it goes into
version_added: 0.1.0
author: kvmlab developers (@kvmlab)
description:
  - C(exec) - one argument of an C(ExecStart=) line - double-quoted, with C(\) and C(") escaped,
    C(%) as C(%%) (specifiers) and C($) as C($$) (environment variables).
  - C(list) - one word of a space-separated setting such as C(RequiresMountsFor=) - double-quoted,
    C(\) and C(") escaped, C(%) as C(%%).
  - C(whole) - a setting that takes the whole line, such as C(ListenStream=) - C(%) as C(%%), no
    quotes (systemd would keep them).
  - Fails on control characters (a newline would start a new setting) and, for C(whole), on
    leading or trailing white space, which systemd strips.
options:
  _input:
    description: The value.
    type: str
    required: true
  kind:
    description: Where the value goes.
    type: str
    choices: [exec, list, whole]
    default: exec
"""

EXAMPLES = r"""
- name: An ExecStart argument that keeps its spaces and quotes
  ansible.builtin.debug:
    msg: >-
      ExecStart=/usr/bin/swtpm socket --tpmstate {{ ('dir=' ~ path ~ ',mode=0600') | kvmlab.hypervisor.systemd_quote }}
"""

RETURN = r"""
_value:
  description: The quoted value.
  type: str
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.kvmlab.hypervisor.plugins.module_utils.systemd import quote


def systemd_quote(value, kind="exec"):
    try:
        return quote(value, kind)
    except ValueError as exc:
        raise AnsibleFilterError("systemd_quote: %s" % exc) from None


class FilterModule:
    def filters(self):
        return {"systemd_quote": systemd_quote}
