"""The built-in provider: answers from templates over the facts, with no network. It is
used when no language model is configured, and whenever a model's answer cannot be used."""

import re

from gateway.assistant import wording
from gateway.assistant.facts import PredictionFacts
from gateway.assistant.guide import TOPICS
from gateway.assistant.providers import Completion, Exchange

NAME = "offline"
# Question words -> what answers them, most specific first; one answer gives at most three.
INTENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("diagnosis", ("diagnos", "treat", "surgery", "biopsy", "should i", "cancer or not")),
    ("heatmap", ("heatmap", "heat map", "grad-cam", "gradcam", "region", "where", "highlight")),
    ("threshold", ("threshold", "cut-off", "cutoff", "sensitiv", "specific", "false")),
    ("confidence", ("probab", "confiden", "sure", "certain", "borderline", "percent", "%")),
    ("model", ("model", "version", "metric", "accura", "auc", "trained", "training")),
    ("review_status", ("reviewed", "review status", "agreed", "anyone")),
    ("analyse", ("upload", "analys", "analyz", "new image", "assess an")),
    ("review", ("review", "agree", "disagree", "correct", "comment")),
    ("history", ("history", "patient", "earlier", "previous", "search")),
    ("export", ("export", "csv", "retrain", "download")),
    ("dashboard", ("dashboard", "statistic", "latency", "agreement")),
    ("models", ("activate", "roc", "confusion")),
    ("assistant", ("assistant", "provider", "language model", "llm", "chatgpt", "claude")),
)
MAX_TOPICS = 3


def explanation(facts: PredictionFacts) -> str:
    first, *rest = wording.fact_sheet(facts)
    return "\n\n".join([f"{first} {wording.confidence(facts)}", *rest])


def answer_question(facts: PredictionFacts, question: str) -> str:
    asked = question.lower()
    # Words are matched from their start: "procedure" is no "roc", "measure" no "sure".
    topics = [
        name
        for name, words in INTENTS
        if any(re.search(rf"(?<![a-z]){re.escape(word)}", asked) for word in words)
    ]
    if not topics:
        return (
            "I can only answer from this prediction's stored facts and the guide to the "
            "system, and I did not find your question in them. "
            f"{wording.assessment(facts)} You can ask about the probability, the decision "
            "threshold, the heatmap, the model's test results, whether it was reviewed, or how "
            "to analyse images, review predictions, find a patient's history or export labels."
        )
    return "\n\n".join(_topic(name, facts) for name in topics[:MAX_TOPICS])


def _topic(name: str, facts: PredictionFacts) -> str:
    if name == "diagnosis":
        return f"{wording.CAVEAT} {wording.assessment(facts)}"
    if name == "heatmap":
        return wording.heatmap(facts)
    if name == "threshold":
        return f"{wording.threshold(facts)} {wording.model_summary(facts)}"
    if name == "confidence":
        return f"{wording.assessment(facts)} {wording.confidence(facts)}"
    if name == "model":
        return wording.model_summary(facts)
    if name == "review_status":
        return wording.review(facts)
    if name == "models":
        return TOPICS["models"]
    return TOPICS[name]


class OfflineProvider:
    name = NAME
    model = "templates"

    async def answer(self, exchange: Exchange) -> Completion:
        if exchange.prompt.kind == "explanation":
            text = explanation(exchange.facts)
        else:
            text = answer_question(exchange.facts, exchange.question or "")
        return Completion(text=_tidy(text), provider=NAME, model=self.model)

    async def close(self) -> None:
        return None


def _tidy(text: str) -> str:
    return re.sub(r"[ \t]+", " ", text).strip()
