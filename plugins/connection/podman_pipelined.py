"""containers.podman.podman with pipelining: one `podman exec -i` per module instead of four.

The collection's plugin never pipelines, so every task costs a temporary directory, a
file copy, a chmod and a clean-up, each a `podman exec` (about 0.25 s apiece here). With
pipelining the module is fed to the container's python on stdin in a single exec, which
cut an idempotent lab converge several-fold. Everything else, file transfer included, is
the collection's own code.
"""

DOCUMENTATION = """
    name: podman_pipelined
    short_description: The containers.podman.podman connection, with pipelining
    description:
        - Runs commands in and copies files to an existing podman container, as
          containers.podman.podman does, and feeds modules to the container on stdin
          (pipelining) when pipelining is enabled.
    extends_documentation_fragment: []
    options:
      remote_addr:
        description: The container's name or ID.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: User (name or UID) that runs commands inside the container.
        ini:
          - section: defaults
            key: remote_user
        env:
          - name: ANSIBLE_REMOTE_USER
        vars:
          - name: ansible_user
      podman_extra_args:
        description: Extra arguments for the podman command line.
        default: ''
        vars:
          - name: ansible_podman_extra_args
        env:
          - name: ANSIBLE_PODMAN_EXTRA_ARGS
      podman_executable:
        description: The podman executable.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
      pipelining:
        description: Feed modules to the container on stdin instead of copying them in.
        type: boolean
        default: true
        ini:
          - section: connection
            key: pipelining
        env:
          - name: ANSIBLE_PIPELINING
        vars:
          - name: ansible_pipelining
"""

import shlex

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ConnectionBase, ensure_connect

try:
    from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection
except ImportError as error:
    # This module must import without containers.podman (ansible-doc, ansible-test); the
    # connection itself cannot work without it, so using it fails with the reason.
    _PODMAN_IMPORT_ERROR = error

    class PodmanConnection(ConnectionBase):
        """Stands in for containers.podman's connection: creating it fails with the reason."""

        def __init__(self, *args, **kwargs):
            raise AnsibleError(
                "mcfleet.fleet.podman_pipelined needs the containers.podman collection "
                "(part of the ansible package; or ansible-galaxy collection install containers.podman)"
            ) from _PODMAN_IMPORT_ERROR

        def close(self):
            """Never reached: __init__ refuses."""


class Connection(PodmanConnection):
    transport = "podman_pipelined"
    has_pipelining = True

    def _connect(self):
        # The collection mounts the container's filesystem on every connect; only file
        # transfers need it, so mount on the first transfer instead.
        self._connected = True
        return self

    def _mount_once(self):
        if self._mount_point is None and not getattr(self, "_mount_tried", False):
            self._mount_tried = True
            PodmanConnection._connect(self)

    def put_file(self, in_path, out_path):
        self._mount_once()
        return super().put_file(in_path, out_path)

    def fetch_file(self, in_path, out_path):
        self._mount_once()
        return super().fetch_file(in_path, out_path)

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        if in_data is None:
            return super().exec_command(cmd, in_data=None, sudoable=sudoable)
        # Pipelined module: `-i` keeps stdin open so the module reaches the interpreter.
        exec_args = ["exec", "-i"] + (["--user", self.user] if self.user else [])
        return self._podman(exec_args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)
