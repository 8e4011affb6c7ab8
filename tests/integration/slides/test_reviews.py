"""Reviews of slide analyses against a migrated database: a succeeded analysis with regions
and top tiles is written directly (no worker), then reviewed region by region and as a whole,
queued for review until it has a slide review, and exported as a `folders` training set."""

import io
import uuid
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from ml.datasets import read_dataset
from slide_service.analyses.models import Analysis, Region, RegionTile
from slide_service.reviews import service as reviews
from slide_service.slides.models import Slide
from tests.support.sql import fetch_async


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    return buffer.getvalue()


async def insert_analysis(
    harness,
    status: str = "succeeded",
    regions: int = 2,
    tiles: int = 2,
    finished_at: datetime | None = None,
    slide_id: str | None = None,
) -> dict:
    """A slide (unless given), an analysis of it, and its regions with top tiles."""
    async with harness.app.state.database.sessions() as session:
        if slide_id is None:
            slide = Slide(
                id=uuid.uuid4(),
                patient_id=uuid.uuid4(),
                filename="case.svs",
                format="aperio",
                sha256="0" * 64,
                content_path="x/slide.svs",
                width=4000,
                height=3000,
                level_count=1,
                levels=[{"width": 4000, "height": 3000, "downsample": 1.0}],
                microns_per_pixel_x=0.5,
                microns_per_pixel_y=0.5,
                resolution_source="file",
                objective_power=20,
                associated_images=[],
                size_bytes=1,
                uploaded_by=uuid.uuid4(),
            )
            session.add(slide)
            await session.flush()
            slide_id = slide.id
        analysis = Analysis(
            id=uuid.uuid4(),
            slide_id=uuid.UUID(str(slide_id)),
            requested_by=uuid.uuid4(),
            status=status,
            skipped={},
            tiles_done=10,
            rate_base=0,
            attempts=1,
            model_version="v1",
            threshold=0.5,
            finished_at=(finished_at or datetime.now(UTC)) if status == "succeeded" else None,
        )
        session.add(analysis)
        await session.flush()
        region_ids = []
        for rank in range(1, regions + 1):
            region = Region(
                id=uuid.uuid4(),
                analysis_id=analysis.id,
                rank=rank,
                area_mm2=0.1,
                peak_probability=0.9 - rank / 100,
                mean_probability=0.7,
                tile_count=3,
                bounds={"x": 0, "y": 0, "width": 448, "height": 448},
                geometry={"type": "Polygon", "coordinates": [[[0, 0], [448, 0], [0, 0]]]},
            )
            session.add(region)
            await session.flush()
            region_ids.append(region.id)
            for tile in range(1, tiles + 1):
                session.add(
                    RegionTile(
                        region_id=region.id,
                        rank=tile,
                        x=tile * 224,
                        y=0,
                        size=224,
                        probability=0.8,
                        image_png=png((rank * 40, tile * 40, 0)),
                        gradcam_png=b"not the tile",
                    )
                )
        highest = (
            {"id": str(region_ids[0]), "rank": 1, "peak_probability": 0.89} if region_ids else None
        )
        analysis.summary = {
            "tumour_area_fraction": 0.25 if region_ids else 0.0,
            "highest_region": highest,
            "regions": regions,
        }
        await session.commit()
    return {"id": str(analysis.id), "slide_id": str(slide_id), "regions": region_ids}


def url(analysis: dict, region: int | None = None) -> str:
    if region is None:
        return f"/analyses/{analysis['id']}/review"
    return f"/analyses/{analysis['id']}/regions/{analysis['regions'][region]}/review"


async def test_a_region_review_is_stored_audited_and_shown_with_the_region(slides, slides_db):
    analysis = await insert_analysis(slides)
    answer = await slides.client.post(
        url(analysis, 0),
        json={"verdict": "correct", "corrected_label": "benign", "comment": "stroma"},
        headers=slides.clinician,
    )
    assert answer.status_code == 201, answer.text
    review = answer.json()
    assert review["verdict"] == "correct"
    assert review["corrected_label"] == "benign"
    assert review["reviewer"] == slides.clinician_id
    assert review["region_id"] == str(analysis["regions"][0])
    assert review["region_rank"] == 1

    regions = (
        await slides.client.get(f"/analyses/{analysis['id']}/regions", headers=slides.viewer)
    ).json()
    assert regions[0]["review"]["id"] == review["id"]
    assert regions[1]["review"] is None

    [event] = await fetch_async(
        slides_db, "SELECT actor, action, resource_type, resource_id, details FROM audit_events"
    )
    assert str(event["actor"]) == slides.clinician_id
    assert (event["action"], event["resource_type"]) == ("region.review", "region")
    assert event["resource_id"] == str(analysis["regions"][0])
    assert '"corrected_label": "benign"' in event["details"]


@pytest.mark.parametrize(
    "body",
    [
        {"verdict": "correct"},
        {"verdict": "agree", "corrected_label": "malignant"},
        {"verdict": "dismiss", "corrected_label": "benign"},
        {"verdict": "correct", "corrected_label": "maybe"},
        {"verdict": "great"},
        {"verdict": "agree", "comment": "x" * 2001},
        {"verdict": "agree", "extra": 1},
        {},
    ],
)
async def test_a_bad_region_review_is_a_422_and_stores_nothing(slides, slides_db, body):
    analysis = await insert_analysis(slides, regions=1)
    answer = await slides.client.post(url(analysis, 0), json=body, headers=slides.clinician)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"
    assert await fetch_async(slides_db, "SELECT 1 FROM region_reviews") == []
    assert await fetch_async(slides_db, "SELECT 1 FROM audit_events") == []


async def test_reviews_need_a_succeeded_analysis_and_a_region_of_it(slides, slides_db):
    running = await insert_analysis(slides, status="running")
    other = await insert_analysis(slides)
    done = await insert_analysis(slides)
    agree = {"verdict": "agree"}
    cases = [
        (url(running, 0), agree, 409, "analysis_not_finished"),
        (url(running), {"verdict": "benign"}, 409, "analysis_not_finished"),
        (f"/analyses/{uuid.uuid4()}/regions/{uuid.uuid4()}/review", agree, 404, None),
        (f"/analyses/{uuid.uuid4()}/review", {"verdict": "benign"}, 404, "analysis_not_found"),
        (f"/analyses/{done['id']}/regions/{other['regions'][0]}/review", agree, 404, None),
        (f"/analyses/{done['id']}/regions/{uuid.uuid4()}/review", agree, 404, None),
        (f"/analyses/{done['id']}/regions/not-a-uuid/review", agree, 422, None),
        (url(done), {"verdict": "agree"}, 422, "validation_error"),
        (url(done), {"verdict": "benign", "comment": "x" * 2001}, 422, "validation_error"),
    ]
    for path, body, status, code in cases:
        answer = await slides.client.post(path, json=body, headers=slides.clinician)
        assert answer.status_code == status, (path, answer.text)
        if code:
            assert answer.json()["error"]["code"] == code
    assert await fetch_async(slides_db, "SELECT 1 FROM audit_events") == []
    missing = await slides.client.get(f"/analyses/{uuid.uuid4()}/reviews", headers=slides.viewer)
    assert missing.status_code == 404


async def test_who_may_review_read_reviews_and_export(slides):
    analysis = await insert_analysis(slides, regions=1)
    viewer, clinician, admin = slides.viewer, slides.clinician, slides.admin
    for headers, expected in (({}, 401), (viewer, 403), (clinician, 201), (admin, 201)):
        region = await slides.client.post(
            url(analysis, 0), json={"verdict": "agree"}, headers=headers
        )
        whole = await slides.client.post(url(analysis), json={"verdict": "benign"}, headers=headers)
        assert (region.status_code, whole.status_code) == (expected, expected), region.text
    for headers, expected in (({}, 401), (viewer, 200)):
        for path in (f"/analyses/{analysis['id']}/reviews", "/analyses/review-queue"):
            assert (await slides.client.get(path, headers=headers)).status_code == expected
    for headers, expected in (({}, 401), (viewer, 403), (clinician, 403), (admin, 200)):
        answer = await slides.client.get("/exports/region-tiles.zip", headers=headers)
        assert answer.status_code == expected


async def test_the_reviews_of_an_analysis_are_listed_newest_first(slides, slides_db):
    analysis = await insert_analysis(slides)
    client, clinician = slides.client, slides.clinician
    first = await client.post(url(analysis), json={"verdict": "indeterminate"}, headers=clinician)
    second = await client.post(
        url(analysis), json={"verdict": "malignant", "comment": "DCIS"}, headers=slides.admin
    )
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["analysis_id"] == analysis["id"]
    assert second.json()["comment"] == "DCIS"
    await client.post(url(analysis, 1), json={"verdict": "dismiss"}, headers=clinician)
    listed = (await client.get(f"/analyses/{analysis['id']}/reviews", headers=slides.viewer)).json()
    assert [r["verdict"] for r in listed["slide_reviews"]] == ["malignant", "indeterminate"]
    assert [(r["verdict"], r["region_rank"]) for r in listed["region_reviews"]] == [("dismiss", 2)]
    actions = await fetch_async(
        slides_db, "SELECT action, resource_id FROM audit_events ORDER BY id"
    )
    assert [(a["action"], a["resource_id"]) for a in actions] == [
        ("slide.review", analysis["id"]),
        ("slide.review", analysis["id"]),
        ("region.review", str(analysis["regions"][1])),
    ]


async def test_the_review_queue_holds_unreviewed_succeeded_analyses_oldest_first(slides):
    now = datetime.now(UTC)
    newer = await insert_analysis(slides, finished_at=now - timedelta(hours=1))
    older = await insert_analysis(slides, finished_at=now - timedelta(hours=5))
    await insert_analysis(slides, status="running")
    await insert_analysis(slides, status="failed")
    empty = await insert_analysis(slides, regions=0, finished_at=now)
    client = slides.client

    page = (await client.get("/analyses/review-queue", headers=slides.viewer)).json()
    assert [i["analysis_id"] for i in page["items"]] == [older["id"], newer["id"], empty["id"]]
    assert page["total"] == 3
    first = page["items"][0]
    assert first["slide_id"] == older["slide_id"]
    assert first["filename"] == "case.svs"
    assert first["tumour_area_fraction"] == 0.25
    assert first["highest_region"]["id"] == str(older["regions"][0])
    assert page["items"][2]["highest_region"] is None

    second = await client.get(
        "/analyses/review-queue", params={"limit": 1, "offset": 1}, headers=slides.viewer
    )
    assert second.json()["items"][0]["analysis_id"] == newer["id"]
    assert (second.json()["limit"], second.json()["offset"]) == (1, 1)
    too_many = await client.get(
        "/analyses/review-queue", params={"limit": 1000}, headers=slides.viewer
    )
    assert too_many.status_code == 422

    # A region review does not take it off the queue; a slide review does.
    await client.post(url(older, 0), json={"verdict": "agree"}, headers=slides.clinician)
    assert (await client.get("/analyses/review-queue", headers=slides.viewer)).json()["total"] == 3
    await client.post(url(older), json={"verdict": "malignant"}, headers=slides.clinician)
    page = (await client.get("/analyses/review-queue", headers=slides.viewer)).json()
    assert [i["analysis_id"] for i in page["items"]] == [newer["id"], empty["id"]]


async def test_the_export_is_a_folders_dataset_of_the_reviewed_top_tiles(slides, tmp_path):
    client, clinician = slides.client, slides.clinician
    now = datetime.now(UTC)
    first = await insert_analysis(slides, regions=4, finished_at=now - timedelta(hours=2))
    # A second analysis of the same slide: its names must not overwrite the first one's.
    again = await insert_analysis(slides, regions=1, finished_at=now, slide_id=first["slide_id"])
    unreviewed = await insert_analysis(slides)

    async def review(analysis: dict, region: int, body: dict) -> None:
        answer = await client.post(url(analysis, region), json=body, headers=clinician)
        assert answer.status_code == 201, answer.text

    await review(first, 0, {"verdict": "agree"})
    await review(first, 1, {"verdict": "correct", "corrected_label": "benign"})
    await review(first, 2, {"verdict": "dismiss"})
    # The newest review of a region decides: dismissed, then agreed; agreed, then dismissed.
    await review(first, 3, {"verdict": "agree"})
    await review(first, 3, {"verdict": "dismiss"})
    await review(again, 0, {"verdict": "dismiss"})
    await review(again, 0, {"verdict": "agree"})

    answer = await client.get("/exports/region-tiles.zip", headers=slides.admin)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    assert "region-tiles.zip" in answer.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    prefix = uuid.UUID(first["slide_id"]).hex[:8]
    names = sorted(archive.namelist())
    assert names == sorted(
        [
            f"malignant/{prefix}_1_1.png",
            f"malignant/{prefix}_1_2.png",
            f"malignant/{prefix}_1_1_{uuid.UUID(first['id']).hex[:8]}.png",
            f"malignant/{prefix}_1_2_{uuid.UUID(first['id']).hex[:8]}.png",
            f"benign/{prefix}_2_1.png",
            f"benign/{prefix}_2_2.png",
        ]
    )
    assert unreviewed["slide_id"][:8] not in "".join(names)
    # The tile itself, not its Grad-CAM.
    assert archive.read(f"benign/{prefix}_2_1.png") == png((80, 40, 0))

    archive.extractall(tmp_path / "set")
    samples, layout = read_dataset(tmp_path / "set", "folders")
    assert layout == "folders"
    assert sorted(s.label for s in samples) == [0, 0, 1, 1, 1, 1]
    assert {s.group for s in samples} == {prefix}


async def test_an_export_past_its_bound_is_refused(slides, monkeypatch):
    analysis = await insert_analysis(slides, regions=1)
    await slides.client.post(url(analysis, 0), json={"verdict": "agree"}, headers=slides.clinician)
    monkeypatch.setattr(reviews, "MAX_EXPORT_BYTES", 10)
    answer = await slides.client.get("/exports/region-tiles.zip", headers=slides.admin)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "export_too_large"


async def test_an_empty_export_is_an_empty_zip(slides):
    answer = await slides.client.get("/exports/region-tiles.zip", headers=slides.admin)
    assert answer.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(answer.content)).namelist() == []


def test_export_names_put_the_slide_first():
    slide_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert reviews.export_name(slide_id, 3, 2) == "12345678_3_2.png"
