"""The slides' audit trail is append-only for everyone, the schema's owner included."""

import asyncpg
import pytest

from tests.support.sql import fetch_async


async def test_audit_events_cannot_be_changed_deleted_or_truncated(slides, slides_db, svs_bytes):
    await slides.slide(svs_bytes, "a.svs")
    [event] = await fetch_async(slides_db, "SELECT id, action FROM audit_events")
    assert event["action"] == "slide_uploaded"
    for statement in (
        "UPDATE audit_events SET action = 'nothing'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await fetch_async(slides_db, statement)
    assert [
        dict(r) for r in await fetch_async(slides_db, "SELECT id, action FROM audit_events")
    ] == [dict(event)]
