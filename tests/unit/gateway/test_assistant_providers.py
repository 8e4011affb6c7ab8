"""Each language-model provider against a server on 127.0.0.1 that speaks its wire format:
the request it sends, the answer it parses, and its failures (retried or not)."""

import re
import time

import pytest

from gateway.assistant.facts import facts_from
from gateway.assistant.prompt import Turn, build_prompt
from gateway.assistant.providers import (
    AnthropicProvider,
    Exchange,
    OpenAIProvider,
    ProviderError,
    VendorSettings,
)
from tests.support.llm_server import (
    Reply,
    anthropic_error,
    anthropic_message,
    openai_completion,
    openai_error,
    scripted_llm_server,
)

KEY = "sk-test-0123456789"
PREDICTION = {
    "id": "p",
    "label": "malignant",
    "probability": 0.873,
    "probabilities": {"benign": 0.127, "malignant": 0.873},
    "threshold": 0.35,
    "model_version": "demo-synthetic-1",
    "heatmap_ref": None,
}
FACTS = facts_from(PREDICTION, [], None, "the registry could not be reached")
HISTORY = [Turn("user", "Explain this prediction to me."), Turn("assistant", "It is malignant.")]
EXCHANGE = Exchange(build_prompt(FACTS, "Why?", HISTORY, (), 4000), FACTS)


@pytest.fixture
def llm():
    with scripted_llm_server() as server:
        yield server


def vendor(model: str, base_url: str, **overrides) -> VendorSettings:
    settings = {"timeout_s": 5.0, "retries": 0, "max_output_tokens": 321, **overrides}
    return VendorSettings(api_key=KEY, model=model, base_url=base_url, **settings)


def openai(server, **overrides) -> OpenAIProvider:
    return OpenAIProvider(vendor("gpt-test", f"{server.url}/v1", **overrides))


def anthropic(server, **overrides) -> AnthropicProvider:
    return AnthropicProvider(vendor("claude-test", server.url, **overrides))


async def test_openai_request_format_and_answer(llm):
    llm.script(Reply(200, openai_completion("  It is malignant, 87.3 %.  ", model="gpt-test-1")))
    provider = openai(llm, reasoning_effort="low")
    try:
        completion = await provider.answer(EXCHANGE)
    finally:
        await provider.close()

    [request] = llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.body["model"] == "gpt-test"
    assert request.body["max_completion_tokens"] == 321
    assert request.body["reasoning_effort"] == "low"
    roles = [message["role"] for message in request.body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert request.body["messages"][0]["content"] == EXCHANGE.prompt.system
    assert request.body["messages"][-1] == {"role": "user", "content": "Why?"}
    assert (completion.text, completion.provider, completion.model) == (
        "It is malignant, 87.3 %.",
        "openai",
        "gpt-test-1",
    )
    assert (completion.input_tokens, completion.output_tokens) == (321, 42)


async def test_anthropic_request_format_and_answer(llm):
    answer = anthropic_message("It is malignant, 87.3 %.", model="claude-test-1")
    answer["content"].insert(0, {"type": "thinking", "thinking": "...", "signature": "s"})
    llm.script(Reply(200, answer))
    provider = anthropic(llm)
    try:
        completion = await provider.answer(EXCHANGE)
    finally:
        await provider.close()

    [request] = llm.requests
    assert request.path == "/v1/messages"
    # The client's releases have sent the key as `x-api-key` and as a bearer token.
    assert request.headers.get("x-api-key") == KEY or (
        request.headers.get("authorization") == f"Bearer {KEY}"
    )
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", request.headers["anthropic-version"])
    assert request.body["model"] == "claude-test"
    assert request.body["max_tokens"] == 321
    assert "reasoning_effort" not in request.body
    assert request.body["system"] == EXCHANGE.prompt.system
    assert [m["role"] for m in request.body["messages"]] == ["user", "assistant", "user"]
    assert request.body["messages"][-1] == {"role": "user", "content": "Why?"}
    assert (completion.text, completion.provider, completion.model) == (
        "It is malignant, 87.3 %.",
        "anthropic",
        "claude-test-1",
    )
    assert (completion.input_tokens, completion.output_tokens) == (321, 42)


VENDORS = [
    (openai, openai_completion, openai_error),
    (anthropic, anthropic_message, anthropic_error),
]


@pytest.mark.parametrize(("make", "ok", "error"), VENDORS, ids=["openai", "anthropic"])
async def test_a_server_error_or_rate_limit_is_retried(llm, make, ok, error):
    llm.script(
        Reply(500, error("overloaded")),
        Reply(429, error("slow down"), headers={"retry-after": "0"}),
        Reply(200, ok("It is malignant, 87.3 %.")),
    )
    provider = make(llm, retries=2)
    try:
        completion = await provider.answer(EXCHANGE)
    finally:
        await provider.close()
    assert completion.text == "It is malignant, 87.3 %."
    assert len(llm.requests) == 3


@pytest.mark.parametrize(("make", "ok", "error"), VENDORS, ids=["openai", "anthropic"])
async def test_a_refused_key_is_not_retried_and_never_shown(llm, make, ok, error):
    llm.script(Reply(401, error("invalid x-api-key", "authentication_error")))
    provider = make(llm, retries=3)
    try:
        with pytest.raises(ProviderError) as raised:
            await provider.answer(EXCHANGE)
    finally:
        await provider.close()
    assert raised.value.reason == "http_401"
    assert KEY not in str(raised.value)
    assert len(llm.requests) == 1


@pytest.mark.parametrize(("make", "ok", "error"), VENDORS, ids=["openai", "anthropic"])
async def test_a_slow_provider_times_out(llm, make, ok, error):
    llm.script(Reply(200, ok("late"), delay_s=2.0))
    provider = make(llm, timeout_s=0.3, retries=0)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as raised:
            await provider.answer(EXCHANGE)
    finally:
        await provider.close()
    assert raised.value.reason == "timeout"
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(("make", "ok", "error"), VENDORS, ids=["openai", "anthropic"])
async def test_an_empty_answer_is_no_answer(llm, make, ok, error):
    llm.script(Reply(200, ok("   ")))
    provider = make(llm)
    try:
        with pytest.raises(ProviderError, match="empty_answer"):
            await provider.answer(EXCHANGE)
    finally:
        await provider.close()


@pytest.mark.parametrize(("make", "ok", "error"), VENDORS, ids=["openai", "anthropic"])
async def test_an_unreachable_provider_is_a_provider_error(make, ok, error):
    with scripted_llm_server() as server:
        provider = make(server)
    # The server is gone: nothing listens on its port any more.
    try:
        with pytest.raises(ProviderError, match="unreachable"):
            await provider.answer(EXCHANGE)
    finally:
        await provider.close()


async def test_a_model_without_reasoning_is_not_sent_the_effort(llm):
    llm.script(Reply(200, openai_completion("It is malignant, 87.3 %.")))
    provider = openai(llm)
    try:
        await provider.answer(EXCHANGE)
    finally:
        await provider.close()
    assert "reasoning_effort" not in llm.requests[0].body


@pytest.mark.parametrize(
    ("make", "cut_off"),
    [
        (openai, openai_completion("It is malig", finish_reason="length")),
        (anthropic, anthropic_message("It is malig", stop_reason="max_tokens")),
    ],
    ids=["openai", "anthropic"],
)
async def test_an_answer_cut_off_by_the_token_budget_is_not_used(llm, make, cut_off):
    llm.script(Reply(200, cut_off))
    provider = make(llm)
    try:
        with pytest.raises(ProviderError, match="truncated_answer"):
            await provider.answer(EXCHANGE)
    finally:
        await provider.close()
