"""The slide service as a real process (uvicorn, sockets): a client that goes away mid-upload
leaves nothing on disk, and memory does not grow with the size of the slide."""

import asyncio
import socket
import uuid

import httpx

from benchmarks.slides import (
    fetch_tiles,
    grant_for,
    peak_mib,
    running_slide_service,
    tile_addresses,
    upload,
)
from tests.support.launcher import wait_for
from tests.support.slides import pyramidal_tiff

# The target of the issue: peak RSS within 100 MiB between a 2,000 px and a 50,000 px slide.
FLAT_MIB = 100


def test_disconnect_mid_upload_and_a_50000_px_slide(new_database_url, tmp_path):
    storage = tmp_path / "storage"
    small = pyramidal_tiff(tmp_path / "small.tiff", 2000, 2000)
    with running_slide_service(storage, new_database_url("slides")) as (process, base, headers):
        # A client that promises 1 MB, sends 100 kB and hangs up.
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as client:
            client.sendall(
                (
                    f"POST /slides?patient_id={uuid.uuid4()}&filename=a.tiff HTTP/1.1\r\n"
                    f"Host: {host}\r\n{next(iter(headers))}: {headers['Authorization']}\r\n"
                    "Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
                ).encode()
                + small.read_bytes()[:100_000]
            )
        # The service answers the abandoned upload (to no one) once it has cleaned up.
        wait_for(
            lambda: (
                'handler="/slides",method="POST",status="400"'
                in httpx.get(f"{base}/metrics", timeout=10).text
            ),
            60,
            "the service to count the abandoned upload as a 400",
        )
        assert [p for p in storage.rglob("*") if p.is_file()] == []

        peaks = []
        for side in (2000, 50_000):
            path = small if side == 2000 else pyramidal_tiff(tmp_path / "big.tiff", side, side)
            slide, _ = upload(base, headers, path)
            assert (slide["width"], slide["format"]) == (side, "generic-tiff")
            grant = grant_for(base, headers, slide["id"])

            latencies = asyncio.run(
                fetch_tiles(base, slide["id"], grant, tile_addresses(slide, 40, seed=1), 4)
            )
            assert len(latencies) == 40
            peaks.append(peak_mib(process.pid))
            path.unlink()
        assert peaks[1] - peaks[0] <= FLAT_MIB, peaks
