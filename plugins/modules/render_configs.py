#!/usr/bin/python
"""Documentation of the action plugin mcfleet.fleet.render_configs (plugins/action/render_configs.py).

The work is done on the controller by the action plugin; this file has no code.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: render_configs
short_description: Write every router's and proxy's configuration files on the controller, in one step
description:
  - Renders the configuration of every router and proxy in O(hosts) from the topology model
    O(model) and writes it under O(dest), one directory per host. It runs once, on the
    controller, and contacts no host; use it with C(run_once).
  - An C(mcrouter) host gets C(DEST/<host>/config.json). A C(memcached_proxy) host gets
    C(DEST/<host>/proxy.lua) and C(DEST/<host>/routes.lua), the static route library the
    C(mcfleet.fleet.memcached_proxy) role ships in its C(files) directory.
  - Every input is checked, and every file rendered in memory, before anything is written.
    A model that is not a topology model, a host that is not a router or proxy in it, or a
    file or directory in the way fails the task, naming the field and the value, with
    nothing written.
  - Only files whose content differs are written, each atomically (a temporary file in the
    same directory, then a rename), with mode C(0644); missing directories are created with
    mode C(0755). C(changed) is true only when a file was (or, in check mode, would be)
    written.
  - Nothing is ever removed. A file the plugin does not write, for example a C(config.json)
    left from before a host changed engine, stays in place.
version_added: "0.2.0"
author:
  - mcfleet maintainers (@mcfleet)
options:
  model:
    description:
      - The topology model, the C(mcfleet) fact that C(playbooks/topology.yml) sets.
    type: dict
    required: true
  dest:
    description:
      - Directory on the controller to render into. It and its parents are created if
        missing. A relative path is relative to the directory C(ansible-playbook) runs in.
    type: path
    required: true
  hosts:
    description:
      - The routers and proxies to render, by inventory name. Each must be in O(model).
      - Defaults to every router and proxy in O(model). Pass C(ansible_play_hosts_all) to
        render only the hosts the play targets (so C(--limit) is honoured).
    type: list
    elements: str
extends_documentation_fragment:
  - action_common_attributes
  - action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Reports which files would change, and their diffs, and writes nothing.
  diff_mode:
    support: full
    details: One diff per changed file.
  platform:
    support: full
    platforms: posix
    details: Writes on the controller only.
notes:
  - The file names are the renderers' constants C(render_mcrouter.CONFIG_NAME) and
    C(render_memcached_proxy.CONFIG_NAME)/C(LIBRARY_NAME), the names the roles install.
seealso:
  - module: ansible.builtin.copy
"""

EXAMPLES = r"""
- name: Render the routers the play targets into the review directory
  mcfleet.fleet.render_configs:
    model: "{{ mcfleet }}"
    dest: "{{ render_dir }}"
    hosts: "{{ ansible_play_hosts_all }}"
  run_once: true

- name: Render every router and proxy in the model
  mcfleet.fleet.render_configs:
    model: "{{ mcfleet }}"
    dest: /srv/review/eqiad
"""

RETURN = r"""
dest:
  description: The absolute path of the directory rendered into.
  returned: success
  type: str
  sample: /srv/review/eqiad
hosts:
  description: The routers and proxies rendered, sorted.
  returned: success
  type: list
  elements: str
  sample: [mw1001.eqiad.wmnet, mwproxy1001.eqiad.wmnet]
written:
  description: Files whose content differed, written (or in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample: [/srv/review/eqiad/mw1001.eqiad.wmnet/config.json]
unchanged:
  description: How many files already had the rendered content and were left alone.
  returned: success
  type: int
  sample: 15
msg:
  description: A one-line summary.
  returned: success
  type: str
  sample: 1 of 16 files changed for 16 routers and proxies under /srv/review/eqiad
"""
