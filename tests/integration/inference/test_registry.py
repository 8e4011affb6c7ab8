"""The model registry: registration checks, activation, and every replica following it
without a failed request."""

import asyncio
import json
import shutil

from tests.support.images import png_bytes
from tests.support.inference import copy_versions, running_inference
from tests.support.tokens import bearer, mint_token


async def predict(client, seed: int = 0):
    return await client.post(
        "/predict",
        headers=bearer(mint_token("clinician")),
        files={"file": ("x.png", png_bytes(seed, 32), "image/png")},
    )


async def test_the_newest_version_on_disk_is_activated_when_none_is(inference_db, models_dir):
    async with running_inference(inference_db, models_dir) as (_, client):
        listed = (await client.get("/models", headers=bearer(mint_token("viewer")))).json()
        detail = await client.get("/models/tiny-a", headers=bearer(mint_token("viewer")))
    assert [(v["version"], v["status"], v["activated_by"]) for v in listed] == [
        ("tiny-a", "active", "system")
    ]
    body = detail.json()
    assert body["card"]["version"] == "tiny-a" and body["input_shape"] == [32, 32, 3]
    assert {"preprocessing", "evaluation", "exploration", "training_history"} <= set(
        body["reports"]
    )
    assert body["reports"]["preprocessing"]["files_kept"] == 100
    assert {"exploration/samples.png", "evaluation-test/roc_curve.png"} <= set(body["figures"])


async def test_report_figures_are_served_and_nothing_outside_them(inference_db, models_dir):
    viewer = bearer(mint_token("viewer"))
    async with running_inference(inference_db, models_dir) as (_, client):
        figure = await client.get("/models/tiny-a/figures/exploration/samples.png", headers=viewer)
        outside = [
            await client.get(f"/models/tiny-a/figures/{path}", headers=viewer)
            for path in (
                "../model_card.json",
                "..%2Fmodel.keras",
                "preprocessing.json",
                "exploration/missing.png",
                "%2Fetc%2Fpasswd",
            )
        ]
        unknown_version = await client.get("/models/nope/figures/x.png", headers=viewer)
        anonymous = await client.get("/models/tiny-a/figures/exploration/samples.png")
    assert figure.status_code == 200 and figure.headers["content-type"] == "image/png"
    assert figure.content.startswith(b"\x89PNG")
    assert [r.status_code for r in outside] == [404] * 5
    assert outside[2].json()["error"]["code"] == "figure_not_found"
    assert unknown_version.status_code == 404 and anonymous.status_code == 401


async def test_registration_refuses_bad_folders_and_keeps_the_active_model(
    inference_db, models_dir, trained_versions
):
    async with running_inference(inference_db, models_dir) as (_, client):
        # Folders that arrive after start, as an ML engineer would copy them in.
        copy_versions(trained_versions, models_dir, ["tiny-b"])
        tampered = models_dir / "tampered"
        shutil.copytree(models_dir / "tiny-b", tampered)
        card = json.loads((tampered / "model_card.json").read_text())
        (tampered / "model_card.json").write_text(json.dumps({**card, "version": "tampered"}))
        with (tampered / "model.keras").open("ab") as file:
            file.write(b"\0")
        incomplete = models_dir / "incomplete"
        shutil.copytree(models_dir / "tiny-b", incomplete)
        card.pop("decision_threshold")
        (incomplete / "model_card.json").write_text(json.dumps({**card, "version": "incomplete"}))
        cases = {
            "tampered": (422, "checksum"),
            "incomplete": (422, "decision_threshold"),
            "../..": (422, "inside the models folder"),
            "/etc": (422, "inside the models folder"),
            "missing": (422, "No folder"),
        }
        for path, (status, fragment) in cases.items():
            response = await client.post(
                "/models",
                json={"path": path, "activate": True},
                headers=bearer(mint_token("admin")),
            )
            assert response.status_code == status, (path, response.text)
            assert fragment in response.json()["error"]["message"], path
        forbidden = await client.post(
            "/models", json={"path": "tiny-b"}, headers=bearer(mint_token("clinician"))
        )
        assert forbidden.status_code == 403
        ok = await client.post(
            "/models", json={"path": "tiny-b"}, headers=bearer(mint_token("admin"))
        )
        assert ok.status_code == 201 and ok.json()["status"] == "registered"
        again = await client.post(
            "/models", json={"path": "tiny-b"}, headers=bearer(mint_token("admin"))
        )
        assert again.status_code == 409
        missing = await client.post("/models/nope/activate", headers=bearer(mint_token("admin")))
        assert missing.status_code == 404
        listed = (await client.get("/models", headers=bearer(mint_token("admin")))).json()
        assert {v["version"]: v["status"] for v in listed} == {
            "tiny-a": "active",
            "tiny-b": "registered",
        }
        assert (await predict(client)).json()["model_version"] == "tiny-a"


async def test_activation_switches_the_served_version_without_a_failed_request(
    inference_db, models_dir, trained_versions
):
    async with (
        running_inference(inference_db, models_dir, registry_poll_s=0.2) as (_, client),
        running_inference(inference_db, models_dir, registry_poll_s=0.2) as (_, replica),
    ):
        assert (await predict(client)).json()["model_version"] == "tiny-a"
        assert (await predict(replica)).json()["model_version"] == "tiny-a"
        copy_versions(trained_versions, models_dir, ["tiny-b"])
        registered = await client.post(
            "/models", json={"path": "tiny-b"}, headers=bearer(mint_token("admin"))
        )
        assert registered.status_code == 201

        seen: list[tuple[int, str]] = []
        stop = asyncio.Event()

        async def stream(target):
            seed = 0
            while not stop.is_set():
                response = await predict(target, seed)
                seed += 1
                body = response.json()
                seen.append((response.status_code, body.get("model_version", body)))

        streams = [asyncio.create_task(stream(c)) for c in (client, client, replica, replica)]
        await asyncio.sleep(0.5)
        activated = await client.post(
            "/models/tiny-b/activate", headers=bearer(mint_token("admin"))
        )
        assert activated.status_code == 200 and activated.json()["status"] == "active"
        for _ in range(100):  # both replicas follow within a few seconds
            await asyncio.sleep(0.1)
            recent = [version for _, version in seen[-8:]]
            if len(recent) == 8 and set(recent) == {"tiny-b"}:
                break
        stop.set()
        await asyncio.gather(*streams)

    assert all(status == 200 for status, _ in seen), [s for s in seen if s[0] != 200][:3]
    versions = [version for _, version in seen]
    assert versions[0] == "tiny-a" and set(versions[-8:]) == {"tiny-b"}
    assert len(seen) > 20
    listed_states = await _states(inference_db)
    assert listed_states == {"tiny-a": "archived", "tiny-b": "active"}


async def _states(database_url):
    from tests.support.sql import fetch_async

    rows = await fetch_async(database_url, "SELECT version, status FROM model_versions")
    return {row["version"]: row["status"] for row in rows}
