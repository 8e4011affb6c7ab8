"""The tile server's handling of slide files: viewers arriving together at a slide nobody
has opened yet share one open of its file."""

import asyncio
import threading
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from common.errors import ServiceError
from slide_service.tiles.deepzoom import SlideRef, TileServer
from tests.support.slides import pyramidal_tiff
from tests.support.waiting import until


def _server() -> TileServer:
    return TileServer(
        tile_cache_bytes=1 << 20,
        open_slides=4,
        read_threads=8,
        registry=CollectorRegistry(),
        max_read_pixels=64_000_000,
    )


async def test_eight_viewers_of_a_new_slide_open_its_file_once(tmp_path: Path) -> None:
    path = pyramidal_tiff(tmp_path / "slide.tif", 1024, 768)
    ref = SlideRef(uuid.uuid4(), "ab" * 32, path)
    tiles = _server()
    opens: list[Path] = []
    release = threading.Event()
    real_open = tiles._open

    def counted_open(opened_path: Path):  # type: ignore[no-untyped-def]
        opens.append(opened_path)
        # Held until every viewer has asked, so none can find the handle already cached.
        assert release.wait(60), "the eight viewers never all asked for the slide"
        return real_open(opened_path)

    tiles._open = counted_open  # type: ignore[method-assign]
    viewers = [asyncio.ensure_future(tiles.tile(ref, 10, 0, 0)) for _ in range(8)]
    await until(lambda: bool(opens), "the first viewer's open to reach a read thread")
    await asyncio.sleep(0)  # the other seven have run up to their wait
    release.set()
    answers = await asyncio.gather(*viewers)
    tiles.close()
    assert opens == [path]
    assert len(set(answers)) == 1 and answers[0][:2] == b"\xff\xd8"


async def test_an_unreadable_file_is_a_503_for_every_viewer(tmp_path: Path) -> None:
    ref = SlideRef(uuid.uuid4(), "cd" * 32, tmp_path / "gone.tif")
    tiles = _server()
    results = await asyncio.gather(*(tiles.dzi(ref) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ServiceError) and r.status_code == 503 for r in results)
    with pytest.raises(ServiceError):  # a failed open is not kept: the next asks again
        await tiles.dzi(ref)
    tiles.close()
