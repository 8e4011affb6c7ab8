"""Whether an answer agrees with the stored prediction.

An answer contradicts the facts when it gives the model's assessment as another label than
the stored one, or quotes a percentage or probability that none of the facts (nor the
clinician's own question) contains. An explanation must moreover quote the stored label and
its probability. Numbers are compared at the precision the answer wrote them in: "87 %"
matches 87.3 %, "87.5 %" does not.
"""

import re

from gateway.assistant.facts import PredictionFacts

LABELS = ("benign", "malignant")
ASSESSING = (
    r"classif(?:y|ies|ied|ication)|assess(?:es|ed|ment)|predict(?:s|ed|ion)|"
    r"label(?:led|ed)|call(?:s|ed)|flag(?:s|ged)|categori[sz](?:es|ed)|rat(?:es|ed)|"
    r"deem(?:s|ed)|consider(?:s|ed)|judg(?:es|ed)|read(?:s)? (?:it|this|the image) as"
)
CLAIM = re.compile(
    rf"\b(?P<verb>{ASSESSING})\b(?P<between>(?:\W+\w+){{0,4}}?)\W+(?P<label>{'|'.join(LABELS)})\b",
    re.IGNORECASE,
)
NEGATION = re.compile(r"\b(not|never|no|n't|rather than|instead of|unless|if|would|were)\b", re.I)
PERCENTAGE = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d+)?)\s?(?:%|percent\b)", re.IGNORECASE)
FRACTION = re.compile(r"(?<![\w.])(0\.\d+|1\.0+)(?![\w.%])")


def _fact_values(facts: PredictionFacts) -> list[float]:
    """Every quantity of the facts as a fraction, with its complement (a sensitivity of
    96 % is also "4 % missed")."""
    values = [facts.threshold, *facts.probabilities.values()]
    if facts.model is not None:
        values += list(facts.model.test_metrics.values())
        if facts.model.target_sensitivity is not None:
            values.append(facts.model.target_sensitivity)
    if facts.heatmap is not None:
        values.append(facts.heatmap.hot_area_fraction)
    return [*values, *(1 - v for v in values), 0.0, 1.0]


def _matches(written: str, scale: float, value: float) -> bool:
    """Whether `written` (a number in the answer) is `value` rounded to its precision."""
    decimals = len(written.split(".")[1]) if "." in written else 0
    return abs(float(written) - value * scale) <= 0.5 * 10**-decimals + 1e-9


def _quoted(text: str, value: float) -> bool:
    return any(_matches(n, 100, value) for n in PERCENTAGE.findall(text)) or any(
        _matches(n, 1, value) for n in FRACTION.findall(text)
    )


def problems(answer: str, facts: PredictionFacts, question: str | None = None) -> list[str]:
    """What contradicts the facts (empty when nothing does). `question`: the clinician's
    own, whose numbers an answer may repeat; None for an explanation, which must quote the
    stored label and probability."""
    found = []
    # The version string may hold digits ("2026.11.24-1"); they are no quantity.
    text = answer.replace(facts.model_version, " ")
    for claim in CLAIM.finditer(text):
        label = claim["label"].lower()
        if label != facts.label and not NEGATION.search(claim["between"] or ""):
            before = text[max(0, claim.start() - 30) : claim.start()]
            if not NEGATION.search(before):
                found.append(f"gives the assessment as {label}: {claim.group(0)!r}")
    allowed = _fact_values(facts)
    asked = question or ""
    for number in PERCENTAGE.findall(text):
        if not any(_matches(number, 100, v) for v in allowed) and number not in asked:
            found.append(f"quotes {number} %, which no fact gives")
    for number in FRACTION.findall(text):
        if not any(_matches(number, 1, v) for v in allowed) and number not in asked:
            found.append(f"quotes {number}, which no fact gives")
    if question is None:
        if not re.search(rf"\b{facts.label}\b", text, re.IGNORECASE):
            found.append(f"does not name the stored label ({facts.label})")
        if not _quoted(text, facts.probability):
            found.append("does not quote the stored probability")
    return found
