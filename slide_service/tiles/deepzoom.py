"""Deep-zoom tiles, thumbnails and associated images, read through OpenSlide in a bounded
thread pool and kept in bounded caches.

Tiles come from `openslide.deepzoom.DeepZoomGenerator`, OpenSlide's own generator: it has the
exact Deep Zoom level arithmetic OpenSeadragon expects (levels down to 1 px, edge tiles, the
overlap) and reads each tile from the best pyramid level, for every format OpenSlide reads.
`large-image` would serve the same tiles, but brings its many tile sources and cache backends
(memcached, redis) and a much larger dependency tree for what one class here does.

Three bounded caches keep the service's memory flat whatever the size of the slides:
- encoded tiles (and thumbnails), an LRU sized in bytes (`tile_cache_bytes`);
- open slide handles with their generators, an LRU of `open_slides` entries; a handle that
  falls out is closed when the last read using it is done (OpenSlide closes on collection);
- OpenSlide's own cache of decoded pyramid tiles, one shared by every handle, not one per
  handle as OpenSlide would make by default.
A tile served from cache touches neither a thread nor the database: the slide's file comes
from a short-lived map of slide id to file (`SlideRefs`), dropped on delete.
"""

import asyncio
import contextlib
import io
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import openslide
from cachetools import LRUCache, TTLCache
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image
from prometheus_client import CollectorRegistry, Counter, Histogram

from common.errors import ServiceError
from slide_service.slides.formats import bounded_thumbnail

TILE_SIZE = 254
OVERLAP = 1
JPEG_QUALITY = 80
# Decoded pyramid tiles OpenSlide keeps for all handles together.
OPENSLIDE_CACHE_BYTES = 32 * 1024 * 1024
# How long a process trusts its map of slide id to file; a delete elsewhere (another
# replica) is seen within this time, a delete here at once.
REF_TTL_S = 30.0
REF_ENTRIES = 10_000
# Part of every ETag: a change to how tiles are made (their size, overlap or quality) must
# not match tiles or descriptors made before.
TILE_VERSION = f"t1s{TILE_SIZE}o{OVERLAP}q{JPEG_QUALITY}"

T = TypeVar("T")


class TileNotFound(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            404, "The slide has no tile at that level and address.", code="tile_not_found"
        )


@dataclass(frozen=True)
class SlideRef:
    """What serving a slide's pixels needs to know of its record."""

    id: uuid.UUID
    sha256: str
    path: Path


@dataclass(frozen=True)
class Opened:
    slide: openslide.OpenSlide
    deepzoom: DeepZoomGenerator


class SlideRefs:
    """Slide id -> file, for `REF_TTL_S`; a miss asks `load` (the database)."""

    def __init__(self, load: Callable[[uuid.UUID], Awaitable[SlideRef]]) -> None:
        self._load = load
        self._refs: TTLCache[uuid.UUID, SlideRef] = TTLCache(REF_ENTRIES, REF_TTL_S)

    async def get(self, slide_id: uuid.UUID) -> SlideRef:
        ref = self._refs.get(slide_id)
        if ref is None:
            ref = await self._load(slide_id)
            self._refs[slide_id] = ref
        return ref

    def remember(self, ref: SlideRef) -> None:
        self._refs[ref.id] = ref

    def forget(self, slide_id: uuid.UUID) -> None:
        self._refs.pop(slide_id, None)


def tile_etag(ref: SlideRef, level: int, col: int, row: int) -> str:
    # The content's hash names the pixels; the same content uploaded twice shares its tiles.
    return f'"{TILE_VERSION}-{ref.sha256[:24]}-{level}-{col}-{row}"'


def dzi_etag(ref: SlideRef) -> str:
    return f'"{TILE_VERSION}-{ref.sha256[:24]}-dzi"'


def thumbnail_etag(ref: SlideRef, max_size: int) -> str:
    return f'"{TILE_VERSION}-{ref.sha256[:24]}-thumbnail-{max_size}"'


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """Whether If-None-Match names this ETag (RFC 9110: a list, weak comparison, or `*`)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


class TileServer:
    def __init__(
        self,
        *,
        tile_cache_bytes: int,
        open_slides: int,
        read_threads: int,
        registry: CollectorRegistry,
        max_read_pixels: int,
    ) -> None:
        self.max_read_pixels = max_read_pixels
        self._executor = ThreadPoolExecutor(read_threads, thread_name_prefix="slide-read")
        self._tiles: LRUCache[tuple[Any, ...], bytes] = LRUCache(
            max(tile_cache_bytes, 1), getsizeof=len
        )
        self._handles: LRUCache[Path, Opened] = LRUCache(open_slides)
        # Opens under way: viewers arriving together at a new slide share one open.
        self._opening: dict[Path, asyncio.Future[Opened]] = {}
        self._openslide_cache = openslide.OpenSlideCache(OPENSLIDE_CACHE_BYTES)
        self.hits = Counter(
            "slide_tile_cache_hits", "Tiles served from the tile cache", registry=registry
        )
        self.misses = Counter(
            "slide_tile_cache_misses", "Tiles read from the slide file", registry=registry
        )
        self.seconds = Histogram(
            "slide_tile_seconds",
            "Time to produce a tile, from the cache or the file",
            ["cache"],
            # 0.03 and 0.15 s are the cached and cold targets (and the alert's threshold), so
            # their quantiles are read at a bucket edge, not interpolated.
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.03, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )

    async def _read(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def _open(self, path: Path) -> Opened:
        slide = openslide.OpenSlide(path)
        slide.set_cache(self._openslide_cache)
        return Opened(slide, DeepZoomGenerator(slide, TILE_SIZE, OVERLAP, limit_bounds=False))

    async def opened(self, ref: SlideRef) -> Opened:
        handle = self._handles.get(ref.path)
        if handle is not None:
            return handle
        opening = self._opening.get(ref.path)
        if opening is None:
            opening = asyncio.ensure_future(self._read(self._open, ref.path))
            self._opening[ref.path] = opening
            opening.add_done_callback(lambda _: self._opening.pop(ref.path, None))
        try:
            # Shielded: one viewer giving up does not cancel the open the others wait for.
            handle = await asyncio.shield(opening)
        except (openslide.OpenSlideError, FileNotFoundError) as exc:
            raise ServiceError(
                503, "The slide's file cannot be read now.", code="slide_unreadable"
            ) from exc
        self._handles[ref.path] = handle
        return handle

    async def dzi(self, ref: SlideRef) -> str:
        return (await self.opened(ref)).deepzoom.get_dzi("jpeg")

    async def tile(self, ref: SlideRef, level: int, col: int, row: int) -> bytes:
        started = time.perf_counter()
        key = (ref.sha256, ref.path, level, col, row)
        data = self._tiles.get(key)
        if data is not None:
            self.hits.inc()
            self.seconds.labels("hit").observe(time.perf_counter() - started)
            return data
        deepzoom = (await self.opened(ref)).deepzoom
        if not 0 <= level < deepzoom.level_count:
            raise TileNotFound()
        cols, rows = deepzoom.level_tiles[level]
        if not (0 <= col < cols and 0 <= row < rows):
            raise TileNotFound()
        data = await self._read(self._make_tile, deepzoom, level, col, row)
        self.misses.inc()
        self._keep(key, data)
        self.seconds.labels("miss").observe(time.perf_counter() - started)
        return data

    def _keep(self, key: tuple[Any, ...], data: bytes) -> None:
        with contextlib.suppress(ValueError):  # larger than the whole cache: not kept
            self._tiles[key] = data

    @staticmethod
    def _make_tile(deepzoom: DeepZoomGenerator, level: int, col: int, row: int) -> bytes:
        return _jpeg(deepzoom.get_tile(level, (col, row)))

    async def thumbnail(self, ref: SlideRef, max_size: int) -> bytes:
        key = (ref.sha256, ref.path, "thumbnail", max_size)
        data = self._tiles.get(key)
        if data is None:
            slide = (await self.opened(ref)).slide
            data = await self._read(
                lambda: _jpeg(bounded_thumbnail(slide, max_size, self.max_read_pixels))
            )
            self._keep(key, data)
        return data

    async def associated(self, ref: SlideRef, name: str) -> bytes:
        # Not cached: every read is audited, and these images are rarely asked for.
        slide = (await self.opened(ref)).slide
        return await self._read(lambda: _jpeg(slide.associated_images[name]))

    def forget(self, ref: SlideRef) -> None:
        """Stop serving a deleted slide's file (its cached tiles are unreachable by id now,
        and age out of the LRU)."""
        self._handles.pop(ref.path, None)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._handles.clear()
