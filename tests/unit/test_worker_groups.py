"""`make test` runs on two workers; the tests that share a stack must stay on one of them, or
each worker starts the stack again and a 15-minute suite takes 20."""

import re
import subprocess
import sys
from collections import defaultdict

from devstack import ROOT
from tests.conftest import worker_group

TESTS = ROOT / "tests"


def test_a_stack_package_is_one_group_and_other_files_are_their_own():
    assert worker_group(TESTS / "e2e" / "test_auth_flow.py") == "e2e"
    assert worker_group(TESTS / "e2e" / "test_stack.py") == "e2e"
    assert worker_group(TESTS / "e2e" / "test_gateway.py") == "e2e/test_gateway.py"
    assert worker_group(TESTS / "security" / "test_tokens.py") == "security"
    assert worker_group(TESTS / "unit" / "test_code_quality.py") == "unit/test_code_quality.py"
    assert (
        worker_group(TESTS / "integration" / "test_service_readiness.py", ["trained_versions"])
        == "trained_versions"
    )


def test_two_workers_keep_each_group_on_one_worker():
    """A real `pytest -n 2 --dist loadgroup`, as `make test` runs it, over two small files:
    every test of a file (its group) reports from the same worker, under its group's name."""
    files = ["tests/unit/devstack/test_secrets.py", "tests/unit/devstack/test_prometheus.py"]
    pytest = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v"]
    completed = subprocess.run(
        [*pytest, "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    workers_of: dict[str, set[str]] = defaultdict(set)
    for worker, nodeid in re.findall(r"\[(gw\d)\] \[\s*\d+%\] PASSED (\S+)", completed.stdout):
        test_file, _, group = nodeid.partition("@")
        assert group == test_file.removeprefix("tests/").split("::")[0], nodeid
        workers_of[group].add(worker)
    assert set(workers_of) == {f.removeprefix("tests/") for f in files}, completed.stdout
    assert all(len(workers) == 1 for workers in workers_of.values()), dict(workers_of)
