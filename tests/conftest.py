"""Shared pytest set-up: the repository's plugins importable without Ansible running.

Modules import their helpers as `ansible.module_utils.<name>` (how Ansible ships them
to hosts); tests can use that same name, or `module_utils.<name>`.
"""

import sys
from pathlib import Path

import ansible.module_utils

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins"))
ansible.module_utils.__path__.append(str(REPO / "plugins" / "module_utils"))
