"""Language-model providers behind one small interface: `answer(exchange) -> Completion`,
raising `ProviderError` when no usable answer came back.

The vendors' own clients (`openai`, `anthropic`) speak the wire formats and retry 408, 409,
429, 5xx and lost connections with exponential backoff that honours `Retry-After`; the
timeout applies to each attempt. The key is given to the client only: it is never logged,
recorded or returned.
"""

from dataclasses import dataclass, field
from typing import Protocol

import anthropic
import openai

from gateway.assistant.facts import PredictionFacts
from gateway.assistant.prompt import Prompt


@dataclass(frozen=True)
class Exchange:
    prompt: Prompt
    facts: PredictionFacts

    @property
    def question(self) -> str | None:
        return self.prompt.question if self.prompt.kind == "follow_up" else None


@dataclass(frozen=True)
class Completion:
    text: str
    provider: str
    model: str | None
    input_tokens: int | None = None
    output_tokens: int | None = None


class ProviderError(Exception):
    """No usable answer: `reason` is short and safe to record (never the key)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Provider(Protocol):
    name: str
    model: str

    async def answer(self, exchange: Exchange) -> Completion: ...

    async def close(self) -> None: ...


def _failure(exc: Exception) -> ProviderError:
    # Both SDKs share these exception names; the timeout one is a connection error too.
    if isinstance(exc, openai.APITimeoutError | anthropic.APITimeoutError):
        return ProviderError("timeout")
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        return ProviderError(f"http_{exc.status_code}")
    if isinstance(exc, openai.APIConnectionError | anthropic.APIConnectionError):
        return ProviderError("unreachable")
    return ProviderError("bad_answer")


@dataclass(frozen=True)
class VendorSettings:
    api_key: str = field(repr=False)
    model: str
    base_url: str
    timeout_s: float  # per attempt
    retries: int
    max_output_tokens: int
    # OpenAI's reasoning models count hidden reasoning in the output budget; a low effort
    # leaves it for the answer. None: not sent (models without reasoning refuse it).
    reasoning_effort: str | None = None


class VendorProvider:
    """What both vendors' providers share: their settings and their client's lifetime."""

    client_class: type[openai.AsyncOpenAI] | type[anthropic.AsyncAnthropic]
    client: openai.AsyncOpenAI | anthropic.AsyncAnthropic

    def __init__(self, settings: VendorSettings) -> None:
        self.model = settings.model
        self.max_output_tokens = settings.max_output_tokens
        self.reasoning_effort = settings.reasoning_effort
        # Both vendors' clients take the same arguments.
        self.client = self.client_class(
            api_key=settings.api_key,
            base_url=settings.base_url,
            timeout=settings.timeout_s,
            max_retries=settings.retries,
        )

    async def close(self) -> None:
        await self.client.close()


class OpenAIProvider(VendorProvider):
    """The Chat Completions API (`POST {base_url}/chat/completions`)."""

    name = "openai"

    client_class = openai.AsyncOpenAI
    client: openai.AsyncOpenAI

    async def answer(self, exchange: Exchange) -> Completion:
        prompt = exchange.prompt
        messages = [
            {"role": "system", "content": prompt.system},
            *({"role": turn.role, "content": turn.content} for turn in prompt.messages),
        ]
        try:
            response = await self.client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_completion_tokens=self.max_output_tokens,
                n=1,
                reasoning_effort=self.reasoning_effort or openai.omit,  # type: ignore[arg-type]
            )
        except openai.OpenAIError as exc:
            raise _failure(exc) from exc
        if response.choices and response.choices[0].finish_reason == "length":
            raise ProviderError("truncated_answer")  # half an answer is no answer
        if not response.choices or not (response.choices[0].message.content or "").strip():
            raise ProviderError("empty_answer")
        usage = response.usage
        return Completion(
            text=response.choices[0].message.content.strip(),  # type: ignore[union-attr]
            provider=self.name,
            model=response.model or self.model,
            input_tokens=usage.prompt_tokens if usage else None,
            output_tokens=usage.completion_tokens if usage else None,
        )


class AnthropicProvider(VendorProvider):
    """The Messages API (`POST {base_url}/v1/messages`)."""

    name = "anthropic"

    client_class = anthropic.AsyncAnthropic
    client: anthropic.AsyncAnthropic

    async def answer(self, exchange: Exchange) -> Completion:
        prompt = exchange.prompt
        try:
            response = await self.client.messages.create(
                model=self.model,
                max_tokens=self.max_output_tokens,
                system=prompt.system,
                messages=[
                    {"role": turn.role, "content": turn.content}  # type: ignore[misc]
                    for turn in prompt.messages
                ],
            )
        except anthropic.AnthropicError as exc:
            raise _failure(exc) from exc
        if response.stop_reason == "max_tokens":
            raise ProviderError("truncated_answer")
        text = "".join(
            block.text for block in response.content if isinstance(block, anthropic.types.TextBlock)
        ).strip()
        if not text:
            raise ProviderError("empty_answer")
        return Completion(
            text=text,
            provider=self.name,
            model=response.model or self.model,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
        )
