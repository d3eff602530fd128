"""The README's set-up promise: `.venv` is exactly `requirements.lock`, and the system
packages the tests need are installed by `make` itself or named in the exact command to
run, never silently missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
# The venv's own installer, and the project itself (installed editable from the checkout).
NOT_LOCKED = {"pip", "wave-edge"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", LOCK.read_text(), re.M)
    return {_canonical(name): version for name, version in pins}


def _installed() -> dict[str, str]:
    return {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def test_the_venv_holds_exactly_the_locked_versions():
    assert Path(sys.prefix).resolve() == (ROOT / ".venv").resolve(), "run through make test"
    locked, installed = _locked(), _installed()
    assert len(locked) > 50
    wrong = {n: (installed.get(n), v) for n, v in locked.items() if installed.get(n) != v}
    assert not wrong, f"installed vs locked: {wrong}"
    extra = set(installed) - set(locked) - NOT_LOCKED
    assert not extra, f"installed but not in the lock: {sorted(extra)}"


def test_every_lock_entry_carries_hashes():
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text())
    pins = [e for e in entries if re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*==", e)]
    assert pins and all("--hash=sha256:" in e for e in pins)


def test_the_locked_ranges_are_the_projects(tmp_path):
    """Every runtime and test dependency named in pyproject.toml is in the lock."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    names = {_canonical(re.match(r"[A-Za-z0-9._-]+", spec).group(0)) for spec in wanted}
    assert names <= set(_locked()), names - set(_locked())


def _script_env(tmp_path: Path, *tools: str) -> dict[str, str]:
    """A PATH holding only these tools, so the script sees everything else as missing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / Path(tool).name).symlink_to(found)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


def test_system_deps_names_the_exact_command_when_it_cannot_install():
    """Not root: it stops at once and prints the command that installs what is missing."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or not setpriv:
        pytest.fail("this test drops root with setpriv; run it as root (as make test does)")
    # pytest's own tmp root is private to root: the unprivileged run needs a public one
    home = Path(tempfile.mkdtemp(prefix="wave-sysdeps-"))
    try:
        home.chmod(0o755)
        # root's python3 here may be a pyenv shim nobody can read: take the system one
        env = _script_env(home, "bash", "/usr/bin/python3", "id", "apt-get")
        result = _run_unprivileged(setpriv, env)
    finally:
        shutil.rmtree(home)
    assert result.returncode != 0
    assert "Run as root" in result.stderr
    command = re.search(r"sudo sh -c '(.*)'", result.stderr).group(1)
    assert command.startswith("apt-get update && apt-get install -y --no-install-recommends ")
    # and python3-venv first, if that is missing too; a C compiler for build/rtp_send.so last
    assert command.endswith("nodejs npm gcc libc6-dev")


def _run_unprivileged(setpriv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
         str(ROOT / "scripts" / "system-deps"), "run"],
        env=env, capture_output=True, text=True, timeout=60,
    )


def test_system_deps_does_nothing_when_nothing_is_missing():
    result = subprocess.run(
        [str(ROOT / "scripts" / "system-deps"), "test"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert Path("/usr/bin/chromium").exists()
    assert shutil.which("nginx") or Path("/usr/sbin/nginx").exists()
