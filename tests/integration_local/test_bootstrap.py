"""lab/bootstrap.sh refuses to run where it cannot work, before changing anything."""

import os
import subprocess

from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import REPO

BOOTSTRAP = REPO / "lab" / "bootstrap.sh"


def run_bootstrap(tmp_path, env_extra=None, as_user=None):
    env = {"PATH": os.environ["PATH"], **(env_extra or {})}
    command = [str(BOOTSTRAP), "bookworm"]
    if as_user:
        command = ["setpriv", f"--reuid={as_user}", "--regid=nogroup", "--clear-groups", *command]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False
    )


def test_refuses_non_root_with_a_clear_message(tmp_path):
    venv_stamp = REPO / ".venv" / ".requirements.sha256"
    before = venv_stamp.stat().st_mtime if venv_stamp.exists() else None
    result = run_bootstrap(tmp_path, as_user="nobody")
    assert result.returncode == 1
    assert "must run as root" in result.stderr
    assert "nothing was changed" in result.stderr
    after = venv_stamp.stat().st_mtime if venv_stamp.exists() else None
    assert before == after


def test_refuses_a_non_debian_system(tmp_path):
    fake_release = tmp_path / "os-release"
    fake_release.write_text('ID=fedora\nPRETTY_NAME="Fedora Linux 40"\n')
    result = run_bootstrap(tmp_path, env_extra={"MCFLEET_OS_RELEASE": str(fake_release)})
    assert result.returncode == 1
    assert "needs Debian (found Fedora Linux 40)" in result.stderr
    assert "nothing was changed" in result.stderr
