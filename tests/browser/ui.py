"""Moves a person makes in the app, in Playwright's terms, and what they see."""

from pathlib import Path

from playwright.sync_api import Browser, Page, expect

# Every wait on the page (actions and `expect`, whose own default is 5 s) has this deadline:
# a busy machine renders a Streamlit page in seconds, not milliseconds.
TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)


def open_app(browser: Browser, url: str) -> Page:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(url)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    return page


def sign_in(page: Page, email: str, password: str) -> None:
    page.get_by_role("textbox", name="Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def header(page: Page, text: str):
    return page.get_by_role("heading", name=text, exact=True)


def go(page: Page, link: str, heading: str) -> None:
    # The sidebar's links only: a page's own links ("Ask the assistant") share their words.
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=link).click()
    expect(header(page, heading)).to_be_visible()
    settle(page)


def settle(page: Page) -> None:
    """Wait until Streamlit has finished running the page script."""
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)


def metric(page: Page, label: str) -> str:
    box = page.get_by_test_id("stMetric").filter(has_text=label)
    return box.get_by_test_id("stMetricValue").inner_text().strip()


def assert_no_traceback(page: Page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)


def screenshot(page: Page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
