"""Reading slides: list, metadata, thumbnail, associated images (admins, audited), delete
(admins, audited, the file with the last record), the Deep Zoom descriptor and tiles, and
the view grants that open them without a bearer token."""

import io
import time
import uuid
import xml.etree.ElementTree as ET

import jwt
import pytest
from PIL import Image

from slide_service.settings import DEVELOPMENT_VIEW_LINK_SECRET
from tests.support.slide_uploads import grant_claims


def slide_files(slides) -> list:
    return [p for p in slides.stored_files() if ".ready-" not in p.name]


async def test_list_by_patient_paged_and_thumbnail(slides, svs_bytes, tiff_without_mpp):
    patient = str(uuid.uuid4())
    first = await slides.slide(svs_bytes, "a.svs", patient_id=patient)
    second = await slides.slide(tiff_without_mpp, "b.tiff", patient_id=patient)
    await slides.slide(svs_bytes, "c.svs")  # another patient's
    page = await slides.client.get(
        "/slides", params={"patient_id": patient, "limit": 1}, headers=slides.viewer
    )
    assert page.status_code == 200
    body = page.json()
    assert (body["total"], body["limit"], body["offset"]) == (2, 1, 0)
    assert [s["id"] for s in body["items"]] == [second["id"]]  # newest first
    rest = await slides.client.get(
        "/slides", params={"patient_id": patient, "offset": 1}, headers=slides.viewer
    )
    assert [s["id"] for s in rest.json()["items"]] == [first["id"]]
    too_many = await slides.client.get("/slides", params={"limit": 101}, headers=slides.viewer)
    assert too_many.status_code == 422
    thumbnail = await slides.client.get(
        f"/slides/{first['id']}/thumbnail", params={"max_size": 128}, headers=slides.viewer
    )
    assert thumbnail.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(thumbnail.content))
    assert max(image.size) == 128 and image.size[1] > image.size[0]  # portrait, like the slide
    missing = await slides.client.get(f"/slides/{uuid.uuid4()}", headers=slides.viewer)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "slide_not_found")


async def test_associated_images_are_for_admins_and_every_read_is_audited(slides, svs_bytes):
    slide = await slides.slide(svs_bytes, "a.svs")
    for who in (slides.viewer, slides.clinician):
        refused = await slides.client.get(f"/slides/{slide['id']}/associated/label", headers=who)
        assert refused.status_code == 403
    label = await slides.client.get(f"/slides/{slide['id']}/associated/label", headers=slides.admin)
    assert label.status_code == 200 and label.headers["content-type"] == "image/jpeg"
    assert label.headers["cache-control"] == "no-store"
    assert Image.open(io.BytesIO(label.content)).size == (387, 463)
    unknown = await slides.client.get(
        f"/slides/{slide['id']}/associated/nothing", headers=slides.admin
    )
    assert unknown.json()["error"]["code"] == "associated_image_not_found"
    audit = await slides.client.get("/audit", headers=slides.admin)
    reads = [e for e in audit.json()["items"] if e["action"] == "associated_image_read"]
    assert [(e["resource_id"], e["details"]) for e in reads] == [(slide["id"], {"name": "label"})]
    assert (await slides.client.get("/audit", headers=slides.clinician)).status_code == 403


async def test_delete_is_for_admins_audited_and_takes_the_file_with_the_last_record(
    slides, svs_bytes
):
    first = await slides.slide(svs_bytes, "a.svs")
    second = await slides.slide(svs_bytes, "b.svs")
    refused = await slides.client.delete(f"/slides/{first['id']}", headers=slides.clinician)
    assert refused.status_code == 403
    grant = await slides.grant(first["id"])
    tile = await slides.client.get(f"/slides/{first['id']}/tiles/0/0_0.jpeg?grant={grant}")
    assert tile.status_code == 200

    assert (
        await slides.client.delete(f"/slides/{first['id']}", headers=slides.admin)
    ).status_code == 204
    assert len(slide_files(slides)) == 1  # the second record still uses it
    gone = await slides.client.get(f"/slides/{first['id']}/tiles/0/0_0.jpeg?grant={grant}")
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "slide_not_found")
    kept = await slides.client.get(f"/slides/{second['id']}/dzi", headers=slides.viewer)
    assert kept.status_code == 200

    assert (
        await slides.client.delete(f"/slides/{second['id']}", headers=slides.admin)
    ).status_code == 204
    assert slide_files(slides) == []
    audit = (await slides.client.get("/audit", headers=slides.admin)).json()["items"]
    deleted = [e["resource_id"] for e in audit if e["action"] == "slide_deleted"]
    assert deleted == [second["id"], first["id"]]
    again = await slides.client.delete(f"/slides/{first['id']}", headers=slides.admin)
    assert again.status_code == 404


async def test_dzi_descriptor_matches_the_slide(slides, svs_bytes):
    slide = await slides.slide(svs_bytes, "a.svs")
    response = await slides.client.get(f"/slides/{slide['id']}/dzi", headers=slides.viewer)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)
    assert (root.get("TileSize"), root.get("Overlap"), root.get("Format")) == ("254", "1", "jpeg")
    size = root[0]
    assert (size.get("Width"), size.get("Height")) == ("2220", "2967")


async def test_tiles_have_etags_cache_headers_304_and_404_out_of_range(slides, svs_bytes):
    slide = await slides.slide(svs_bytes, "a.svs")
    base = f"/slides/{slide['id']}/tiles"
    # Level 12 of a 2967 px slide is full resolution: 12 x 12 tiles of 254 px.
    tile = await slides.client.get(f"{base}/12/3_4.jpeg", headers=slides.viewer)
    assert tile.status_code == 200, tile.text
    assert tile.headers["content-type"] == "image/jpeg"
    assert tile.headers["cache-control"] == "private, max-age=86400, immutable"
    image = Image.open(io.BytesIO(tile.content))
    assert image.size == (256, 256)  # 254 plus one pixel of overlap on each side
    etag = tile.headers["etag"]
    same = await slides.client.get(
        f"{base}/12/3_4.jpeg", headers={**slides.viewer, "If-None-Match": etag}
    )
    assert same.status_code == 304 and same.content == b""
    other = await slides.client.get(f"{base}/12/4_4.jpeg", headers=slides.viewer)
    assert other.headers["etag"] != etag
    for address in ("12/9_12.jpeg", "12/12_0.jpeg", "13/0_0.jpeg"):
        outside = await slides.client.get(f"{base}/{address}", headers=slides.viewer)
        assert outside.status_code == 404, address
        assert outside.json()["error"]["code"] == "tile_not_found"


async def test_if_none_match_is_read_as_http_says_for_tiles_descriptor_and_thumbnail(
    slides, svs_bytes
):
    slide = await slides.slide(svs_bytes, "a.svs")
    paths = (
        f"/slides/{slide['id']}/tiles/12/3_4.jpeg",
        f"/slides/{slide['id']}/dzi",
        f"/slides/{slide['id']}/thumbnail?max_size=64",
    )
    etags = set()
    for path in paths:
        first = await slides.client.get(path, headers=slides.viewer)
        assert first.status_code == 200, (path, first.text)
        etag = first.headers["etag"]
        etags.add(etag)
        # The tile geometry is in every ETag: a descriptor of other tiles never matches.
        assert "s254o1" in etag, etag
        for asked in (etag, f'"other", {etag}', f"W/{etag}", "*"):
            again = await slides.client.get(path, headers={**slides.viewer, "If-None-Match": asked})
            assert (again.status_code, again.headers["etag"]) == (304, etag), (path, asked)
        changed = await slides.client.get(
            path, headers={**slides.viewer, "If-None-Match": '"something-else"'}
        )
        assert changed.status_code == 200 and changed.content == first.content
    assert len(etags) == len(paths)


async def test_cache_hit_metric_counts_a_tile_served_twice(slides, svs_bytes):
    slide = await slides.slide(svs_bytes, "a.svs")
    url = f"/slides/{slide['id']}/tiles/10/1_1.jpeg"
    hits = await slides.metric("slide_tile_cache_hits_total")
    misses = await slides.metric("slide_tile_cache_misses_total")
    first = await slides.client.get(url, headers=slides.viewer)
    assert await slides.metric("slide_tile_cache_misses_total") == misses + 1
    second = await slides.client.get(url, headers=slides.viewer)
    assert second.content == first.content
    assert await slides.metric("slide_tile_cache_hits_total") == hits + 1
    assert await slides.metric('slide_tile_seconds_count{cache="hit"}') >= 1


def signed(claims: dict, key: str = DEVELOPMENT_VIEW_LINK_SECRET) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


async def test_a_grant_opens_its_slide_and_nothing_else(slides, svs_bytes):
    slide = await slides.slide(svs_bytes, "a.svs")
    other = await slides.slide(svs_bytes, "b.svs")
    response = await slides.client.post(f"/slides/{slide['id']}/view-links", headers=slides.viewer)
    body = response.json()
    assert (
        body["expires_at"]
        and jwt.decode(body["grant"], DEVELOPMENT_VIEW_LINK_SECRET, algorithms=["HS256"])["sid"]
        == slide["id"]
    )
    grant = body["grant"]
    for path in ("dzi", "tiles/11/0_0.jpeg"):
        opened = await slides.client.get(f"/slides/{slide['id']}/{path}", params={"grant": grant})
        assert opened.status_code == 200, path
    foreign = await slides.client.get(f"/slides/{other['id']}/dzi", params={"grant": grant})
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (403, "forbidden")
    # A grant reads; it neither lists, nor describes, nor deletes.
    for method, path in (
        ("GET", "/slides"),
        ("GET", f"/slides/{slide['id']}"),
        ("DELETE", f"/slides/{slide['id']}"),
    ):
        refused = await slides.client.request(method, path, params={"grant": grant})
        assert refused.status_code == 401, (method, path)
    no_link = await slides.client.post(f"/slides/{uuid.uuid4()}/view-links", headers=slides.viewer)
    assert no_link.status_code == 404


@pytest.mark.parametrize(
    "case",
    ["none", "expired", "altered", "wrong_type", "wrong_key", "no_sid"],
)
async def test_tiles_refuse_a_missing_or_bad_grant_with_401(slides, svs_bytes, case):
    slide = await slides.slide(svs_bytes, "a.svs")
    good = await slides.grant(slide["id"])
    grants = {
        "none": None,
        "expired": signed(grant_claims(slide["id"], exp=int(time.time()) - 60)),
        "altered": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        "wrong_type": signed(grant_claims(slide["id"], typ="access")),
        "wrong_key": signed(grant_claims(slide["id"]), key="x" * 40),
        "no_sid": signed({k: v for k, v in grant_claims(slide["id"]).items() if k != "sid"}),
    }
    params = {"grant": grants[case]} if grants[case] else {}
    for path in ("dzi", "tiles/11/0_0.jpeg"):
        response = await slides.client.get(f"/slides/{slide['id']}/{path}", params=params)
        assert response.status_code == 401, (case, path, response.text)
        code = "missing_token" if case == "none" else "invalid_view_grant"
        assert response.json()["error"]["code"] == code


async def test_without_a_tile_cache_every_tile_is_read_again(slides_db, tmp_path, svs_bytes):
    from tests.support.slide_service import running_slides

    async with running_slides(slides_db, tmp_path / "s", tile_cache_bytes=0) as service:
        slide = await service.slide(svs_bytes, "a.svs")
        url = f"/slides/{slide['id']}/tiles/10/1_1.jpeg"
        for _ in range(2):
            assert (await service.client.get(url, headers=service.viewer)).status_code == 200
        assert await service.metric("slide_tile_cache_misses_total") == 2
        assert await service.metric("slide_tile_cache_hits_total") == 0
