"""Each page component, run by Streamlit's AppTest against an in-memory gateway that speaks
the `/api/v1` contract (`fake_gateway.py`)."""

import json
import re
import uuid

import pytest
from streamlit.testing.v1 import AppTest

from frontend.components.system_status import NOT_ANSWERING
from tests.support.images import png_bytes
from tests.unit.frontend import fake_gateway
from tests.unit.frontend.fake_gateway import (
    NEAR_THRESHOLD,
    NO_TISSUE,
    OUT_OF_DISTRIBUTION,
    OUT_OF_FOCUS,
    TISSUE_PASSED,
    FakeGateway,
)


@pytest.fixture
def fake():
    fake_gateway.CURRENT = FakeGateway()
    yield fake_gateway.CURRENT
    drift, fake_gateway.CURRENT = fake_gateway.CURRENT.drift, None
    assert drift == []  # every answer the pages got, the real gateway could have given


def script(component: str, role: str | None) -> None:
    from tests.unit.frontend import fake_gateway

    fake_gateway.render(component, role)


def run(component: str, role: str | None = "clinician") -> AppTest:
    app = AppTest.from_function(script, args=(component, role), default_timeout=30)
    app.run()
    assert not app.exception, app.exception
    return app


def texts(app: AppTest) -> str:
    """Every text element's Markdown source, with its escapes resolved (as people read it)."""
    parts = [*app.markdown, *app.caption, *app.error, *app.warning, *app.info, *app.success]
    return re.sub(r"\\(.)", r"\1", "\n".join(str(e.value) for e in parts))


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


# -- Analyse ---------------------------------------------------------------------------------


def test_analyse_stores_each_image_for_the_patient_and_shows_its_result(fake):
    app = run("upload:render_analyse")
    assert app.button[0].disabled  # nothing to analyse yet
    app.file_uploader[0].set_value(
        [("a.png", png_bytes(1, 48), "image/png"), ("b.png", png_bytes(2, 48), "image/png")]
    )
    app.text_input[0].input("H-2026-0042")
    app.run()
    app.button[0].click().run()
    assert not app.exception
    assert [p["external_ref"] for p in fake.patients] == ["H-2026-0042"]
    assert len(fake.predictions) == 2
    assert all(p["patient_id"] == fake.patients[0]["id"] for p in fake.predictions)
    assert app.subheader[0].value == "Results (2 of 2 analysed)"
    assert texts(app).count("MALIGNANT") == 2
    assert "model **v1**" in texts(app)
    assert len(app.get("image")) == 4  # original and heatmap of each
    keys = {r.headers["idempotency-key"] for r in fake.calls("POST", "/api/v1/predictions")}
    assert len(keys) == 2

    app.button[0].click().run()  # the same uploads again: the gateway replays, no new rows
    assert len(fake.predictions) == 2 and len(fake.patients) == 1


def test_analyse_keeps_going_past_a_file_the_gateway_refuses(fake):
    app = run("upload:render_analyse")
    app.file_uploader[0].set_value(
        [("notes.png", b"plain text", "image/png"), ("ok.png", png_bytes(3, 48), "image/png")]
    )
    app.run()
    app.button[0].click().run()
    assert app.subheader[0].value == "Results (1 of 2 analysed)"
    assert "Could not analyse notes.png: The file is not a PNG, JPEG or TIFF image." in [
        e.value for e in app.error
    ]
    assert len(fake.predictions) == 1


def test_analyse_reuses_a_registered_patient(fake):
    existing = fake.add_patient("H-1")
    fake.add_patient("H-10")  # a prefix match that is not the patient
    app = run("upload:render_analyse")
    app.file_uploader[0].set_value([("a.png", png_bytes(1, 48), "image/png")])
    app.text_input[0].input("H-1")
    app.run()
    app.button[0].click().run()
    assert len(fake.patients) == 2
    assert fake.predictions[0]["patient_id"] == existing["id"]


NOT_ASSESSABLE = {
    "label": None,
    "assessment": "not_assessable",
    "checks": [NO_TISSUE, OUT_OF_FOCUS],
}
NO_TISSUE_SENTENCE = "No tissue found: 2 % of the image is tissue, at least 20 % is needed."
FOCUS_SENTENCE = "Out of focus: the tissue's sharpness measures 3.1, at least 10 is needed."


def analyse_one(fake: FakeGateway, **outcome) -> AppTest:
    fake.outcome = outcome
    app = run("upload:render_analyse")
    app.file_uploader[0].set_value([("a.png", png_bytes(1, 48), "image/png")])
    app.run()
    app.button[0].click().run()
    assert not app.exception, app.exception
    return app


def test_analyse_not_assessable_gives_no_verdict_and_says_why_with_the_measures(fake):
    app = analyse_one(fake, p=0.995, **NOT_ASSESSABLE)
    shown = texts(app)
    assert "NOT ASSESSABLE" in shown
    assert "This image could not be assessed: no verdict is given." in app.error[0].value
    assert NO_TISSUE_SENTENCE in shown and FOCUS_SENTENCE in shown
    assert "MALIGNANT" not in shown.upper().replace("P(MALIGNANT)", "")
    assert "BENIGN" not in shown.upper()
    assert "99" not in shown  # P(malignant) 0.995 is stored, never shown as a verdict
    assert not app.get("plotly_chart")  # no probability gauge
    assert fake.predictions[0]["probabilities"]["malignant"] == 0.995


def test_analyse_indeterminate_says_not_decided_and_only_leans(fake):
    app = analyse_one(
        fake,
        label="malignant",
        p=0.32,
        assessment="indeterminate",
        checks=[TISSUE_PASSED, OUT_OF_DISTRIBUTION, NEAR_THRESHOLD],
    )
    headlines = [m.value for m in app.markdown if m.value.startswith("###")]
    assert headlines == ["### :orange[**NOT DECIDED**]"]
    assert app.warning[0].value.startswith("The result is not decided")
    shown = texts(app)
    assert "Leaning towards :red[**MALIGNANT**]: not a verdict." in shown
    assert (
        "Unlike the images the model was trained on: its out-of-distribution score is 41.3, "
        "at most 25 is accepted." in shown
    )
    assert (
        "Too close to the decision threshold: P(malignant) is 2 percentage points from the "
        "threshold, at least 5 percentage points is needed." in shown
    )
    [gauge] = app.get("plotly_chart")
    assert '"color":"#78909c"' in gauge.proto.spec.replace(" ", "")  # a neutral bar, no verdict


def test_analyse_assessable_with_warnings_shows_the_verdict_and_the_warnings(fake):
    app = analyse_one(fake, label="malignant", p=0.9, checks=[TISSUE_PASSED, OUT_OF_FOCUS])
    headlines = [m.value for m in app.markdown if m.value.startswith("###")]
    assert headlines == ["### :red[**MALIGNANT**]"]
    assert (
        app.warning[0].value.replace("\\", "") == f"Assessed, with warnings:\n\n- {FOCUS_SENTENCE}"
    )
    assert len(app.get("plotly_chart")) == 1


def test_analyse_assessable_says_nothing_more_and_the_heatmap_makes_no_verdict(fake):
    app = analyse_one(fake, label="benign", p=0.1)
    assert not app.warning and not app.error
    assert "not recorded" not in texts(app)
    captions = [image.proto.imgs[0].caption for image in app.get("image")]
    assert any("it does not make a verdict" in caption for caption in captions), captions


def test_a_measure_name_from_the_gateway_is_shown_as_plain_text(fake):
    # Reasons are codes the gateway checks; a measure's name is any text, shown as text.
    hostile = NO_TISSUE | {"measure": "**bold** [click](https://evil.example)"}
    app = analyse_one(fake, label=None, assessment="not_assessable", checks=[hostile])
    assert "\\[click\\]\\(https\\://evil\\.example\\)" in app.error[0].value
    assert "\\*\\*bold\\*\\*" in app.error[0].value


# -- Patients and history --------------------------------------------------------------------


def test_history_finds_a_patient_and_opens_a_prediction(fake):
    patient = fake.add_patient("H-7")
    fake.add_patient("X-1")
    older = fake.add_prediction("benign", 0.1, patient["id"])
    fake.add_prediction("malignant", 0.8, patient["id"])
    app = run("history:render_history", "viewer")
    app.text_input[0].input("H-").run()
    assert app.selectbox[0].options == ["H-7"]
    assert app.subheader[0].value == "2 predictions for H-7"
    opened = app.selectbox(key="patient-open")
    assert len(opened.options) == 2
    opened.select_index(1).run()
    assert "BENIGN" in texts(app)
    assert any(r.url.path == f"/api/v1/predictions/{older['id']}/reviews" for r in fake.requests)


def test_history_names_each_assessment_and_shows_old_ones_as_not_recorded(fake):
    patient = fake.add_patient("H-5")
    old = fake.add_prediction("benign", 0.1, patient["id"], assessment=None)
    fake.add_prediction(patient_id=patient["id"], **NOT_ASSESSABLE)
    fake.add_prediction(
        "malignant", 0.34, patient["id"], "indeterminate", [TISSUE_PASSED, NEAR_THRESHOLD]
    )
    app = run("history:render_history", "viewer")
    app.text_input[0].input("H-5").run()
    [table] = [df.value for df in app.dataframe]
    assert table["assessment"].tolist() == ["indeterminate", "not assessable", "not recorded"]
    assert table["label"].tolist() == ["not decided, leaning malignant", "no verdict", "benign"]
    assert table["P(malignant)"].isna().tolist() == [False, True, False]
    opened = app.selectbox(key="patient-open")
    assert [option.split(" · ", 1)[1] for option in opened.options] == [
        "not decided, leaning malignant · P(malignant) 0.34",
        "no verdict",
        "benign · P(malignant) 0.10",
    ]
    assert "NOT DECIDED" in texts(app)  # the newest, opened
    opened.select_index(1).run()
    assert NO_TISSUE_SENTENCE in texts(app) and "NOT ASSESSABLE" in texts(app)
    app.selectbox(key="patient-open").set_value(old["id"]).run()
    assert "Assessability: not recorded" in texts(app) and "BENIGN" in texts(app)


def test_history_shows_review_comments_as_plain_text(fake):
    patient = fake.add_patient("H-9")
    prediction = fake.add_prediction("malignant", 0.9, patient["id"])
    fake.reviews.append(
        {
            "id": "0b9f2a56-8f0e-4c55-9d5e-2d6f3c1a7e41",
            "prediction_id": prediction["id"],
            "reviewer": fake.users["clinician@example.com"]["user"]["id"],
            "verdict": "agree",
            "corrected_label": None,
            "comment": "![pixel](https://tracker.example/p.png) **urgent**",
            "is_current": True,
            "created_at": prediction["created_at"],
        }
    )
    app = run("history:render_history", "viewer")
    source = "\n".join(m.value for m in app.markdown)
    assert "\\!\\[pixel\\]\\(https\\://tracker\\.example/p\\.png\\)" in source
    assert "\\*\\*urgent\\*\\*" in source


def test_history_says_when_nothing_matches(fake):
    app = run("history:render_history", "viewer")
    app.text_input[0].input("nobody").run()
    assert "No patient matches." in texts(app)


# -- Review queue ----------------------------------------------------------------------------


def test_review_agreeing_records_it_and_moves_on(fake):
    first = fake.add_prediction("benign", 0.2)
    second = fake.add_prediction("malignant", 0.9)
    app = run("review:render_review_queue")
    assert "2 waiting for review" in texts(app)
    app.text_area[0].input("Consistent with the slide.")
    next(b for b in app.button if b.label == "Submit review").click().run()
    assert not app.exception
    assert [(r["prediction_id"], r["verdict"], r["comment"]) for r in fake.reviews] == [
        (second["id"], "agree", "Consistent with the slide.")
    ]
    assert "Review recorded: agreement." in texts(app)
    assert "1 waiting for review" in texts(app)
    assert first["reviewed"] is False


def test_review_correcting_the_label_records_a_disagreement(fake):
    prediction = fake.add_prediction("malignant", 0.9)
    app = run("review:render_review_queue")
    app.radio[0].set_value("Correct the label").run()
    assert app.selectbox[0].value == "benign"
    next(b for b in app.button if b.label == "Submit review").click().run()
    assert [(r["verdict"], r["corrected_label"]) for r in fake.reviews] == [("disagree", "benign")]
    assert prediction["reviewed"] is True
    assert "Nothing left to review." in texts(app)


def test_review_refuses_a_correction_to_the_models_own_label(fake):
    fake.add_prediction("malignant", 0.9)
    app = run("review:render_review_queue")
    app.radio[0].set_value("Correct the label").run()
    app.selectbox[0].set_value("malignant").run()
    next(b for b in app.button if b.label == "Submit review").click().run()
    assert fake.reviews == []
    assert "choose “Agree with the model” instead" in app.warning[0].value


def test_review_skip_then_show_again(fake):
    fake.add_prediction("malignant", 0.9)
    app = run("review:render_review_queue")
    next(b for b in app.button if b.label == "Skip for now").click().run()
    assert "Nothing left to review." in texts(app)
    next(b for b in app.button if b.label == "Show the skipped ones again").click().run()
    assert "1 waiting for review" in texts(app)
    assert fake.reviews == []


def test_review_shows_why_a_prediction_is_first_in_the_queue(fake):
    fake.add_prediction("benign", 0.1)
    undecided = fake.add_prediction(
        "malignant", 0.34, assessment="indeterminate", checks=[TISSUE_PASSED, NEAR_THRESHOLD]
    )
    fake.add_prediction("malignant", 0.9)  # newer, but decided
    app = run("review:render_review_queue")
    sent = fake.calls("GET", "/api/v1/predictions")[-1].url.params
    assert (sent["order"], sent["reviewed_by_me"]) == ("review_priority", "false")
    badges = [m.value for m in app.markdown if "-badge[" in m.value]
    assert badges == [
        ":orange-badge[:material/priority_high: First in the queue: not decided by the model]"
    ]
    assert "NOT DECIDED" in texts(app)
    next(b for b in app.button if b.label == "Submit review").click().run()
    assert fake.reviews[0]["prediction_id"] == undecided["id"]
    assert not [m for m in app.markdown if "-badge[" in m.value]  # the next: the newest


def test_a_second_reviewer_sees_what_another_disputed_first_and_not_what_they_reviewed(fake):
    first_reader = fake.add_user("first.reader@example.com", "clinician")["id"]
    disputed = fake.add_prediction("malignant", 0.93)
    mine = fake.add_prediction("benign", 0.05)
    fake.add_prediction("malignant", 0.88)  # newer than the disputed one, but undisputed
    fake.reviews += [
        {
            "id": str(uuid.uuid4()),
            "prediction_id": disputed["id"],
            "reviewer": first_reader,
            "verdict": "disagree",
            "corrected_label": "benign",
            "comment": None,
            "is_current": True,
            "created_at": "2026-11-30T09:00:00+00:00",
        }
    ]
    disputed["reviewed"] = True
    me = fake.users["clinician@example.com"]["user"]["id"]
    fake.reviews.append(fake.reviews[0] | {"prediction_id": mine["id"], "reviewer": me})
    app = run("review:render_review_queue")
    assert "2 waiting for review" in texts(app)  # not the one this clinician reviewed
    badges = [m.value for m in app.markdown if "-badge[" in m.value]
    assert badges == [
        ":orange-badge[:material/priority_high: First in the queue: "
        "a reviewer disagreed with the model]"
    ]
    next(b for b in app.button if b.label == "Submit review").click().run()
    second = fake.reviews[-1]
    assert (second["prediction_id"], second["reviewer"]) == (disputed["id"], me)
    # The first reader's dispute stays current beside the second reading.
    assert fake.reviews[0]["is_current"]
    assert "1 waiting for review" in texts(app)


def test_review_badges_a_prediction_a_reviewer_disagreed_with():
    from frontend.components.review import priority_badges

    disagreed = [{"verdict": "disagree", "is_current": True}]
    replaced = [
        {"verdict": "disagree", "is_current": False},
        {"verdict": "agree", "is_current": True},
    ]
    assert priority_badges({"assessment": "assessable"}, disagreed) == [
        "A reviewer disagreed with the model"
    ]
    assert priority_badges({"assessment": "assessable"}, replaced) == []
    assert priority_badges({"assessment": None}, []) == []


def test_review_of_an_image_without_a_verdict_offers_both_labels(fake):
    prediction = fake.add_prediction(**NOT_ASSESSABLE)
    app = run("review:render_review_queue")
    assert "NOT ASSESSABLE" in texts(app)
    app.radio[0].set_value("Correct the label").run()
    assert app.selectbox[0].options == ["benign", "malignant"]
    app.selectbox[0].set_value("malignant").run()
    next(b for b in app.button if b.label == "Submit review").click().run()
    assert [(r["prediction_id"], r["corrected_label"]) for r in fake.reviews] == [
        (prediction["id"], "malignant")
    ]


def test_review_export_is_offered_to_admins_only(fake):
    prediction = fake.add_prediction("malignant", 0.9)
    fake.reviews.append(
        {"prediction_id": prediction["id"], "corrected_label": "benign", "is_current": True}
    )
    clinician = run("review:render_review_queue")
    assert "Prepare the export" not in [b.label for b in clinician.button]
    admin = run("review:render_review_queue", "admin")
    next(b for b in admin.button if b.label == "Prepare the export").click().run()
    assert fake.calls("GET", "/api/v1/exports/labels")
    assert "Download labels.csv (1 rows)" in [d.proto.label for d in admin.get("download_button")]


# -- Dashboard -------------------------------------------------------------------------------


def test_dashboard_shows_the_counts_and_agreement(fake):
    for label in ("malignant", "malignant", "benign"):
        fake.add_prediction(label, 0.9 if label == "malignant" else 0.1)
    fake.reviews += [
        {"prediction_id": "a", "verdict": "agree", "is_current": True},
        {"prediction_id": "b", "verdict": "disagree", "is_current": True},
    ]
    app = run("stats:render_dashboard", "viewer")
    shown = metrics(app)
    assert shown["Predictions"] == "3" and shown["Malignant"] == "2"
    assert shown["Clinician agreement"] == "50.0 %"
    assert shown["Mean model time"] == "12 ms" or shown["Mean model time"] == "13 ms"
    assert [s.value for s in app.subheader][:1] == ["Predictions by day and label"]
    sent = fake.calls("GET", "/api/v1/stats")[-1]
    assert "created_from" in sent.url.params  # the default period is the last 30 days
    app.selectbox[0].set_value("All time").run()
    assert "created_from" not in fake.calls("GET", "/api/v1/stats")[-1].url.params


def test_dashboard_counts_images_without_a_verdict_by_reason(fake):
    fake.add_prediction("benign", 0.1, assessment=None)  # stored before assessments
    fake.add_prediction(**NOT_ASSESSABLE)
    fake.add_prediction(label=None, assessment="not_assessable", checks=[NO_TISSUE])
    fake.add_prediction(
        "malignant", 0.34, assessment="indeterminate", checks=[TISSUE_PASSED, NEAR_THRESHOLD]
    )
    fake.add_prediction("malignant", 0.9)
    app = run("stats:render_dashboard", "viewer")
    shown = metrics(app)
    assert (shown["Not assessable"], shown["Indeterminate"]) == ("2", "1")
    assert (shown["Assessable"], shown["Not recorded"]) == ("1", "1")
    assert shown["Predictions"] == "5" and shown["Malignant"] == "2"
    [by_reason] = [c for c in app.get("plotly_chart") if "No tissue found" in c.proto.spec]
    spec = json.loads(by_reason.proto.spec)
    assert dict(zip(spec["data"][0]["x"], spec["data"][0]["y"], strict=True)) == {
        "No tissue found": 2,
        "Out of focus": 1,
        "Too close to the decision threshold": 1,
    }
    assert "1 predictions were made before images were checked" in texts(app)


def test_dashboard_with_the_data_service_down_says_so(fake):
    fake.down.add("/api/v1/stats")
    app = run("stats:render_dashboard", "viewer")
    assert app.error[0].value == ("Could not load the statistics: The data service is unavailable.")
    assert "Reference for support: request" in app.caption[0].value


# -- Models and data -------------------------------------------------------------------------


def test_models_page_shows_metrics_and_lets_an_admin_activate(fake):
    app = run("models:render_models", "admin")
    assert app.selectbox[0].value == "v1"  # the active one first
    assert "Activate v1" not in [b.label for b in app.button]
    app.selectbox[0].set_value("v2").run()
    activate = next(b for b in app.button if b.label == "Activate v2")
    assert activate.disabled  # confirmation first
    app.checkbox[0].check().run()
    next(b for b in app.button if b.label == "Activate v2").click().run()
    assert fake.models["v2"]["status"] == "active"
    assert "v2 is now active." in texts(app)


def test_models_page_offers_no_activation_to_a_clinician(fake):
    app = run("models:render_models", "clinician")
    app.selectbox[0].set_value("v2").run()
    assert not [b for b in app.button if b.label.startswith("Activate")]
    assert "Trained on synthetic images" in texts(app)


def test_models_page_shows_calibration_band_and_ood_threshold_or_not_recorded(fake):
    app = run("models:render_models", "viewer")
    shown = metrics(app)
    assert shown["Calibration error before"] == "0.081"
    assert shown["Calibration error after"] == "0.023"
    assert shown["Indeterminate band"] == "± 8.0 %"
    assert shown["Out-of-distribution threshold"] == "25.00"
    assert "temperature 1.734, 15 bins, chosen on the validation split" in texts(app)
    assert "wrong on 31.0 % of validation images inside it and 4.0 % outside" in texts(app)
    assert "mahalanobis distance of the penultimate layer's features" in texts(app)
    app.selectbox[0].set_value("v2").run()  # an older card
    older = metrics(app)
    assert {
        older[name]
        for name in (
            "Calibration error before",
            "Calibration error after",
            "Indeterminate band",
            "Out-of-distribution threshold",
        )
    } == {"not recorded"}
    assert "Not recorded means this version's card predates the measure" in texts(app)


def test_data_page_shows_the_training_runs_reports(fake):
    app = run("data:render_data", "viewer")
    shown = metrics(app)
    assert shown["Images"] == "1000" and shown["Patients"] == "40"
    assert shown["Skipped"] == "1" and shown["Files seen"] == "1003"
    assert shown["Malignant share"] == "36.0 %"
    skipped = [df.value for df in app.dataframe if "reason" in df.value.columns]
    assert skipped[0]["reason"].tolist() == ["cannot identify image file"]
    assert fake.calls("GET", "/api/v1/models/v1/figures/exploration/samples.png")


# -- Admin -----------------------------------------------------------------------------------


def test_admin_creates_a_user(fake):
    app = run("admin:render_admin", "admin")
    app.text_input[0].input("new.clinician@example.com")
    app.text_input[1].input("Dr New")
    app.text_input[2].input("a long unusual passphrase")
    next(b for b in app.button if b.label == "Create user").click().run()
    assert fake.users["new.clinician@example.com"]["user"]["role"] == "clinician"
    assert "Created new.clinician@example.com (clinician)." in texts(app)


def test_admin_sees_why_a_user_was_not_created(fake):
    app = run("admin:render_admin", "admin")
    app.text_input[0].input("weak@example.com")
    app.text_input[1].input("Dr Weak")
    app.text_input[2].input("short")
    next(b for b in app.button if b.label == "Create user").click().run()
    assert "weak@example.com" not in fake.users
    assert "The password must have at least 12 characters." in app.error[0].value


def test_admin_changes_a_role_and_deactivates(fake):
    app = run("admin:render_admin", "admin")
    app.selectbox(key="edit-user").set_value("viewer@example.com").run()
    app.selectbox[2].set_value("clinician")
    app.checkbox[0].uncheck()
    next(b for b in app.button if b.label == "Save changes").click().run()
    user = fake.users["viewer@example.com"]["user"]
    assert (user["role"], user["is_active"]) == ("clinician", False)
    patch = json.loads(fake.calls("PATCH", f"/api/v1/admin/users/{user['id']}")[0].content)
    assert patch == {"role": "clinician", "is_active": False}


# -- About -----------------------------------------------------------------------------------


def test_about_says_what_the_system_is_not_and_shows_the_model(fake):
    app = run("about:render_about", "viewer")
    assert "It is not a medical device and does not diagnose" in texts(app)
    assert "synthetic" in app.warning[0].value
    assert metrics(app)["Version"] == "v1"


def test_about_names_a_service_that_is_down(fake):
    fake.not_ready = {"data"}
    app = run("about:render_about", "viewer")
    assert app.warning[-1].value == "Not ready: data: down"
    shown = metrics(app)
    assert (shown["Data"], shown["Inference"]) == ("down", "ready")
    # The public answer has no reason to show: the page says where operators find it.
    assert NOT_ANSWERING in [c.value for c in app.caption]
    assert "" not in [c.value for c in app.caption]


def test_about_works_signed_out_and_with_the_gateway_down(fake):
    fake.down.add("/")
    app = run("about:render_about", None)
    assert "not a medical device" in texts(app)
    assert "Gateway unreachable" in app.error[0].value


# -- Assistant -------------------------------------------------------------------------------


def explained(fake: FakeGateway, prediction: dict) -> list[dict]:
    """The bodies of the explain requests the page sent about `prediction`, in order."""
    path = f"/api/v1/predictions/{prediction['id']}/explain"
    return [json.loads(r.content) for r in fake.calls("POST", path)]


def conversation(app: AppTest) -> list[tuple[str, str]]:
    """Each chat message's role and first paragraph, as people read it."""
    return [
        (m.name, re.sub(r"\\(.)", r"\1", m.markdown[0].value).split("\n\n")[0])
        for m in app.chat_message
    ]


def open_assistant(prediction_id: str | None = None, role: str = "clinician") -> AppTest:
    app = AppTest.from_function(script, args=("assistant:render_assistant", role))
    app.default_timeout = 30
    if prediction_id is not None:
        app.query_params["prediction"] = prediction_id
    app.run()
    assert not app.exception, app.exception
    return app


def ask(app: AppTest, question: str) -> AppTest:
    app.chat_input[0].set_value(question).run()
    assert not app.exception, app.exception
    return app


def navigation_titles(role: str) -> None:
    import streamlit as st

    from frontend.navigation import pages_for
    from tests.unit.frontend import fake_gateway

    client = fake_gateway.CURRENT.client(st.session_state)
    client.login(f"{role}@example.com", fake_gateway.PASSWORD)
    st.markdown(" | ".join(page.title for page in pages_for(client)))


def test_assistant_explains_the_newest_prediction_once_with_its_provider_and_caveat(fake):
    fake.add_prediction("benign", 0.1)
    newest = fake.add_prediction("malignant", 0.9)
    app = open_assistant()
    assert app.selectbox[0].value == newest["id"]
    assert app.selectbox[0].format_func(newest["id"]).endswith(" · malignant · P(malignant) 90.0 %")
    assert conversation(app) == [
        ("assistant", "The model assessed this image as malignant, with a probability of 90.0 %.")
    ]
    assert "Answered by the built-in offline assistant (templates)" in texts(app)
    assert app.info[0].value.replace("\\", "") == fake_gateway.CAVEAT
    assert "P(malignant) **90.0 %** · decision threshold P(malignant) 30.0 %" in texts(app)
    assert "Grad-CAM concentrates in the centre (focal, 18.0 % of the image)." in texts(app)
    assert len(app.get("image")) == 2  # the original and its overlay
    app.run()
    app.run()
    assert explained(fake, newest) == [{}]  # asked once, however often the page reruns


@pytest.mark.parametrize(
    ("provider", "model", "caption"),
    [
        ("openai", "gpt-5-mini", "Answered by OpenAI gpt-5-mini"),
        ("anthropic", "claude-haiku-4-5", "Answered by Anthropic claude-haiku-4-5"),
    ],
)
def test_assistant_names_the_language_model_that_answered(fake, provider, model, caption):
    fake.add_prediction("malignant", 0.9)
    fake.assistant = {"provider": provider, "model": model}
    app = open_assistant()
    assert caption in texts(app)
    assert not app.warning


def test_assistant_on_an_image_without_a_verdict_shows_no_probability(fake):
    prediction = fake.add_prediction(p=0.995, **NOT_ASSESSABLE)
    app = open_assistant()
    assert app.selectbox[0].format_func(prediction["id"]).endswith(" · no verdict")
    assert "NOT ASSESSABLE" in texts(app) and NO_TISSUE_SENTENCE in texts(app)
    assert "P(None)" not in texts(app) and "99" not in texts(app)
    assert conversation(app)[0][1].startswith("This image could not be assessed")


def test_assistant_sends_each_question_with_the_conversation_so_far(fake):
    prediction = fake.add_prediction("malignant", 0.9)
    app = ask(open_assistant(), "Why *this* label?")
    explanation = app.chat_message[0].markdown[0].value.replace("\\", "")
    next(b for b in app.button if b.label == "What does the decision threshold mean?").click()
    app.run()
    first, second, third = explained(fake, prediction)
    assert first == {}
    assert second == {
        "question": "Why *this* label?",
        "history": [{"role": "assistant", "content": explanation}],
    }
    assert third["question"] == "What does the decision threshold mean?"
    assert [(t["role"], t["content"].split("\n\n")[0]) for t in third["history"]] == [
        ("assistant", explanation.split("\n\n")[0]),
        ("user", "Why *this* label?"),
        ("assistant", "You asked: Why *this* label?"),
    ]
    assert conversation(app) == [
        ("assistant", "The model assessed this image as malignant, with a probability of 90.0 %."),
        ("user", "Why *this* label?"),
        ("assistant", "You asked: Why *this* label?"),
        ("user", "What does the decision threshold mean?"),
        ("assistant", "You asked: What does the decision threshold mean?"),
    ]
    assert "(3 turns before.)" in texts(app)


def test_assistant_starts_over_with_a_fresh_explanation(fake):
    prediction = fake.add_prediction("malignant", 0.9)
    app = ask(open_assistant(), "Where did the model look?")
    assert len(app.chat_message) == 3
    next(b for b in app.button if b.label == "Start over").click().run()
    assert [m.name for m in app.chat_message] == ["assistant"]
    bodies = explained(fake, prediction)
    assert [body.get("question") for body in bodies] == [None, "Where did the model look?", None]
    assert bodies[-1] == {}  # a fresh explanation, with no history


@pytest.mark.parametrize(
    ("reason", "because"),
    [
        ("contradicts_facts", "it contradicted the prediction's stored facts"),
        ("provider_error", "the provider failed to answer"),
    ],
)
def test_assistant_says_when_the_language_models_answer_was_replaced(fake, reason, because):
    fake.add_prediction("malignant", 0.9)
    fake.assistant_replaced = ("openai", reason)
    app = open_assistant()
    assert app.warning[0].value.replace("\\", "") == (
        f"The language model's answer (OpenAI) was replaced by the built-in one: {because}."
    )
    assert "Answered by the built-in offline assistant (templates)" in texts(app)


def test_assistant_failure_on_a_question_is_shown_and_the_conversation_kept(fake):
    prediction = fake.add_prediction("malignant", 0.9)
    app = open_assistant()
    fake.down.add(f"/api/v1/predictions/{prediction['id']}/explain")
    ask(app, "Is it borderline?")
    assert app.error[0].value == "Could not answer the question: The data service is unavailable."
    assert any(c.value.startswith("Reference for support: request ") for c in app.caption)
    assert [m.name for m in app.chat_message] == ["assistant", "user"]
    assert conversation(app)[1] == ("user", "Is it borderline?")
    app.run()  # the failure stays until the question is asked again
    assert app.error[0].value.startswith("Could not answer the question")

    fake.down.clear()
    next(b for b in app.button if b.label == "Ask again").click().run()
    assert not app.error
    assert conversation(app)[1:] == [
        ("user", "Is it borderline?"),
        ("assistant", "You asked: Is it borderline?"),
    ]
    assert len(explained(fake, prediction)[-1]["history"]) == 1  # not the failed question


def test_assistant_failure_of_the_explanation_can_be_asked_again(fake):
    prediction = fake.add_prediction("benign", 0.2)
    fake.down.add(f"/api/v1/predictions/{prediction['id']}/explain")
    app = open_assistant()
    assert app.error[0].value == "Could not explain it: The data service is unavailable."
    assert not app.chat_input  # nothing to follow up on yet
    app.run()
    assert len(fake.calls("POST", f"/api/v1/predictions/{prediction['id']}/explain")) == 1
    fake.down.clear()
    next(b for b in app.button if b.label == "Ask again").click().run()
    assert conversation(app) == [
        ("assistant", "The model assessed this image as benign, with a probability of 80.0 %.")
    ]


def test_assistant_rate_limit_says_when_to_ask_again(fake):
    fake.add_prediction("malignant", 0.9)
    app = open_assistant()
    fake.assistant_retry_after_s = 30
    ask(app, "And the heatmap?")
    assert "try again in 30 s" in app.error[0].value
    assert len(app.chat_message) == 2  # the explanation and the question, kept


def test_assistant_opens_on_the_prediction_its_link_names(fake):
    older = fake.add_prediction("benign", 0.2)
    fake.add_prediction("malignant", 0.9)
    app = open_assistant(older["id"])
    assert app.selectbox[0].value == older["id"]
    assert app.selectbox[0].index == 1  # still newest first
    assert explained(fake, older) == [{}]
    assert "as benign, with a probability of 80.0 %" in texts(app)


def test_assistant_fetches_a_linked_prediction_older_than_its_list(fake):
    oldest = fake.add_prediction("benign", 0.2)
    for _ in range(50):
        fake.add_prediction("malignant", 0.9)
    app = open_assistant(oldest["id"])
    assert fake.calls("GET", f"/api/v1/predictions/{oldest['id']}")
    assert app.selectbox[0].options[0] == app.selectbox[0].format_func(oldest["id"])
    assert app.selectbox[0].value == oldest["id"]


def test_assistant_choosing_another_prediction_follows_in_the_address(fake):
    older = fake.add_prediction("benign", 0.2)
    fake.add_prediction("malignant", 0.9)
    app = open_assistant()
    app.selectbox[0].set_value(older["id"]).run()
    assert app.query_params["prediction"] == older["id"]
    assert explained(fake, older) == [{}]
    assert conversation(app)[0][1].startswith("The model assessed this image as benign")


@pytest.mark.parametrize(
    ("link", "says"),
    [
        ("not-a-prediction", "“not-a-prediction” is not a prediction id"),
        ("00000000-0000-4000-8000-000000000000", "does not exist"),
    ],
)
def test_assistant_says_when_its_link_names_no_prediction(fake, link, says):
    newest = fake.add_prediction("malignant", 0.9)
    app = open_assistant(link)
    assert says in texts(app)
    assert app.selectbox[0].value == newest["id"]  # the newest one, to choose from


def test_assistant_with_no_predictions_says_so(fake):
    app = open_assistant()
    assert "No predictions yet" in app.info[0].value
    assert not [r for r in fake.requests if r.url.path.endswith("/explain")]
    assert not app.chat_input


def test_assistant_shows_what_people_and_models_wrote_as_plain_text(fake):
    fake.add_prediction("malignant", 0.9)
    fake.assistant_text = "**Benign** <img src=x onerror=alert(1)> [see](https://evil.example)"
    app = ask(open_assistant(), "![pixel](https://tracker.example/p.png) _why_?")
    source = "\n".join(m.value for m in app.markdown)
    assert "\\*\\*Benign\\*\\* \\<img src=x onerror=alert\\(1\\)\\>" in source
    assert "\\[see\\]\\(https\\://evil\\.example\\)" in source
    assert "\\!\\[pixel\\]\\(https\\://tracker\\.example/p\\.png\\) \\_why\\_?" in source


def test_assistant_is_a_page_for_clinicians_and_admins_only(fake):
    for role, sees in (("clinician", True), ("admin", True), ("viewer", False)):
        app = AppTest.from_function(navigation_titles, args=(role,), default_timeout=30).run()
        titles = app.markdown[0].value.split(" | ")
        assert ("Assistant" in titles) is sees, role
        if sees:
            assert titles[titles.index("Review queue") + 1] == "Assistant"


def test_a_result_links_to_the_assistant_for_clinicians_only(fake):
    from frontend.components import assistant
    from frontend.navigation import PAGES

    patient = fake.add_patient("H-3")
    prediction = fake.add_prediction("malignant", 0.9, patient["id"])
    entry = next(e for e in PAGES if e.render is assistant.render_assistant)
    assert (entry.url_path, entry.roles) == (assistant.URL_PATH, assistant.ROLES)
    clinician = run("history:render_history", "clinician")
    clinician.text_input[0].input("H-3").run()
    link = clinician.get("page_link")[0]
    assert link.value == "Ask the assistant"
    assert (link.proto.page, link.proto.query_string) == (
        "assistant",
        f"prediction={prediction['id']}",
    )
    viewer = run("history:render_history", "viewer")
    viewer.text_input[0].input("H-3").run()
    assert "BENIGN" not in texts(viewer) and "MALIGNANT" in texts(viewer)
    assert not viewer.get("page_link")


# -- Slides ----------------------------------------------------------------------------------


def component_args(app: AppTest, key: str) -> dict:
    """What the page handed a custom component (the browser-side piece) on its last run."""
    [element] = [e for e in app.get("component_instance") if e.key == key]
    return json.loads(element.proto.json_args)


def test_slides_upload_issues_a_one_time_ticket_for_the_patient_and_keeps_the_token_here(fake):
    from frontend.slide_relay import TICKETS

    app = run("slides:render_slides")
    assert "slide_upload" not in {e.key for e in app.get("component_instance")}
    app.text_input[0].input("H-2026-0100")
    app.number_input[0].set_value(0.25)
    app.button[0].click().run()  # "Choose the file"
    assert not app.exception
    [patient] = fake.patients
    assert patient["external_ref"] == "H-2026-0100"
    args = component_args(app, "slide_upload")
    assert args["mode"] == "upload"
    bearer = next(t for t, email in fake.access.items() if email == "clinician@example.com")
    assert bearer not in json.dumps(args)  # the browser gets a ticket, never the token
    ticket = TICKETS.spend(args["ticket"])
    assert (ticket.bearer, ticket.patient_id, ticket.microns_per_pixel) == (
        bearer,
        patient["id"],
        0.25,
    )

    app.run()  # every run replaces the session's ticket: the last one dies
    newer = component_args(app, "slide_upload")["ticket"]
    assert newer != args["ticket"]
    app.run()
    assert TICKETS.spend(newer) is None
    assert TICKETS.spend(component_args(app, "slide_upload")["ticket"]) is not None


def test_slides_upload_needs_a_patient_reference(fake):
    app = run("slides:render_slides")
    app.button[0].click().run()
    assert "Enter the patient reference first." in texts(app)
    assert fake.patients == []
    assert "slide_upload" not in {e.key for e in app.get("component_instance")}


def chosen_file_page(fake) -> AppTest:
    app = run("slides:render_slides")
    app.text_input[0].input("H-2026-0101")
    app.button[0].click().run()
    return app


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        (415, "not_a_slide", "To analyse a single image, use the Analyse page."),
        (415, "unsupported_slide_format", "This slide format cannot be read. Supported: Aperio"),
        (422, "corrupt_slide", "it may be damaged or only partly copied"),
        (413, "payload_too_large", "The file is larger than the system accepts."),
        (400, "upload_incomplete", "The upload stopped before the whole file arrived"),
        (422, "unsafe_archive", "The zip was refused"),
        (422, "invalid_filename", "rename the file"),
        (401, "invalid_upload_ticket", "The upload form had expired"),
    ],
)
def test_slides_upload_refusal_says_what_to_do(fake, status, code, says):
    app = chosen_file_page(fake)
    body = {"error": {"code": code, "message": "The API's own words.", "request_id": "req-7"}}
    app.session_state["slide_upload"] = {
        "nonce": "n1",
        "status": status,
        "body": body,
        "filename": "photo.png",
    }
    app.run()
    [error] = app.error
    assert error.value.startswith("photo\\.png was not stored: ")
    assert says in texts(app)
    # The API's sentence is added where it tells more (a limit, what is wrong in the file).
    detailed = code in ("payload_too_large", "corrupt_slide", "unsafe_archive")
    assert ("The API's own words." in texts(app)) is detailed
    assert "request req-7" in texts(app)
    assert "slide_open" not in app.session_state


def test_slides_upload_lost_connection_is_said(fake):
    app = chosen_file_page(fake)
    app.session_state["slide_upload"] = {"nonce": "n", "status": 0, "body": None, "filename": "a"}
    app.run()
    assert "The connection failed before the system answered" in texts(app)


def test_slides_a_stored_upload_opens_in_the_viewer(fake):
    app = chosen_file_page(fake)
    slide = fake.add_slide(fake.patients[0]["id"])
    app.session_state["slide_upload"] = {"nonce": "n2", "status": 201, "body": slide}
    app.run()
    assert not app.error
    assert component_args(app, "slide_viewer")["slide_id"] == slide["id"]
    assert app.subheader[-1].value == "Viewer: CMU\\-1\\-Small\\-Region\\.svs"


def test_slides_viewer_shows_the_metadata_and_gets_tiles_with_a_grant_for_that_slide(fake):
    patient = fake.add_patient("H-2026-0102")
    slide = fake.add_slide(patient["id"])
    app = run("slides:render_slides", role="viewer")
    assert "slide_upload" not in {e.key for e in app.get("component_instance")}  # read only
    assert len(app.get("image")) == 1  # the thumbnail
    assert "aperio · 2,220 x 2,967 px · 20x · 0.499 µm/px (from the file)" in texts(app)
    app.button[0].click().run()  # View
    assert not app.exception
    facts = texts(app)
    for fact in [
        "Vendor: **aperio**",
        "Dimensions: **2,220 x 2,967 px**",
        "Levels: **1**",
        "Objective: **20x**",
        "Resolution: **0.499 µm/px (from the file)**",
    ]:
        assert fact in facts.replace("\\", "")
    args = component_args(app, "slide_viewer")
    [link] = fake.view_links
    assert 290 < args.pop("renew_in_s") <= 300  # half the fake's 10 minutes
    assert isinstance(args.pop("open_nonce"), str)
    assert args == {
        "mode": "viewer",
        "slide_id": slide["id"],
        "grant": link["grant"],
        "mpp": 0.499,
        "height": 600,
        "default": None,
        "key": "slide_viewer",
        # No analysis of this slide: nothing over it.
        "analysis_id": None,
        "heatmap_opacity": 0.5,
        "show_mask": False,
        "focus": None,
    }
    app.run()  # the grant is reused while it is young: the browser's tile cache stays valid
    assert len(fake.view_links) == 1
    assert component_args(app, "slide_viewer")["grant"] == link["grant"]

    # Half its life gone (the viewer's timer reruns the page then): a fresh grant.
    grant, issued, expires = app.session_state["slide_view_grants"][slide["id"]]
    app.session_state["slide_view_grants"] = {slide["id"]: (grant, issued - 400, expires - 400)}
    app.session_state["slide_viewer"] = {"renew": 1}
    app.run()
    assert len(fake.view_links) == 2
    assert component_args(app, "slide_viewer")["grant"] == fake.view_links[1]["grant"]


def test_slides_without_a_resolution_have_no_scale_bar_and_say_so(fake):
    patient = fake.add_patient("H-2026-0103")
    fake.add_slide(patient["id"], filename="scan.tiff", mpp=None, objective_power=None)
    app = run("slides:render_slides", role="viewer")
    app.button[0].click().run()
    assert component_args(app, "slide_viewer")["mpp"] is None
    assert "Resolution unknown: this slide has no scale bar" in texts(app)
    assert "Objective: **unknown**" in texts(app).replace("\\", "")


def test_slides_list_pages_and_filters_by_patient(fake):
    first, second = fake.add_patient("H-A"), fake.add_patient("H-B")
    for n in range(12):
        fake.add_slide(first["id"], filename=f"a{n:02}.svs")
    fake.add_slide(second["id"], filename="b.svs")
    app = run("slides:render_slides", role="viewer")
    assert "Page 1 of 2 (13 slides)" in texts(app)
    assert texts(app).count(".svs**") == 10
    next(b for b in app.button if b.label == "Next").click().run()
    assert "Page 2 of 2 (13 slides)" in texts(app)
    assert texts(app).count(".svs**") == 3
    assert fake.calls("GET", "/api/v1/slides")[-1].url.params["offset"] == "10"

    app.text_input[0].input("H-B").run()
    assert "**b.svs**" in texts(app) and "a00" not in texts(app)
    assert fake.calls("GET", "/api/v1/slides")[-1].url.params["patient_id"] == second["id"]
    app.text_input[0].input("H-NOBODY").run()
    assert "No patient has that reference." in texts(app)


def test_slides_a_deleted_slide_closes_the_viewer_with_a_message(fake):
    patient = fake.add_patient("H-2026-0104")
    fake.add_slide(patient["id"])
    app = run("slides:render_slides", role="viewer")
    app.button[0].click().run()
    fake.slides.clear()
    app.run()
    assert "Could not open the slide: No such slide." in texts(app)
    assert "slide_open" not in app.session_state


def test_slides_is_a_page_for_every_role(fake):
    from frontend.navigation import PAGES

    [entry] = [p for p in PAGES if p.url_path == "slides"]
    assert entry.roles == {"admin", "clinician", "viewer"}


def test_slides_filter_finds_a_reference_that_prefixes_more_than_a_page_of_others(fake):
    for n in range(150):
        fake.add_patient(f"H-7{n:03}")
    exact = fake.add_patient("H-7")  # listed after every longer one
    fake.add_slide(exact["id"], filename="mine.svs")
    app = run("slides:render_slides", role="viewer")
    app.text_input[0].input("H-7").run()
    assert "No patient has that reference." not in texts(app)
    assert fake.calls("GET", "/api/v1/slides")[-1].url.params["patient_id"] == exact["id"]
    assert fake.calls("GET", "/api/v1/patients")[-1].url.params["offset"] == "100"


def test_slides_view_again_reopens_the_same_slide_in_the_viewer(fake):
    patient = fake.add_patient("H-2026-0105")
    fake.add_slide(patient["id"])
    app = run("slides:render_slides", role="viewer")
    app.button[0].click().run()
    first = component_args(app, "slide_viewer")["open_nonce"]
    app.run()  # a rerun alone is no reason to reopen
    assert component_args(app, "slide_viewer")["open_nonce"] == first
    app.button[0].click().run()  # View again, after the browser failed to open it, say
    assert component_args(app, "slide_viewer")["open_nonce"] not in (None, first)


def test_slides_a_stored_file_name_is_shown_as_typed(fake):
    app = chosen_file_page(fake)
    slide = fake.add_slide(fake.patients[0]["id"], filename="**bold**_[x](y).svs")
    app.session_state["slide_upload"] = {"nonce": "n3", "status": 201, "body": slide}
    app.run()
    [toast] = app.toast
    assert toast.value == r"Stored \*\*bold\*\*\_\[x\]\(y\)\.svs."


def test_slides_the_browser_limit_comes_from_the_settings(fake, monkeypatch):
    from frontend.config.settings import get_settings

    monkeypatch.setattr(get_settings(), "max_slide_bytes", 12345)
    app = chosen_file_page(fake)
    assert component_args(app, "slide_upload")["max_bytes"] == 12345


def test_signing_out_revokes_the_live_upload_ticket(fake):
    from frontend.slide_relay import TICKETS

    app = chosen_file_page(fake)
    ticket = component_args(app, "slide_upload")["ticket"]
    app = AppTest.from_function(script, args=("auth:render_account", "clinician"))
    app.session_state["slide_upload_ticket"] = ticket
    app.run()
    next(b for b in app.button if b.label == "Sign out").click().run()
    assert TICKETS.spend(ticket) is None


def test_slides_upload_finds_a_registered_reference_past_the_first_page(fake):
    for n in range(150):
        fake.add_patient(f"H-2026-0106{n:03}")
    exact = fake.add_patient("H-2026-0106")
    app = run("slides:render_slides")
    app.text_input[0].input("H-2026-0106")
    app.button[0].click().run()  # "Choose the file"
    assert not app.exception and not app.error
    assert len(fake.patients) == 151  # nobody registered twice
    from frontend.slide_relay import TICKETS

    assert TICKETS.spend(component_args(app, "slide_upload")["ticket"]).patient_id == exact["id"]
