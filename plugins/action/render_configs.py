"""Action plugin mcfleet.fleet.render_configs: every router's config files in one controller step.

Its documentation is the module stub plugins/modules/render_configs.py
(`ansible-doc mcfleet.fleet.render_configs`). It runs once, on the controller, and never
contacts a host: the renderers in module_utils turn the topology model into text, and
this plugin writes DEST/<host>/<file> for every router and proxy asked for.

Everything is checked and rendered in memory before the first file is written, so bad
input fails with nothing written. Only files whose content differs are written, each
atomically (a temporary file in the same directory, then rename(2), which replaces the
old name in one step: https://man7.org/linux/man-pages/man2/rename.2.html). Nothing is
ever removed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.mcfleet.fleet.plugins.module_utils import render_mcrouter, render_memcached_proxy
from ansible_collections.mcfleet.fleet.plugins.module_utils.safe_files import replace_file

# This file is <collection>/plugins/action/render_configs.py; the memcached_proxy role
# ships the proxy's static route library in <collection>/roles/memcached_proxy/files.
COLLECTION_ROOT = Path(__file__).parent.parent.parent
ROUTES_LIBRARY = COLLECTION_ROOT / "roles" / "memcached_proxy" / "files" / render_memcached_proxy.LIBRARY_NAME
ENGINES = ("mcrouter", "memcached_proxy")
FILE_MODE = 0o644
DIRECTORY_MODE = 0o755

ARGUMENT_SPEC = {
    "model": {"type": "dict", "required": True},
    "dest": {"type": "path", "required": True},
    "hosts": {"type": "list", "elements": "str"},
}


class RenderError(Exception):
    """Bad input: the message names the field and the value."""


def rendered_files(model, hosts, library_path=None):
    """{Path(host)/name: text} of every file for `hosts` (None: every router in the model).

    Raises RenderError, naming the field and value, for a model or host it cannot render.
    """
    routers = model.get("routers") if isinstance(model, Mapping) else None
    if not isinstance(routers, Mapping):
        raise RenderError(
            "model: not a topology model (it has no 'routers' mapping); pass the mcfleet fact "
            "that playbooks/topology.yml sets"
        )
    if hosts is None:
        hosts = sorted(routers)
    unknown = [host for host in hosts if host not in routers]
    if unknown:
        raise RenderError(
            f"hosts: {', '.join(repr(host) for host in unknown)}: not a router or proxy in the topology model"
        )
    odd = [host for host in hosts if not host or host in (".", "..") or "/" in host or "\0" in host]
    if odd:
        raise RenderError(f"hosts: {', '.join(repr(host) for host in odd)}: cannot name a directory")
    library_path = library_path or ROUTES_LIBRARY
    files = {}
    library_text = None
    for host in dict.fromkeys(hosts):
        router = routers[host]
        engine = router.get("engine") if isinstance(router, Mapping) else None
        if engine not in ENGINES:
            raise RenderError(f"model.routers.{host}.engine: {engine!r} is not one of {', '.join(ENGINES)}")
        renderer = render_mcrouter if engine == "mcrouter" else render_memcached_proxy
        try:
            files[Path(host, renderer.CONFIG_NAME)] = renderer.render_config_text(model, host)
        except (KeyError, TypeError, ValueError) as error:
            raise RenderError(f"model.routers.{host}: cannot render its {engine} config: {error!r}") from None
        if engine == "mcrouter":
            continue
        if library_text is None:
            try:
                library_text = Path(library_path).read_text(encoding="utf-8")
            except OSError as error:
                raise RenderError(f"routes library {library_path}: cannot read it: {error}") from None
        files[Path(host, render_memcached_proxy.LIBRARY_NAME)] = library_text
    return files


def plan_changes(dest, files):
    """[(path, old text or None, new text)] of the files under `dest` whose content differs.

    Reads only; raises RenderError if `dest`, a host directory or a file is in the way.
    """
    dest = Path(dest)
    for directory in [dest, *sorted({dest / relative.parent for relative in files})]:
        if directory.exists() and not directory.is_dir():
            raise RenderError(f"dest: {str(directory)!r} exists and is not a directory")
    changes = []
    for relative, text in files.items():
        path = dest / relative
        new = text.encode("utf-8")
        try:
            old = path.read_bytes()
        except FileNotFoundError:
            old = None
        except OSError as error:
            raise RenderError(f"dest: cannot read {str(path)!r}: {error.strerror}") from None
        if old != new:
            changes.append((path, old, text))
    return changes


def write_atomically(path, text):
    """Replace `path` with `text` (mode 0644, missing directories 0755 whatever the umask):
    readers see the old file or the new one, never a mix, and a symlink planted at `path` is
    replaced, not written through."""
    replace_file(str(path), text, mode=FILE_MODE, directory_mode=DIRECTORY_MODE)


def apply_changes(changes):
    for path, _old, text in changes:
        write_atomically(path, text)


def diff_of(path, old, text):
    before = "" if old is None else old.decode("utf-8", errors="replace")
    return {
        "before": before,
        "after": text,
        "before_header": str(path) if old is not None else f"{path} (absent)",
        "after_header": str(path),
    }


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validated, arguments = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        dest = arguments["dest"]
        try:
            if not dest:
                raise RenderError("dest: '' is empty; name the directory to render into")
            dest = Path(os.path.abspath(dest))
            files = rendered_files(arguments["model"], arguments["hosts"])
            changes = plan_changes(dest, files)
        except RenderError as error:
            raise AnsibleActionFail(str(error)) from None
        if not self._task.check_mode:
            try:
                apply_changes(changes)
            except OSError as error:
                raise AnsibleActionFail(
                    f"dest: cannot write {error.filename!r}: {error.strerror}", result=result
                ) from None
        hosts = sorted({relative.parts[0] for relative in files})
        result.update(
            changed=bool(changes),
            dest=str(dest),
            hosts=hosts,
            written=[str(path) for path, _old, _text in changes],
            unchanged=len(files) - len(changes),
            msg=(
                f"{len(changes)} of {len(files)} files {'to change' if self._task.check_mode else 'changed'} "
                f"for {len(hosts)} routers and proxies under {dest}"
            ),
        )
        if self._task.diff:
            result["diff"] = [diff_of(path, old, text) for path, old, text in changes]
        return result
