"""Database failures as the caller sees them: a database that is away is a 503 to retry,
a value it cannot store is the caller's 422, anything else stays a 500."""

import asyncpg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError

from common.db import install_db_error_handlers
from common.errors import install_error_handlers


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def failing_app(exc: BaseException) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    install_db_error_handlers(app)

    @app.get("/query")
    async def query():
        raise exc

    return app


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("too many clients"),
        DBAPIError("SELECT 1", None, DriverError("57P01")),  # terminated by shutdown
        DBAPIError("SELECT 1", None, DriverError("08006")),
        DBAPIError("SELECT 1", None, Exception("closed"), connection_invalidated=True),
    ],
    ids=type,
)
def test_a_database_that_is_away_is_a_503_to_retry(exc):
    with TestClient(failing_app(exc), raise_server_exceptions=False) as client:
        answer = client.get("/query")
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "service_unavailable"
    assert answer.headers["retry-after"] == "1"


def test_a_value_the_database_cannot_store_stays_the_callers_422():
    exc = DBAPIError("INSERT", None, DriverError("22P05"))
    with TestClient(failing_app(exc), raise_server_exceptions=False) as client:
        assert client.get("/query").status_code == 422


@pytest.mark.parametrize(
    "exc",
    [
        DBAPIError("SELECT 1", None, DriverError("42P01")),  # no such table: our bug
        asyncpg.UndefinedTableError("relation does not exist"),
    ],
    ids=type,
)
def test_other_database_errors_stay_a_500(exc):
    with TestClient(failing_app(exc), raise_server_exceptions=False) as client:
        answer = client.get("/query")
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"
