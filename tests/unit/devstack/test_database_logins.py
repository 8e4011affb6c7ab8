"""`make run` serves each database as a login of its own: which URLs it sets, and which logins
it asks to be made (devstack.stack.separate_runtime_login)."""

import pytest
from sqlalchemy.engine import make_url

from devstack.postgres import runtime_login_name
from devstack.stack import BY_NAME, build_stack

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
WITH_DATABASE = [c for c in BY_NAME.values() if c.database]


def test_by_default_each_service_runs_as_a_runtime_login_and_migrates_as_the_server_login(
    tmp_path,
):
    stack = build_stack({}, SERVER, tmp_path)
    logins = {login.role: login for login in stack.runtime_logins}
    assert set(logins) == {f"{c.database}_runtime" for c in WITH_DATABASE}
    for component in WITH_DATABASE:
        prefix = component.env_prefix
        owner = make_url(stack.env[f"{prefix}MIGRATION_DATABASE_URL"])
        runtime = make_url(stack.env[f"{prefix}DATABASE_URL"])
        assert (owner.username, owner.database) == ("postgres", component.database)
        login = logins[f"{component.database}_runtime"]
        assert runtime.username == login.role != "postgres"
        assert runtime.password == login.password and len(login.password) >= 32
        assert (runtime.host, runtime.port, runtime.database) == (
            owner.host,
            owner.port,
            owner.database,
        )
        assert login.admin_url == stack.env[f"{prefix}MIGRATION_DATABASE_URL"]


def test_a_configured_database_url_is_the_owner_and_the_runtime_login_is_named_for_it(tmp_path):
    configured = {"DATA_DATABASE_URL": "postgresql://admin:pw@db.example:6432/test_data_1234"}
    stack = build_stack(configured, SERVER, tmp_path)
    assert stack.env["DATA_MIGRATION_DATABASE_URL"] == configured["DATA_DATABASE_URL"]
    runtime = make_url(stack.env["DATA_DATABASE_URL"])
    assert runtime.username == "test_data_1234_runtime"
    assert (runtime.host, runtime.port, runtime.database) == ("db.example", 6432, "test_data_1234")


def test_both_urls_configured_are_taken_as_they_are(tmp_path):
    configured = {
        "DATA_DATABASE_URL": "postgresql://data_app:pw@db/data",
        "DATA_MIGRATION_DATABASE_URL": "postgresql://data:pw@db/data",
    }
    stack = build_stack(configured, SERVER, tmp_path)
    assert {k: stack.env[k] for k in configured} == configured
    assert "data_runtime" not in {login.role for login in stack.runtime_logins}


def test_each_start_makes_a_new_password(tmp_path):
    first = build_stack({}, SERVER, tmp_path).env["DATA_DATABASE_URL"]
    second = build_stack({}, SERVER, tmp_path).env["DATA_DATABASE_URL"]
    assert make_url(first).password != make_url(second).password


@pytest.mark.parametrize("database", ["x" * 60, 'data"; DROP ROLE postgres; --'])
def test_a_database_name_that_makes_no_safe_login_name_is_refused(database):
    with pytest.raises(ValueError, match="no runtime login"):
        runtime_login_name(f"postgresql://postgres@db/{database}")


def test_the_services_are_not_given_the_migration_logins(tmp_path):
    stack = build_stack({}, SERVER, tmp_path)
    assert "DATA_MIGRATION_DATABASE_URL" in stack.env  # for `migrate`
    assert not [k for k in stack.service_env if k.endswith("MIGRATION_DATABASE_URL")]
    assert stack.service_env["DATA_DATABASE_URL"] == stack.env["DATA_DATABASE_URL"]
