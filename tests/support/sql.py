"""Raw SQL against a test database, to see what the services stored without their code."""

import asyncio

import asyncpg


async def fetch_async(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn=url, timeout=10)
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    return asyncio.run(fetch_async(url, sql, *args))
