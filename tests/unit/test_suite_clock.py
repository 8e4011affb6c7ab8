"""No test depends on how long the suite has run: tokens, clocks and deadlines are made where
they are used, never while pytest imports the test modules."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import jwt
import pytest

from devstack import ROOT
from tests.support.stack_login import RenewingLogin
from tests.support.tokens import LIFETIME_S, mint_token

# Calls that make a token or read the clock: at import time, their value is stale by the time a
# test runs, which may be many minutes later on a slow machine.
CLOCK_READS = {"mint_token", "time", "monotonic", "perf_counter", "now", "utcnow", "today"}


def import_time_calls(tree: ast.Module) -> list[tuple[int, str]]:
    """Calls in `CLOCK_READS` made when the module is imported: in its body and class bodies,
    in default values and in decorators, but not inside function bodies."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            evaluated_now = [*node.args.defaults, *filter(None, node.args.kw_defaults)]
            if not isinstance(node, ast.Lambda):
                evaluated_now += node.decorator_list
            for part in evaluated_now:
                visit(part)
            return  # the body runs when called
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if name in CLOCK_READS:
                found.append((node.lineno, ast.unparse(node.func)))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_no_test_module_makes_a_token_or_reads_the_clock_at_import():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {call}()"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for line, call in import_time_calls(ast.parse(path.read_text()))
    ]
    assert offenders == [], "made at import, stale when used:\n" + "\n".join(offenders)


def test_the_import_check_finds_what_it_looks_for():
    source = textwrap.dedent(
        """
        import time
        ADMIN = bearer(mint_token("admin"))
        class Case:
            started = time.monotonic()
        def helper(token=mint_token("viewer")):
            return bearer(mint_token("clinician"))  # fine: made when called
        @pytest.mark.timeout(time.time())
        def test(): pass
        """
    )
    assert [call for _, call in import_time_calls(ast.parse(source))] == [
        "mint_token",
        "time.monotonic",
        "mint_token",
        "time.time",
    ]


def run_pytest_on(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(source))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.support.token_guard",
            "-p",
            "no:cacheprovider",
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_sample.py"),
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_token_made_while_the_tests_are_imported_fails_the_run(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    completed = run_pytest_on(
        tmp_path,
        """
        from tests.support.tokens import mint_token
        CLINICIAN = mint_token("clinician")
        def test_uses_it():
            assert CLINICIAN
        """,
    )
    assert completed.returncode != 0, completed.stdout
    assert "TokenMadeTooEarly" in completed.stdout, completed.stdout
    assert "Make it inside the test" in completed.stdout


def test_a_token_made_inside_a_test_is_accepted(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    completed = run_pytest_on(
        tmp_path,
        """
        from tests.support.tokens import bearer, mint_token
        def test_makes_its_own():
            assert bearer(mint_token("clinician"))["Authorization"].startswith("Bearer ")
        """,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "1 passed" in completed.stdout


def test_a_test_token_lives_for_its_stated_lifetime():
    token = mint_token("viewer")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == LIFETIME_S


class FakeLogin:
    def __init__(self, expires_in: int) -> None:
        self.expires_in = expires_in
        self.calls = 0

    def __call__(self):
        import httpx

        self.calls += 1
        return httpx.Response(
            200,
            json={
                "access_token": f"access-{self.calls}",
                "refresh_token": f"refresh-{self.calls}",
                "expires_in": self.expires_in,
            },
        )


def test_a_long_lived_login_is_renewed_before_its_token_expires():
    now = [1000.0]
    login = FakeLogin(expires_in=900)
    session = RenewingLogin(login, clock=lambda: now[0])
    assert dict(session) == {"Authorization": "Bearer access-1"}
    now[0] += 800  # 100 s left: still used
    assert {**session, "X": "1"} == {"Authorization": "Bearer access-1", "X": "1"}
    assert login.calls == 1
    now[0] += 60  # 40 s left, less than the margin: a request might outlive it
    assert session["Authorization"] == "Bearer access-2"
    assert session.refresh_token == "refresh-2"
    assert login.calls == 2


def test_a_short_lived_login_is_renewed_at_three_quarters_of_its_life():
    now = [0.0]
    login = FakeLogin(expires_in=20)
    session = RenewingLogin(login, clock=lambda: now[0])
    assert session.access_token == "access-1"
    now[0] = 14.9
    assert session.access_token == "access-1"
    now[0] = 15.0
    assert session.access_token == "access-2"


def test_a_failed_login_says_so():
    import httpx

    session = RenewingLogin(lambda: httpx.Response(401, json={"error": {"code": "nope"}}))
    with pytest.raises(AssertionError, match="login failed"):
        session.tokens()
