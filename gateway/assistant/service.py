"""One exchange with the assistant: facts, prompt, the provider's answer checked against
the facts (or the offline one instead), and its audit event."""

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter
from pydantic import SecretStr

from common.errors import ServiceError
from gateway.assistant import grounding
from gateway.assistant.facts import Gathered
from gateway.assistant.offline import OfflineProvider
from gateway.assistant.prompt import Prompt, Turn, build_prompt
from gateway.assistant.providers import (
    AnthropicProvider,
    Completion,
    Exchange,
    OpenAIProvider,
    Provider,
    ProviderError,
    VendorSettings,
)
from gateway.plumbing.downstream import Downstreams
from gateway.plumbing.proxy import raise_for_answer
from gateway.settings import GatewaySettings

logger = logging.getLogger("gateway.assistant")
# How long redacting what the clinician typed, or checking a model's answer against the facts,
# may take. Both run in a worker thread so that the event loop keeps answering other requests
# meanwhile; on linear patterns they take milliseconds, so missing this means something is
# wrong, not that the machine is busy. A thread cannot be stopped: one that misses it runs on
# in the background, and its result is dropped.
TEXT_DEADLINE_S = 3.0
T = TypeVar("T")


class TextProcessingTimeout(ServiceError):
    def __init__(self, deadline_s: float) -> None:
        super().__init__(
            503,
            f"The assistant could not remove identifiers from the question and conversation "
            f"within {deadline_s:g} s; try again with a shorter question or fewer turns.",
            code="service_unavailable",
        )


@dataclass(frozen=True)
class Reply:
    completion: Completion
    prompt: Prompt
    latency_ms: float
    replaced_reason: str | None  # why the provider's answer was not used
    attempted_provider: str | None  # the provider whose answer was replaced
    audit_event_id: int


def provider_from_settings(settings: GatewaySettings) -> Provider:
    choice = settings.assistant_choice()
    vendors: dict[str, tuple[type[OpenAIProvider | AnthropicProvider], SecretStr | None, str, str]]
    vendors = {
        "openai": (
            OpenAIProvider,
            settings.openai_api_key,
            settings.openai_model,
            settings.openai_base_url,
        ),
        "anthropic": (
            AnthropicProvider,
            settings.anthropic_api_key,
            settings.anthropic_model,
            settings.anthropic_base_url,
        ),
    }
    if choice not in vendors:
        return OfflineProvider()
    provider_class, key, model, base_url = vendors[choice]
    assert key is not None  # assistant_choice() picks a vendor only with its key
    return provider_class(
        VendorSettings(
            api_key=key.get_secret_value(),
            model=model,
            base_url=base_url,
            timeout_s=settings.assistant_timeout_s,
            retries=settings.assistant_retries,
            max_output_tokens=settings.assistant_max_output_tokens,
            reasoning_effort=(settings.openai_reasoning_effort or None)
            if choice == "openai"
            else None,
        )
    )


class Assistant:
    """`app.state.assistant`: the configured provider, the offline one, the recorder."""

    def __init__(
        self,
        provider: Provider,
        downstreams: Downstreams,
        max_input_tokens: int,
        deadline_s: float,
        registry: CollectorRegistry,
        text_deadline_s: float = TEXT_DEADLINE_S,
    ) -> None:
        self.provider = provider
        self.deadline_s = deadline_s
        self.text_deadline_s = text_deadline_s
        self.offline = OfflineProvider()
        self.downstreams = downstreams
        self.max_input_tokens = max_input_tokens
        self.answers = Counter(
            "gateway_assistant_answers",
            "Assistant answers by the provider that produced them and why one was replaced.",
            ["provider", "replaced_reason"],
            registry=registry,
        )

    async def exchange(
        self,
        prediction_id: uuid.UUID,
        gathered: Gathered,
        question: str | None,
        history: list[Turn],
        headers: dict[str, str],
    ) -> Reply:
        try:
            prompt = await self._off_the_loop(
                build_prompt,
                gathered.facts,
                question,
                history,
                gathered.identifiers,
                self.max_input_tokens,
            )
        except TimeoutError:
            logger.warning("assistant prompt not redacted within %g s", self.text_deadline_s)
            raise TextProcessingTimeout(self.text_deadline_s) from None
        exchange = Exchange(prompt, gathered.facts)
        started = time.perf_counter()
        completion, reason = await self._answer(exchange)
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        attempted = self.provider.name if reason else None
        if reason:
            # The vendor's tokens were spent all the same: the event keeps them.
            completion = dataclasses.replace(
                await self.offline.answer(exchange),
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
            )
        self.answers.labels(completion.provider, reason or "").inc()
        event_id = await self._record(
            prediction_id, prompt, completion, latency_ms, reason, attempted, headers
        )
        return Reply(completion, prompt, latency_ms, reason, attempted, event_id)

    async def _answer(self, exchange: Exchange) -> tuple[Completion, str | None]:
        """The provider's answer, or the reason it cannot be used."""
        provider = self.provider
        try:
            async with asyncio.timeout(self.deadline_s):
                completion = await provider.answer(exchange)
        except Exception as exc:  # any failure, even an answer the client cannot parse
            why = (
                exc.reason
                if isinstance(exc, ProviderError)
                else "missed the deadline"
                if isinstance(exc, TimeoutError)
                else type(exc).__name__
            )
            logger.warning("assistant provider %s failed: %s", provider.name, why)
            return Completion("", provider.name, provider.model), "provider_error"
        if provider.name == self.offline.name:
            return completion, None
        try:
            found = await self._off_the_loop(
                grounding.problems, completion.text, exchange.facts, exchange.question
            )
        except TimeoutError:
            # An answer that cannot be checked is not used.
            logger.warning(
                "assistant answer from %s not checked within %g s",
                provider.name,
                self.text_deadline_s,
            )
            return completion, "provider_error"
        if found:
            # What was wrong, with at most a few words of the answer; never all of it.
            logger.warning(
                "assistant answer from %s replaced by the offline one: %s",
                provider.name,
                "; ".join(found),
                extra={"prompt_sha256": exchange.prompt.sha256(), "problems": found},
            )
            return completion, "contradicts_facts"
        return completion, None

    async def _off_the_loop(self, function: Callable[..., T], *args: object) -> T:
        """`function(*args)` in a worker thread, within the text deadline (TimeoutError)."""
        return await asyncio.wait_for(asyncio.to_thread(function, *args), self.text_deadline_s)

    async def _record(
        self,
        prediction_id: uuid.UUID,
        prompt: Prompt,
        completion: Completion,
        latency_ms: float,
        reason: str | None,
        attempted: str | None,
        headers: dict[str, str],
    ) -> int:
        """The audit event; an exchange that cannot be recorded is not answered."""
        answer = await self.downstreams.call(
            "data",
            "POST",
            f"/predictions/{prediction_id}/explanations",
            idempotent=False,
            json={
                "kind": prompt.kind,
                "provider": completion.provider,
                "model": completion.model,
                "prompt_sha256": prompt.sha256(),
                "latency_ms": latency_ms,
                "replaced": reason is not None,
                "replaced_reason": reason,
                "attempted_provider": attempted,
                "input_tokens": completion.input_tokens,
                "output_tokens": completion.output_tokens,
            },
            headers=headers,
        )
        raise_for_answer(answer)
        return int(answer.json()["audit_event_id"])

    async def close(self) -> None:
        await self.provider.close()
