"""The inference service on the runtime its setting names: `auto` serves the fastest that
passed on the card and says so in /ready and /metrics, a runtime refused on the card answers
503 with the card's reason, registration converts a version that has no conversions, and an
activated version that cannot be served leaves the current one serving."""

import json
import logging
import re

from inference_service.serving.runtimes import choose_runtime
from ml.conversion import CONVERTED
from ml.runtimes import CONVERTED_FILES, LITERT, ONNXRUNTIME
from ml.versions import CARD_FILE, read_card
from tests.support.images import png_bytes
from tests.support.inference import copy_versions, running_inference
from tests.support.tokens import bearer, mint_token

REFUSAL = "P(malignant) differs from TensorFlow's by up to 0.002 on the parity images"


async def predict(client, seed: int = 0):
    return await client.post(
        "/predict",
        headers=bearer(mint_token("clinician")),
        files={"file": ("x.png", png_bytes(seed, 32), "image/png")},
    )


def edit_card(folder, change) -> None:
    card = json.loads((folder / CARD_FILE).read_text())
    change(card)
    (folder / CARD_FILE).write_text(json.dumps(card))


def refuse(runtime: str):
    def change(card):
        card["runtimes"][runtime].update(
            passed=False, file=None, sha256=None, max_abs_diff=0.002, refused_reason=REFUSAL
        )

    return change


async def test_auto_serves_the_fastest_passing_runtime_and_says_which(inference_db, models_dir):
    expected = choose_runtime(read_card(models_dir / "tiny-a"), "auto")
    async with running_inference(inference_db, models_dir) as (_, client):
        predicted = await predict(client)
        ready = (await client.get("/ready")).json()["checks"]["model"]["detail"]
        metrics = (await client.get("/metrics")).text
    assert predicted.status_code == 200, predicted.text
    assert ready == f"serving tiny-a on {expected}"
    assert f'inference_model_runtime_info{{runtime="{expected}",version="tiny-a"}} 1.0' in metrics


async def test_each_runtime_named_serves_the_same_answer(inference_db, models_dir):
    answers = {}
    for runtime in ("tensorflow", *CONVERTED):
        async with running_inference(inference_db, models_dir, runtime=runtime) as (_, client):
            response = await predict(client, seed=3)
            ready = (await client.get("/ready")).json()["checks"]["model"]["detail"]
        assert response.status_code == 200, response.text
        assert ready == f"serving tiny-a on {runtime}"
        answers[runtime] = response.json()
    reference = answers["tensorflow"]["probabilities"]
    for runtime in CONVERTED:
        for label, p in answers[runtime]["probabilities"].items():
            assert abs(p - reference[label]) <= 1e-4, runtime


async def test_a_runtime_named_but_refused_on_the_card_answers_503_with_the_reason(
    inference_db, models_dir
):
    edit_card(models_dir / "tiny-a", refuse(LITERT))
    async with running_inference(inference_db, models_dir, runtime=LITERT) as (_, client):
        ready = await client.get("/ready")
        first, second = await predict(client), await predict(client, 1)
    assert ready.status_code == 503
    assert ready.json()["checks"]["model"]["reason"] == (
        f"tiny-a active, but runtime litert refused: {REFUSAL}"
    )
    for response in (first, second):
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "runtime_refused"
        assert error["message"] == f"runtime litert refused: {REFUSAL}"


async def test_a_converted_file_changed_on_disk_is_refused_by_name_and_skipped_by_auto(
    inference_db, models_dir
):
    with (models_dir / "tiny-a" / CONVERTED_FILES[ONNXRUNTIME]).open("ab") as file:
        file.write(b"\0")

    def onnx_fastest(card):  # so that auto chooses it
        card["runtimes"][LITERT]["passed"] = False
        card["runtimes"][ONNXRUNTIME]["batch32_per_s"] = 1e9

    edit_card(models_dir / "tiny-a", onnx_fastest)
    async with running_inference(inference_db, models_dir, runtime=ONNXRUNTIME) as (_, client):
        named = await predict(client)
    async with running_inference(inference_db, models_dir) as (_, client):
        auto = await predict(client)
        ready = (await client.get("/ready")).json()["checks"]["model"]["detail"]
    assert named.status_code == 503
    assert (
        "runtime onnxruntime refused: model.onnx does not match the checksum"
        in (named.json()["error"]["message"])
    )
    assert auto.status_code == 200 and ready == "serving tiny-a on tensorflow"


async def test_registration_converts_a_version_without_conversions(
    inference_db, models_dir, trained_versions
):
    async with running_inference(inference_db, models_dir) as (_, client):
        copy_versions(trained_versions, models_dir, ["tiny-b"])
        folder = models_dir / "tiny-b"
        for file in CONVERTED_FILES.values():
            (folder / file).unlink()
        edit_card(folder, lambda card: card.pop("runtimes"))
        registered = await client.post(
            "/models", json={"path": "tiny-b"}, headers=bearer(mint_token("admin"))
        )
        detail = await client.get("/models/tiny-b", headers=bearer(mint_token("viewer")))
    assert registered.status_code == 201, registered.text
    runtimes = detail.json()["card"]["runtimes"]
    assert [runtimes[name]["passed"] for name in CONVERTED] == [True, True]
    assert read_card(folder).runtimes[LITERT].sha256 == runtimes[LITERT]["sha256"]
    assert all((folder / file).is_file() for file in CONVERTED_FILES.values())


async def test_an_activated_version_that_cannot_be_served_leaves_the_current_one_serving(
    inference_db, models_dir, trained_versions, caplog
):
    async with running_inference(inference_db, models_dir, runtime=ONNXRUNTIME) as (app, client):
        assert (await predict(client)).json()["model_version"] == "tiny-a"
        copy_versions(trained_versions, models_dir, ["tiny-b"])
        edit_card(models_dir / "tiny-b", refuse(ONNXRUNTIME))
        activated = await client.post(
            "/models",
            json={"path": "tiny-b", "activate": True},
            headers=bearer(mint_token("admin")),
        )
        assert activated.status_code == 201, activated.text
        # The service set up logging when it started: listen to its logger from here.
        logging.getLogger("inference_service.serving").addHandler(caplog.handler)
        try:
            await app.state.serving.holder.refresh()
        finally:
            logging.getLogger("inference_service.serving").removeHandler(caplog.handler)
        served = await predict(client)
        ready = (await client.get("/ready")).json()["checks"]["model"]["detail"]
    assert served.status_code == 200 and served.json()["model_version"] == "tiny-a"
    assert re.fullmatch(
        r"serving tiny-a on onnxruntime; active version tiny-b cannot be served: "
        r"runtime onnxruntime refused: P\(malignant\) differs .*",
        ready,
    )
    assert any("tiny-b is active but cannot be served" in r.getMessage() for r in caplog.records)
