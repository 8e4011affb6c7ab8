"""The conversation a language model sees: rules, the prediction's facts, the guide to the
system, the newest turns that fit the token budget, and the question. Everything the caller
typed is stripped of identifiers first."""

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Literal

from gateway.assistant.facts import INDETERMINATE, PredictionFacts
from gateway.assistant.guide import GUIDE
from gateway.assistant.wording import METRIC_NAMES, fact_sheet, percent

EXPLAIN_REQUEST = "Explain this prediction to me."
REDACTED = "[redacted]"
# Every pattern here reads what a clinician typed, so each must take time linear in its
# length: runs of spaces or letters are matched possessively (`*+`, `++`) where giving
# characters back could not make the match succeed anyway, and a run that a pattern may start
# anywhere in is bounded. `re` holds the GIL while it matches, so no thread or deadline can
# interrupt one long match: the patterns themselves must be linear.
MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*+\.?"
# What may identify a person or a record when a clinician types it into a question: ids,
# e-mail addresses, dates, record numbers, and numbers of five digits or more. This is a
# safety net, not a licence: the page asks not to type identifiers at all.
IDENTIFIER_PATTERNS = (
    re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
    # The part before the @ is at most 64 characters (RFC 5321): unbounded, "a.a.a..." with
    # no @ in it was read to its end from every word.
    re.compile(r"\b[\w.+-]{1,64}@[\w-]+(\.[\w-]+)+\b"),
    re.compile(r"\b\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\b"),
    re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s++{MONTH},?\s++\d{{2,4}}\b", re.I),
    re.compile(rf"\b{MONTH}\s++\d{{1,2}}(?:st|nd|rd|th)?,?\s++\d{{2,4}}\b", re.I),
    # Three optional runs of spaces in a row were split every possible way before failing:
    # "patient" and 985 spaces took seconds. Each run is now taken whole, once.
    re.compile(
        r"\b(?:mrn|nhs|record|hospital|patient|case|chart|file|id|no)\b\.?\s*+"
        r"(?:no\.?|number|nr\.?|#)?\s*+[:#]?\s*+[A-Za-z]{0,4}\d[\w/-]*",
        re.I,
    ),
    re.compile(r"\b\d(?:[ ./-]?\d){4,}\b"),
)
# A number right after a redacted word belongs to it ("MRN 77" with "MRN" redacted).
REDACTED_NUMBER = re.compile(rf"{re.escape(REDACTED)}[\s:#-]*+\d[\w/-]*")
CHARACTERS_PER_TOKEN = 4

RULES = """You are the assistant of a breast histopathology decision-support system. You talk \
with a clinician about one stored prediction of the system's image model.
Rules:
- Use only the facts below and the guide to the system. Do not invent numbers, findings or \
anything about the patient; if the facts do not answer a question, say so.
{verdict_rule}
- Say that the model assists and does not diagnose; a pathologist's reading decides. Never \
recommend a treatment or a diagnosis.
- Plain language for a clinician, no markdown headings. An explanation: at most 200 words; \
an answer to a question: at most 120 words."""


Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class Turn:
    role: Role
    content: str


@dataclass(frozen=True)
class Prompt:
    kind: Literal["explanation", "follow_up"]
    system: str
    messages: tuple[Turn, ...]  # oldest first; the last is the user's

    @property
    def question(self) -> str:
        return self.messages[-1].content

    def sha256(self) -> str:
        """Identifies the prompt in the audit trail without keeping its text."""
        canonical = json.dumps(
            {"system": self.system, "messages": [[t.role, t.content] for t in self.messages]},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def text(self) -> str:
        return "\n".join([self.system, *(turn.content for turn in self.messages)])


def redact(text: str, identifiers: tuple[str, ...]) -> str:
    for identifier in sorted(identifiers, key=len, reverse=True):
        # Whole words only: a short reference must not eat the middle of "malignant".
        whole_word = rf"(?<![A-Za-z0-9]){re.escape(identifier)}(?![A-Za-z0-9])"
        text = re.sub(whole_word, REDACTED, text, flags=re.IGNORECASE)
    for pattern in IDENTIFIER_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return REDACTED_NUMBER.sub(REDACTED, text)


def estimated_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARACTERS_PER_TOKEN)


VERDICT_RULE = """- Whenever you state the model's assessment, give exactly the stored label and \
probability as written in the facts (for example "{label}, {probability}"). Never describe \
the assessment as {other_label}."""
UNDECIDED_RULE = """
- The result is not decided (indeterminate): whenever you give the label, say that it is \
not decided and why, as the facts say."""
NO_VERDICT_RULE = """- This image could not be assessed: the model gives no verdict on it. Never \
call it, the tissue or the result benign or malignant, give no probability of either, and \
say plainly why it could not be assessed, with the measures in the facts."""


def verdict_rule(facts: PredictionFacts) -> str:
    if not facts.verdict:
        return NO_VERDICT_RULE
    rule = VERDICT_RULE.format(
        label=facts.label,
        probability=percent(facts.probability or 0.0),
        other_label=facts.other_label,
    )
    return rule + UNDECIDED_RULE if facts.assessment == INDETERMINATE else rule


def system_prompt(facts: PredictionFacts) -> str:
    rules = RULES.format(verdict_rule=verdict_rule(facts))
    facts_text = "\n".join(f"- {line}" for line in fact_sheet(facts, tuple(METRIC_NAMES)))
    return f"{rules}\n\nFacts of this prediction:\n{facts_text}\n\nGuide to the system:\n{GUIDE}"


def build_prompt(
    facts: PredictionFacts,
    question: str | None,
    history: list[Turn],
    identifiers: tuple[str, ...],
    max_input_tokens: int,
) -> Prompt:
    """The prompt of one exchange; the oldest turns are left out when all do not fit."""
    system = system_prompt(facts)
    final = Turn("user", redact(question, identifiers) if question else EXPLAIN_REQUEST)
    budget = (
        max_input_tokens
        - estimated_tokens(system)
        - estimated_tokens(final.content)
        - estimated_tokens(EXPLAIN_REQUEST)  # room for the opening request, if it is added
    )
    kept: list[Turn] = []
    for turn in reversed(history):
        cost = estimated_tokens(turn.content)
        if cost > budget:
            break
        kept.insert(0, Turn(turn.role, redact(turn.content, identifiers)))
        budget -= cost
    # Providers expect the conversation to open with the user; a conversation that opens
    # with the explanation answered the implicit request for it.
    if kept and kept[0].role != "user":
        kept.insert(0, Turn("user", EXPLAIN_REQUEST))
    kind: Literal["explanation", "follow_up"] = "follow_up" if question else "explanation"
    return Prompt(kind, system, (*kept, final))
