"""The tree passes the linters and the type checker CI runs, so a failure shows up in
`make test` too."""

import subprocess
import sys
from pathlib import Path

from devstack import ROOT

RUFF = str(Path(sys.executable).with_name("ruff"))


def test_ruff_check_passes():
    result = subprocess.run([RUFF, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied():
    result = subprocess.run(
        [RUFF, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_passes():
    mypy = str(Path(sys.executable).with_name("mypy"))
    result = subprocess.run([mypy], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
