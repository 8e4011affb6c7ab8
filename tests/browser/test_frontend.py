"""The clinicians' app in a real browser against the real stack: sign in, analyse, review,
the dashboard, the assistant, users, every page, what happens when a service is down, and
an image that is not tissue getting no verdict."""

import re
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD
from tests.browser.images import blank_glass_png, tissue_png
from tests.browser.ui import (
    assert_no_traceback,
    go,
    header,
    metric,
    open_app,
    screenshot,
    settle,
    sign_in,
)
from tests.support.launcher import RESTART_TIMEOUT_S, get, wait_for
from tests.support.tokens import bearer

pytestmark = pytest.mark.timeout(900)
# Synthetic tissue gets a verdict, or is not decided when the model is not sure enough.
LABEL = re.compile(r"^(BENIGN|MALIGNANT|NOT DECIDED)$")
VERDICT = re.compile(r"^(BENIGN|MALIGNANT)$")
NO_TISSUE = re.compile(
    r"No tissue found: [\d.]+ % of the image is tissue, at least [\d.]+ % is needed\."
)
# The Assistant's summary of the chosen prediction: "P(benign) 61.2 % · decision threshold …"
SUMMARY = re.compile(r"P\((benign|malignant)\) ([\d.]+ %) · decision threshold")


def analyse(page, image_path, reference: str) -> None:
    page.locator('input[type="file"]').set_input_files(str(image_path))
    page.get_by_role("textbox", name="Patient reference (optional)").fill(reference)
    page.get_by_role("button", name="Analyse").click()
    expect(page.get_by_text("Results (1 of 1 analysed)")).to_be_visible()
    settle(page)


def new_clinician(browser, stack, new_user):
    """A page signed in as a new clinician, on their start page (Analyse)."""
    page = open_app(browser, stack.url("frontend"))
    sign_in(page, new_user("clinician"), PASSWORD)
    expect(header(page, "Analyse images")).to_be_visible()
    return page


def wait_for_images(page, count: int) -> None:
    """`count` images on the page, every one of them loaded and decoded by the browser."""
    expect(page.get_by_test_id("stImage").locator("img")).to_have_count(count)
    page.wait_for_function(
        """n => {
            const images = [...document.querySelectorAll('[data-testid="stImage"] img')];
            return images.length === n && images.every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=count,
    )


def test_a_wrong_password_shows_a_message(browser, stack, admin_credentials, screenshots_dir):
    page = open_app(browser, stack.url("frontend"))
    screenshot(page, screenshots_dir, "01-sign-in")
    sign_in(page, admin_credentials[0], "not the password at all")
    expect(page.get_by_text("Wrong email or password.")).to_be_visible()
    expect(page.get_by_role("link", name="Dashboard")).to_have_count(0)
    assert_no_traceback(page)
    screenshot(page, screenshots_dir, "02-sign-in-wrong-password")


def test_a_clinician_analyses_reviews_and_sees_the_dashboard_change(
    browser, stack, new_user, screenshots_dir, tmp_path
):
    page = new_clinician(browser, stack, new_user)
    go(page, "Dashboard", "Dashboard")
    predictions_before = int(metric(page, "Predictions"))
    assert metric(page, "Clinician agreement") == "—"

    go(page, "Analyse", "Analyse images")
    image = tmp_path / "slide.png"
    image.write_bytes(tissue_png(31))
    analyse(page, image, f"H-{uuid.uuid4().hex[:8]}")
    expect(page.get_by_role("heading", name=LABEL)).to_be_visible()
    expect(page.get_by_text("Grad-CAM: the regions that drove the score")).to_be_visible()
    wait_for_images(page, 2)  # the original and the overlay
    expect(page.locator(".js-plotly-plot")).to_have_count(1)  # the probability gauge
    assert_no_traceback(page)
    screenshot(page, screenshots_dir, "03-analyse")

    go(page, "Review queue", "Review queue")
    expect(page.get_by_text("1 waiting for review")).to_be_visible()
    page.get_by_role("textbox", name="Comment (optional)").fill("Consistent with the slide.")
    screenshot(page, screenshots_dir, "04-review")
    page.get_by_role("button", name="Submit review").click()
    expect(page.get_by_text("Review recorded: agreement.")).to_be_visible()
    expect(page.get_by_text("Nothing left to review.")).to_be_visible()

    go(page, "Dashboard", "Dashboard")
    assert int(metric(page, "Predictions")) == predictions_before + 1
    assert metric(page, "Clinician agreement") == "100.0 %"
    expect(header(page, "Predictions by day and label")).to_be_visible()
    assert_no_traceback(page)
    screenshot(page, screenshots_dir, "05-dashboard")


def test_a_clinician_asks_the_assistant_about_a_result(
    browser, stack, new_user, screenshots_dir, tmp_path
):
    """The stack has no language model's key: the gateway's built-in assistant answers."""
    page = new_clinician(browser, stack, new_user)
    image = tmp_path / "slide.png"
    image.write_bytes(tissue_png(53))
    analyse(page, image, f"H-{uuid.uuid4().hex[:8]}")
    page.get_by_role("link", name="Ask the assistant").click()
    expect(header(page, "Assistant")).to_be_visible()
    settle(page)

    summary = page.get_by_test_id("stCaptionContainer").filter(has_text=SUMMARY)
    found = SUMMARY.search(summary.inner_text())
    assert found, summary.inner_text()
    label, probability = found.groups()
    messages = page.get_by_test_id("stChatMessage")
    expect(messages).to_have_count(1)
    expect(messages.first).to_contain_text(
        f"The model assessed this image as {label}, with a probability of {probability}"
    )
    expect(messages.first).to_contain_text("Answered by the built-in offline assistant (templates)")
    expect(page.get_by_test_id("stAlert").filter(has_text="does not diagnose")).to_be_visible()
    wait_for_images(page, 2)  # the original and the overlay
    assert_no_traceback(page)
    screenshot(page, screenshots_dir, "12-assistant")

    page.get_by_test_id("stChatInputTextArea").fill("What does the decision threshold mean?")
    page.keyboard.press("Enter")
    expect(messages).to_have_count(3)
    expect(messages.nth(1)).to_contain_text("What does the decision threshold mean?")
    expect(messages.nth(2)).to_contain_text("Decision threshold: the model says malignant")
    settle(page)
    expect(messages.nth(0)).to_contain_text(probability)  # the explanation is still there
    expect(messages.nth(2)).to_contain_text("Answered by the built-in offline assistant")
    messages.nth(2).hover()
    page.mouse.wheel(0, 10_000)  # to the end of the conversation, above the chat input
    assert_no_traceback(page)
    screenshot(page, screenshots_dir, "13-assistant-follow-up")


def test_an_image_without_tissue_gets_no_verdict_and_the_dashboard_counts_it(
    browser, stack, new_user, screenshots_dir, tmp_path
):
    page = new_clinician(browser, stack, new_user)
    go(page, "Dashboard", "Dashboard")
    # The first prediction of the stack may come from this test: no counts until then.
    counted_before = (
        int(metric(page, "Not assessable"))
        if page.get_by_test_id("stMetric").filter(has_text="Not assessable").count()
        else 0
    )

    go(page, "Analyse", "Analyse images")
    image = tmp_path / "glass.png"
    image.write_bytes(blank_glass_png())
    analyse(page, image, f"H-{uuid.uuid4().hex[:8]}")
    expect(page.get_by_role("heading", name="NOT ASSESSABLE")).to_be_visible()
    expect(
        page.get_by_text("This image could not be assessed: no verdict is given.")
    ).to_be_visible()
    expect(page.get_by_text(NO_TISSUE)).to_be_visible()
    expect(page.get_by_role("heading", name=VERDICT)).to_have_count(0)
    expect(page.get_by_text("Leaning towards")).to_have_count(0)
    expect(page.locator(".js-plotly-plot")).to_have_count(0)  # no probability gauge
    assert_no_traceback(page)
    screenshot(page, screenshots_dir, "14-analyse-not-assessable")

    go(page, "Dashboard", "Dashboard")
    expect(header(page, "Assessability")).to_be_visible()
    assert int(metric(page, "Not assessable")) == counted_before + 1
    assert_no_traceback(page)
    screenshot(page, screenshots_dir, "15-dashboard-assessability")


def test_an_admin_creates_a_user_who_can_then_sign_in(
    browser, stack, admin_credentials, screenshots_dir
):
    page = open_app(browser, stack.url("frontend"))
    sign_in(page, *admin_credentials)
    go(page, "Users", "Users")
    email = f"viewer-{uuid.uuid4().hex[:8]}@example.com"
    page.get_by_role("textbox", name="Email").fill(email)
    page.get_by_role("textbox", name="Full name").fill("Dr Viewer")
    page.get_by_test_id("stSelectbox").filter(has_text="Role").first.click()
    page.get_by_role("option", name="viewer").click()
    page.get_by_label("Initial password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_text(f"Created {email} (viewer).")).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_contain_text(email)
    assert_no_traceback(page)
    screenshot(page, screenshots_dir, "06-users")

    newcomer = open_app(browser, stack.url("frontend"))
    sign_in(newcomer, email, PASSWORD)
    expect(header(newcomer, "Patients and history")).to_be_visible()  # a viewer's first page
    expect(newcomer.get_by_role("link", name="Analyse")).to_have_count(0)
    expect(newcomer.get_by_role("link", name="Users")).to_have_count(0)


def test_every_page_renders_for_an_admin(browser, stack, admin_credentials, screenshots_dir):
    reference = f"P-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=stack.url("gateway"), timeout=60) as api:
        token = api.post(
            "/api/v1/auth/token",
            data={"username": admin_credentials[0], "password": admin_credentials[1]},
        ).json()["access_token"]
        auth = bearer(token)
        patient = api.post("/api/v1/patients", json={"external_ref": reference}, headers=auth)
        stored = api.post(
            "/api/v1/predictions",
            files={"file": ("slide.png", tissue_png(77, 80), "image/png")},
            data={"patient_id": patient.json()["id"]},
            headers=auth,
        )
        assert stored.status_code == 201, stored.text

    page = open_app(browser, stack.url("frontend"))
    sign_in(page, *admin_credentials)
    expect(header(page, "Analyse images")).to_be_visible()

    go(page, "Patients & history", "Patients and history")
    page.get_by_role("textbox", name="Search patients by reference").fill(reference)
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"1 predictions for {reference}")).to_be_visible()
    expect(page.get_by_text("Grad-CAM: the regions that drove the score")).to_be_visible()
    wait_for_images(page, 2)
    assert_no_traceback(page)
    screenshot(page, screenshots_dir, "07-history")

    go(page, "Assistant", "Assistant")
    expect(page.get_by_test_id("stChatMessage")).to_contain_text("The model assessed this image")
    expect(page.get_by_text("Answered by the built-in offline assistant")).to_be_visible()
    assert_no_traceback(page)

    go(page, "Models", "Models")
    expect(header(page, "Confusion matrix")).to_be_visible()
    expect(header(page, "ROC curve")).to_be_visible()
    # The page's own warning; the card's JSON, also on the page, words it differently.
    expect(page.get_by_text("Trained on synthetic images: a demonstration model")).to_be_visible()
    header(page, "Training history").scroll_into_view_if_needed()  # charts draw when seen
    expect(page.locator(".js-plotly-plot")).to_have_count(3)  # matrix, ROC, training history
    assert_no_traceback(page)
    screenshot(page, screenshots_dir, "08-models")

    go(page, "Data", "Training data")
    for section in (
        "Class balance",
        "Images per patient",
        "Colour statistics",
        "Samples per class",
    ):
        expect(header(page, section)).to_be_visible()
    expect(page.get_by_text("None: every file was readable.")).to_be_visible()
    wait_for_images(page, 1)  # the sample grid
    assert_no_traceback(page)
    screenshot(page, screenshots_dir, "09-data")

    go(page, "About", "About this system")
    expect(page.get_by_text("It is not a medical device and does not diagnose")).to_be_visible()
    expect(page.get_by_text("All services are ready.")).to_be_visible()
    assert_no_traceback(page)
    screenshot(page, screenshots_dir, "10-about")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_the_browser_only_ever_talks_to_the_frontend(browser, stack, admin_credentials):
    """What lets the app work behind a tunnel: every request of the page goes to the origin
    it was loaded from, and no address of the services behind it reaches the browser."""
    page = open_app(browser, stack.url("frontend"))
    origins: set[str] = set()
    page.on("request", lambda request: origins.add(urlsplit(request.url).netloc))
    page.on("websocket", lambda socket: origins.add(urlsplit(socket.url).netloc))
    page.reload()
    sign_in(page, *admin_credentials)
    go(page, "Dashboard", "Dashboard")
    go(page, "Models", "Models")
    assert origins == {urlsplit(stack.url("frontend")).netloc}
    content = page.content()
    for name in ("gateway", "auth", "inference", "data", "slides"):
        assert f":{stack.ports[name]}" not in content, name


def test_a_stopped_service_is_a_message_and_the_app_stays_usable(
    browser, stack, admin_credentials, screenshots_dir
):
    page = open_app(browser, stack.url("frontend"))
    sign_in(page, *admin_credentials)
    expect(header(page, "Analyse images")).to_be_visible()
    stopped = stack.supervisorctl("stop", "data")
    assert "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    try:
        go(page, "Dashboard", "Dashboard")
        expect(page.get_by_text("Could not load the statistics:")).to_be_visible()
        expect(page.get_by_text("Reference for support: request")).to_be_visible()
        assert_no_traceback(page)
        screenshot(page, screenshots_dir, "11-dashboard-data-down")
        go(page, "Models", "Models")  # served by another service: still works
        expect(header(page, "Confusion matrix")).to_be_visible()
        go(page, "About", "About this system")
        expect(
            page.get_by_text("Some services are not ready.").or_(
                page.get_by_text(re.compile("Not ready"))
            )
        ).to_be_visible()
        assert_no_traceback(page)
    finally:
        started = stack.supervisorctl("start", "data")
    assert "started" in started.stdout, started.stdout + started.stderr
    wait_for(
        lambda: (r := get(f"{stack.url('gateway')}/ready")) is not None and r.status_code == 200,
        RESTART_TIMEOUT_S,
        "the gateway's /ready to answer 200 after the data service restarted",
    )
    go(page, "Dashboard", "Dashboard")
    expect(page.get_by_test_id("stMetric").filter(has_text="Predictions")).to_be_visible()
