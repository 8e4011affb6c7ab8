"""Whether an answer agrees with the stored prediction.

The answer is read clause by clause (sentences, and parts split by ; or :). A clause
contradicts the facts when it states this image's assessment as the other label, or
gives a class's probability other than the stored one; anywhere in the answer, a
percentage or probability that no fact (nor the clinician's own question) contains is a
contradiction too. Clauses that are conditional or general ("below 35 %, images are called
benign"), negated, or about reviewers are not read as the model's assessment. An
explanation must moreover quote the stored label (as a word of its own, not inside
"P(...)") and its probability, and, when the result is indeterminate, say it is not decided.

An image that could not be assessed has no verdict: any clause that names benign or
malignant as a fact, or gives a class's probability, contradicts that, and an explanation
must say that the image could not be assessed.

Numbers are compared at the precision the answer wrote them in: "87 %" matches 87.3 %,
"87.5 %" does not; "about", "nearly", "over" and "under" allow a few points.
"""

import re

from gateway.assistant.facts import INDETERMINATE, PredictionFacts

LABELS = ("benign", "malignant")
NUMBER = r"\d{1,3}(?:\.\d+)?"
PERCENTAGE = re.compile(rf"(?<![\w.])({NUMBER})\s?(?:%|per\s?cent\b|percent\b)", re.IGNORECASE)
# A probability written as a fraction: 0.87, 1.0; not a version, a time or a percentage.
FRACTION = re.compile(r"(?<![\w.])(0\.\d+|1\.0+)(?![\w%]|\.\d|\s?%|\s?per\s?cent)", re.I)
APPROXIMATE = re.compile(r"(?:about|around|roughly|nearly|almost|over|under|above|below)\W*$")
APPROXIMATION_POINTS = 3.0
ASSESSING = (
    r"classif(?:y|ies|ied|ication)|assess(?:es|ed|ment)|predict(?:s|ed|ion)|"
    r"label(?:led|ed)|call(?:s|ed)|flag(?:s|ged)|categori[sz](?:es|ed)|rat(?:es|ed)|"
    r"deem(?:s|ed)|consider(?:s|ed)|judg(?:es|ed)|thinks?|says?|suggests?|indicates?|"
    r"finds?|found|verdict|result|outcome|"
    r"(?:image|tissue|patch|slide|sample|it)\s+(?:is|was|looks|appears|seems)"
)
CLAIM = re.compile(
    rf"\b(?:{ASSESSING})\b(?:\W+\w+){{0,4}}?\W+({'|'.join(LABELS)})\b", re.IGNORECASE
)
# Clauses that state no fact about this image: negated, conditional, general, about the
# threshold or about the reviewers.
CONDITIONAL = (
    r"not|never|no|rather than|instead of|unless|if|would|were|could|might|may|can|below|"
    r"above|under|over|once|when|whenever|otherwise|until|threshold|clinicians?|reviewers?|"
    r"review(?:ed)?|corrected|correction"
)
GENERAL = r"images|an image|a patch|a slide|any"
NOT_A_FACT = re.compile(rf"\b(?:{CONDITIONAL}|{GENERAL})\b|n't\b", re.IGNORECASE)
# Clauses that are not the assessment either: general ones, and those about probabilities.
NOT_THE_ASSESSMENT = re.compile(
    rf"\b(?:{CONDITIONAL}|{GENERAL}|probability|chance|likelihood)\b|n't\b|P\(",
    re.IGNORECASE,
)
# How far after "assessed as malignant" a number is read as that assessment's probability.
CLAIM_REACH = 60
CLASS_PROBABILITY = re.compile(
    rf"P\((benign|malignant)\)\W{{0,3}}(?:is|was|of|at|=|:)?\W{{0,3}}"
    rf"(?:(?:about|around|roughly|nearly|almost)\W+)?({NUMBER})\s?(%|per\s?cent|percent)?"
    # "35 % or more" is a range (the threshold's), not this image's value.
    r"(?!\s*(?:or|and)\s+(?:more|above|higher|greater|less|lower|below|over|under))",
    re.IGNORECASE,
)


LABEL_WORD = re.compile(rf"\b(?:{'|'.join(LABELS)})\b", re.IGNORECASE)
# What an explanation of an image that could not be assessed must say, and of one whose
# result is not decided.
SAYS_NOT_ASSESSED = re.compile(
    r"\b(?:could not|cannot|can ?not|couldn't|can't) be assessed\b|\bnot assessable\b", re.I
)
# Parts of a clause read on their own for a verdict ("could not be assessed, but it looks
# malignant" states one), and the negations that leave a part stating none.
PARTS = re.compile(r",|\b(?:but|however|though|although|yet)\b", re.IGNORECASE)
NO_VERDICT = re.compile(rf"{NOT_A_FACT.pattern}|\b(?:neither|nor|without)\b", re.IGNORECASE)
# Clauses about the threshold, the reviewers or images in general state nothing of this one.
ABOUT_OTHERS = re.compile(
    rf"\b(?:threshold|sensitivity|specificity|clinicians?|reviewers?|review(?:ed)?|"
    rf"corrected|correction|{GENERAL})\b",
    re.IGNORECASE,
)
SAYS_NOT_DECIDED = re.compile(r"\b(?:not decided|undecided|indeterminate|inconclusive)\b", re.I)


def clauses(text: str) -> list[str]:
    # Full stops between digits are decimal points, not the end of a clause.
    return [part for part in re.split(r"(?<!\d)\.(?!\d)|\.(?=\s)|[;\n!?]", text) if part.strip()]


def _fact_values(facts: PredictionFacts) -> list[float]:
    """Every quantity of the facts as a fraction, with its complement (a sensitivity of
    96 % is also "4 % missed")."""
    values = [facts.threshold]
    if facts.verdict:  # no class probability is quoted for an image that was not assessed
        values += list(facts.probabilities.values())
    for check in facts.failed_checks:
        values += [check.value, check.limit]
    if facts.model is not None:
        values += list(facts.model.test_metrics.values())
        if facts.model.target_sensitivity is not None:
            values.append(facts.model.target_sensitivity)
    if facts.heatmap is not None:
        values.append(facts.heatmap.hot_area_fraction)
    return [*values, *(1 - v for v in values), 0.0, 1.0]


def _matches(written: str, scale: float, value: float, slack: float = 0.0) -> bool:
    """Whether `written` (a number in the answer) is `value` rounded to its precision, or
    within `slack` (in the answer's unit) of it."""
    decimals = len(written.split(".")[1]) if "." in written else 0
    tolerance = max(0.5 * 10**-decimals, slack) + 1e-9
    return abs(float(written) - value * scale) <= tolerance


def _numbers(text: str) -> list[tuple[str, float, float]]:
    """(number, scale, slack) of every percentage and fraction in `text`."""
    found = []
    for match in PERCENTAGE.finditer(text):
        before = text[max(0, match.start() - 12) : match.start()]
        slack = APPROXIMATION_POINTS if APPROXIMATE.search(before) else 0.0
        found.append((match[1], 100.0, slack))
    found += [(number, 1.0, 0.0) for number in FRACTION.findall(text)]
    return found


def _quoted(text: str, value: float) -> bool:
    return any(_matches(n, scale, value) for n, scale, _ in _numbers(text))


def _without_version(text: str, version: str) -> str:
    # The version's own digits ("2026.11.24-1") are no quantity.
    return re.sub(rf"(?<![\w.]){re.escape(version)}(?![\w]|\.\d)", " ", text)


def problems(answer: str, facts: PredictionFacts, question: str | None = None) -> list[str]:
    """What contradicts the facts (empty when nothing does). `question`: the clinician's
    own, whose numbers an answer may repeat; None for an explanation, which must quote the
    stored label and probability."""
    found = []
    text = _without_version(answer, facts.model_version)
    probability = facts.probability or 0.0  # read only where a verdict was given
    for clause in clauses(text):
        if not facts.verdict:
            # No verdict was given: stating one, or a class's probability, contradicts that.
            for part in [] if ABOUT_OTHERS.search(clause) else PARTS.split(clause):
                if LABEL_WORD.search(part) and not NO_VERDICT.search(part):
                    found.append(f"states a verdict on an image not assessed: {part.strip()!r}")
            if CLASS_PROBABILITY.search(clause) and not NOT_A_FACT.search(clause):
                found.append("gives a class probability for an image not assessed")
            continue
        for claim in CLAIM.finditer(clause):
            if claim[1].lower() != facts.label and not NOT_THE_ASSESSMENT.search(clause):
                found.append(f"gives the assessment as {claim[1].lower()}: {claim[0]!r}")
        if NOT_A_FACT.search(clause):
            continue
        for claim in CLAIM.finditer(clause):
            after = clause[claim.end() : claim.end() + CLAIM_REACH]
            numbers = _numbers(after) if claim[1].lower() == facts.label else []
            if numbers and not any(_matches(n, s, probability, k) for n, s, k in numbers):
                found.append(f"gives {facts.label} another probability: {clause.strip()!r}")
        for name, number, unit in CLASS_PROBABILITY.findall(clause):
            value = facts.probabilities.get(name.lower())
            scale = 100.0 if unit or float(number) > 1 else 1.0
            if value is not None and not _matches(number, scale, value):
                found.append(f"gives P({name}) as {number}{' %' if scale == 100 else ''}")
    allowed = _fact_values(facts)
    asked = {n for n, _, _ in _numbers(question or "")}
    for number, scale, slack in _numbers(text):
        if number not in asked and not any(_matches(number, scale, v, slack) for v in allowed):
            found.append(f"quotes {number}{' %' if scale == 100 else ''}, which no fact gives")
    if question is None and not facts.verdict:
        if not SAYS_NOT_ASSESSED.search(text):
            found.append("does not say that the image could not be assessed")
    elif question is None:
        if facts.assessment == INDETERMINATE and not SAYS_NOT_DECIDED.search(text):
            found.append("does not say that the result is not decided")
        words = re.sub(r"P\(\w+\)", " ", text)
        if not re.search(rf"\b{facts.label}\b", words, re.IGNORECASE):
            found.append(f"does not name the stored label ({facts.label})")
        if not _quoted(text, probability):
            found.append("does not quote the stored probability")
    return found
