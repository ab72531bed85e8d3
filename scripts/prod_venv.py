"""A virtualenv with ``requirements.txt`` alone, as the Docker image installs it, for the production test.

Built once per content of ``requirements.txt`` (the directory is named by the file's hash) under
``$XDG_CACHE_HOME/taskwarden`` (default ``~/.cache/taskwarden``), so that a changed requirement gets a fresh
venv and an unchanged one costs nothing. Prints the venv's path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"


def prod_venv() -> Path:
    """The venv's path, building it first when it is missing or was left half-built."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "taskwarden"
    venv = cache / f"prod-venv-{digest}"
    done = venv / ".complete"
    if done.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",  # noqa: S603
                    "--disable-pip-version-check", "-r", str(REQUIREMENTS)], check=True)
    done.touch()
    return venv


if __name__ == "__main__":
    print(prod_venv())
