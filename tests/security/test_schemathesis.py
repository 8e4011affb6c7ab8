"""Property-based requests over every public operation of the gateway, as each role: no
input, valid or not, may make it answer with a server error."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.security.conftest import new_address

pytestmark = pytest.mark.timeout(300)
ROLES = ("viewer", "clinician", "admin")


@pytest.fixture(scope="module")
def fuzz_runs(stack, viewer, clinician, admin, tmp_path_factory):
    """One run per role, all at once: the stack serves them side by side, and the module
    takes as long as one run instead of three."""
    users = {"viewer": viewer, "clinician": clinician, "admin": admin}
    runs = {}
    for role in ROLES:
        folder = tmp_path_factory.mktemp(f"schemathesis-{role}")
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{stack.url('gateway')}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "5",
            "--seed",
            "20261124",
            "--phases",
            "examples,fuzzing",
            "--max-time",
            "30",
            "--request-timeout",
            "30",
            "--header",
            f"Authorization: {users[role].headers['Authorization']}",
            "--header",
            f"X-Forwarded-For: {new_address()}",
            "--report",
            "junit",
            "--report-dir",
            str(folder),
        ]
        runs[role] = subprocess.Popen(
            command,
            cwd=folder,  # its example cache stays out of the checkout
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    yield runs
    for process in runs.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("role", ROLES)
def test_schemathesis_finds_no_server_error(fuzz_runs, role):
    stdout, stderr = fuzz_runs[role].communicate(timeout=240)
    assert fuzz_runs[role].returncode == 0, stdout[-6000:] + stderr[-2000:]
    # It did call the API: a run over no operations would also exit 0.
    assert re.search(r"\b\d+ operations? tested\b|\b\d+ passed\b", stdout), stdout[-3000:]
