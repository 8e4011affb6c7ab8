"""The job queue's schema in the slide service's database: procrastinate's own SQL for the
pinned version, applied by the Alembic migration, and the statements that remove it again.

Its tables are not in the service's SQLAlchemy metadata (procrastinate owns them), so
Alembic's comparison leaves them alone (`QUEUE_TABLES`, see migrations/env.py)."""

import re

from procrastinate.schema import SchemaManager
from sqlalchemy.engine import Connection
from sqlalchemy.util import await_only

QUEUE_TABLES = frozenset(
    {
        "procrastinate_jobs",
        "procrastinate_events",
        "procrastinate_periodic_defers",
        "procrastinate_workers",
    }
)
_FUNCTION = re.compile(r"CREATE FUNCTION (procrastinate_\w+)\(([^)]*)\)")
_TYPE = re.compile(r"CREATE TYPE (procrastinate_\w+)")


def queue_schema_sql() -> str:
    return SchemaManager.get_schema()


def drop_queue_schema_sql() -> str:
    """DROP statements for every table, function and type the schema creates (tables first:
    their triggers go with them)."""
    schema = queue_schema_sql()
    statements = [f"DROP TABLE IF EXISTS {name} CASCADE" for name in sorted(QUEUE_TABLES)]
    statements += [
        f"DROP FUNCTION IF EXISTS {name}({_argument_types(arguments)}) CASCADE"
        for name, arguments in _FUNCTION.findall(schema)
    ]
    statements += [f"DROP TYPE IF EXISTS {name} CASCADE" for name in _TYPE.findall(schema)]
    return ";\n".join(statements) + ";"


def _argument_types(arguments: str) -> str:
    """`a integer, b text` -> `integer, text` (what DROP FUNCTION needs to name one)."""
    types = []
    for argument in filter(None, (part.strip() for part in arguments.split(","))):
        words = argument.split()
        types.append(" ".join(words[1:]) if len(words) > 1 else words[0])
    return ", ".join(types)


def execute_script(connection: Connection, sql: str) -> None:
    """Run a script of many statements (functions with `$$` bodies included) on an Alembic
    connection: asyncpg's simple query protocol takes them at once, where a prepared
    statement, which SQLAlchemy would make, takes one."""
    await_only(connection.connection.driver_connection.execute(sql))
