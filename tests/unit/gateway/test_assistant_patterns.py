"""The assistant's patterns read what a clinician typed (and what a model answered): each
must take time linear in the text, and the text is processed off the event loop, so one
request cannot hold up the others."""

import asyncio
import re
import threading
import time
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from devstack.postgres import free_port
from gateway.assistant import grounding, prompt, service
from gateway.assistant.facts import Gathered
from gateway.assistant.offline import OfflineProvider
from gateway.assistant.prompt import Turn, build_prompt, redact
from gateway.assistant.providers import Exchange
from gateway.assistant.service import Assistant, TextProcessingTimeout
from gateway.main import create_app
from gateway.plumbing.downstream import Downstreams
from gateway.settings import GatewaySettings
from tests.unit.gateway.test_assistant import IDENTIFIERS, PREDICTION_ID, make_facts

BUDGET_S = 0.050  # per pattern and call, on 10,000 characters
LENGTH = 10_000
PATTERNS = {
    **{f"prompt.IDENTIFIER_PATTERNS[{i}]": p for i, p in enumerate(prompt.IDENTIFIER_PATTERNS)},
    "prompt.REDACTED_NUMBER": prompt.REDACTED_NUMBER,
    **{
        f"grounding.{name}": getattr(grounding, name)
        for name in (
            "PERCENTAGE",
            "FRACTION",
            "APPROXIMATE",
            "CLAIM",
            "NOT_A_FACT",
            "NOT_THE_ASSESSMENT",
            "CLASS_PROBABILITY",
        )
    },
}
# What the patterns are made of: the words that open a match, the runs they repeat over
# (spaces, digits, dots, letters), and what makes a match fail at the very end.
PIECES = (
    "case", "case no", "no", "no.", "nr.", "number", "#", ":", "patient", "MRN", "hospital",
    " ", "   ", "\t", "\n", "1", "12", "1961", "3", ".", "-", "/", "+", "@", "a", "a.", "x@y",
    "jan", "March", "3rd", ",", "[redacted]", "says", "image is", "assessed as", "P(benign)",
    "about", "0.9", "1.0", "%", "per cent", "or more", "benign", "malignant", "not",
)  # fmt: skip
RUNS = (" ", ".", "1", "a", "-", "1 ", "1.", "a.", "no ", "case no ", "says ", "\t")
# What a match opens with, right before a long run.
OPENERS = (
    "case", "case no", "patient", "Is the patient", "MRN", "no.", "hospital no", "record #",
    "jan", "3", "12 March", "x@y", "[redacted]", "says", "image is", "assessed as",
    "P(benign) is", "about", "0.9", "1.0",
)  # fmt: skip
ENDINGS = ("", "?", "x", "@", "!", "1", "a", ".", "%", " or more")


@st.composite
def adversarial_text(draw: st.DrawFn) -> str:
    """10,000 characters: a few pieces and an opener, then one run or a short mixed unit
    repeated to the length, then an ending that may make the match fail at the very end."""
    head = "".join(draw(st.lists(st.sampled_from(PIECES), max_size=4)))
    head += draw(st.sampled_from(OPENERS))
    unit = draw(
        st.one_of(
            st.sampled_from(RUNS),
            st.lists(st.sampled_from(PIECES + RUNS), min_size=1, max_size=4).map("".join),
        )
    )
    tail = draw(st.sampled_from(ENDINGS))
    size = LENGTH - len(head) - len(tail)
    return head + (unit * (size // len(unit) + 1))[:size] + tail


def fastest_s(call, times: int = 3) -> float:
    """The fastest of a few runs: a loaded machine only ever adds time, and a pattern that
    backtracks is slow every time."""
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("name", list(PATTERNS))
@settings(
    deadline=None,
    max_examples=30,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(text=adversarial_text())
# The shapes of the report, at full length, whatever the draw.
@example(text="Is the patient" + " " * (LENGTH - 15) + "?")
@example(text="case no" + " " * (LENGTH - 7))
@example(text="1." * (LENGTH // 2))
def test_every_pattern_on_user_text_is_linear(name: str, text: str) -> None:
    pattern: re.Pattern[str] = PATTERNS[name]
    assert len(text) == LENGTH
    took = fastest_s(lambda: pattern.sub("", text))
    assert took < BUDGET_S, f"{name} took {took * 1000:.0f} ms on {text[:40]!r}..."


ISSUE_QUESTION = "Is the patient" + " " * 985 + "?"  # 7.3 s on the event loop
ISSUE_TURN = "case no" + " " * 1493  # with the question: 44 s


@pytest.mark.parametrize("text", [ISSUE_QUESTION, ISSUE_TURN], ids=["question", "turn"])
def test_the_reported_inputs_are_redacted_at_once_and_left_as_they_were(text):
    assert fastest_s(lambda: redact(text, IDENTIFIERS)) < BUDGET_S
    assert redact(text, IDENTIFIERS) == text  # nothing in them identifies anyone


def test_the_reported_conversation_builds_its_prompt_at_once():
    facts = make_facts(0.873)
    history = [Turn("user", ISSUE_TURN), Turn("assistant", "It is malignant, 87.3 %.")]
    took = fastest_s(lambda: build_prompt(facts, ISSUE_QUESTION, history, IDENTIFIERS, 4000))
    assert took < BUDGET_S


DEAD = f"http://127.0.0.1:{free_port()}"


def slow_assistant(text_deadline_s: float) -> tuple[Assistant, Downstreams]:
    settings = GatewaySettings(_env_file=None, data_url=DEAD, retry_attempts=1)
    downstreams = Downstreams(settings, CollectorRegistry())
    assistant = Assistant(
        OfflineProvider(), downstreams, 4000, 5.0, CollectorRegistry(), text_deadline_s
    )
    return assistant, downstreams


def held_until(entered: threading.Event, release: threading.Event):
    """A stand-in that holds its thread, as a backtracking pattern would, until released."""

    def build_prompt_slowly(*args, **kwargs):
        entered.set()
        release.wait(timeout=600)
        raise AssertionError("the deadline should have been missed first")

    return build_prompt_slowly


async def test_a_slow_redaction_misses_its_deadline_without_stopping_the_gateway(monkeypatch):
    entered, release = threading.Event(), threading.Event()
    monkeypatch.setattr(service, "build_prompt", held_until(entered, release))
    assistant, downstreams = slow_assistant(text_deadline_s=0.5)
    app = create_app(
        GatewaySettings(_env_file=None, auth_url=DEAD, inference_url=DEAD, data_url=DEAD)
    )
    transport = httpx.ASGITransport(app=app)
    facts = make_facts(0.873)
    exchange = asyncio.create_task(
        assistant.exchange(uuid.UUID(PREDICTION_ID), Gathered(facts, ()), "Is the patient?", [], {})
    )
    try:
        assert await asyncio.to_thread(entered.wait, 120), "the redaction never started"
        # The redaction still holds its thread: an answer now means the event loop is free.
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            assert (await client.get("/health")).status_code == 200
        assert not release.is_set()
        with pytest.raises(TextProcessingTimeout) as missed:
            await exchange  # the deadline, while the redaction is still held
        assert missed.value.status_code == 503 and "identifiers" in missed.value.message
    finally:
        release.set()
        await downstreams.close()


async def test_an_answer_that_cannot_be_checked_in_time_is_not_used(monkeypatch, caplog):
    release = threading.Event()

    def check_slowly(*args):
        release.wait(timeout=600)  # held past the deadline, whatever the machine's speed
        return []

    monkeypatch.setattr(grounding, "problems", check_slowly)
    assistant, downstreams = slow_assistant(text_deadline_s=0.3)

    class Vendor(OfflineProvider):
        name = "openai"

    assistant.provider = Vendor()
    facts = make_facts(0.873)
    try:
        exchange = Exchange(build_prompt(facts, None, [], (), 4000), facts)
        _, reason = await assistant._answer(exchange)
    finally:
        release.set()
        await downstreams.close()
    assert reason == "provider_error"
    assert "not checked within 0.3 s" in caplog.text
