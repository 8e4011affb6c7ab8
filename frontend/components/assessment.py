"""Whether a prediction may be read as a verdict, in words: the one place that turns a
prediction's `assessment`, `reasons` and `checks` into what people read on every page.

The reason codes mirror `ml.assessment.Reason` (the frontend's image installs nothing of `ml`;
a unit test keeps the two lists equal). A check the gateway names that is not listed here
still gets a sentence, from its reason's title and its raw numbers.
"""

import math
from dataclasses import dataclass
from typing import Any

import streamlit as st

from frontend.components.widgets import label_markdown, plain

ASSESSABLE, INDETERMINATE, NOT_ASSESSABLE = "assessable", "indeterminate", "not_assessable"
NOT_RECORDED = "not recorded"
# Dashboard and table wording of each assessment; a prediction made before images were
# checked has none (null), which reads as "not recorded".
ASSESSMENT_NAMES = {
    ASSESSABLE: "assessable",
    INDETERMINATE: "indeterminate",
    NOT_ASSESSABLE: "not assessable",
    "not_recorded": NOT_RECORDED,
}
# What each reason means, as the start of its sentence.
REASON_TITLES = {
    "no_tissue": "No tissue found",
    "out_of_focus": "Out of focus",
    "not_h_and_e": "Not H&E-stained tissue",
    "pen_or_artefact": "Pen ink or artefacts",
    "exposure": "Badly exposed",
    "out_of_distribution": "Unlike the images the model was trained on",
    "near_threshold": "Too close to the decision threshold",
}


@dataclass(frozen=True)
class Measure:
    """How one measure reads: `subject` is what the value is ("{value} of the image is
    tissue"), `kind` how its numbers are written."""

    subject: str
    kind: str  # "fraction" (as a percentage), "points" (percentage points) or "number"


MEASURES = {
    "tissue_fraction": Measure("{value} of the image is tissue", "fraction"),
    "focus": Measure("the tissue's sharpness measures {value}", "number"),
    "he_plausibility": Measure("its colours match haematoxylin and eosin at {value}", "number"),
    "pen_fraction": Measure("{value} of the image looks like pen ink", "fraction"),
    "bright_fraction": Measure("{value} of the image is over-exposed (near white)", "fraction"),
    "dark_fraction": Measure("{value} of the image is under-exposed (near black)", "fraction"),
    "out_of_distribution_score": Measure("its out-of-distribution score is {value}", "number"),
    "distance_from_threshold": Measure("P(malignant) is {value} from the threshold", "points"),
}


def _digits_apart(value: float, limit: float, scale: float, fewest: int = 0) -> int:
    """The fewest decimals, from `fewest` up to 6, that write `value` and `limit` (times
    `scale`) differently, so a failed check never reads "20 %, at least 20 % is needed"."""
    digits = fewest
    while (
        digits < 6
        and value != limit
        and round(value * scale, digits) == round(limit * scale, digits)
    ):
        digits += 1
    return digits


def _number(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def formatted(value: float, limit: float, kind: str) -> tuple[str, str]:
    """`value` and `limit` written alike for `kind`: fractions as percentages, distances of
    probabilities as percentage points, other measures as plain numbers; each to as few
    decimals as tell them apart."""
    if not (math.isfinite(value) and math.isfinite(limit)):
        return f"{value}", f"{limit}"
    if kind in ("fraction", "points"):
        unit = " %" if kind == "fraction" else " percentage points"
        # Whole percentages unless that would hide the difference.
        digits = _digits_apart(value, limit, 100)
        return _number(value * 100, digits) + unit, _number(limit * 100, digits) + unit
    # Plain numbers: three significant figures of the larger, more if they would read alike.
    magnitude = max(abs(value), abs(limit))
    fewest = max(0, 2 - math.floor(math.log10(magnitude))) if magnitude > 0 else 0
    digits = _digits_apart(value, limit, 1, fewest)
    return _number(value, digits), _number(limit, digits)


def check_sentence(check: dict[str, Any]) -> str:
    """One failed check as a sentence with its measure and limit, e.g. "No tissue found: 2 %
    of the image is tissue, at least 20 % is needed." """
    reason = str(check.get("reason", ""))
    title = REASON_TITLES.get(reason, reason.replace("_", " ").capitalize() or "A check failed")
    name = str(check.get("measure", "measure"))
    measure = MEASURES.get(name, Measure(f"{name.replace('_', ' ')} is {{value}}", "number"))
    try:
        value, limit = float(check["value"]), float(check["limit"])
    except (KeyError, TypeError, ValueError):
        return f"{title}."
    value_text, limit_text = formatted(value, limit, measure.kind)
    if check.get("comparison") == "at_most":
        bound = f"at most {limit_text} is accepted"
    else:
        bound = f"at least {limit_text} is needed"
    return f"{title}: {measure.subject.format(value=value_text)}, {bound}."


def failed_checks(prediction: dict[str, Any]) -> list[dict[str, Any]]:
    checks = prediction.get("checks") or []
    return [check for check in checks if isinstance(check, dict) and not check.get("passed")]


def reason_sentences(prediction: dict[str, Any]) -> list[str]:
    """One sentence per failed check, in the order the checks ran; a reason the gateway
    names without a failed check behind it (an older record) still gets its title."""
    sentences = [check_sentence(check) for check in failed_checks(prediction)]
    covered = {check.get("reason") for check in failed_checks(prediction)}
    for reason in prediction.get("reasons") or []:
        if reason not in covered:
            sentences.append(f"{REASON_TITLES.get(reason, str(reason).replace('_', ' '))}.")
    return sentences


def assessment_of(prediction: dict[str, Any]) -> str | None:
    """The prediction's assessment, or None for one made before images were checked."""
    return prediction.get("assessment")


def assessment_name(prediction: dict[str, Any]) -> str:
    return ASSESSMENT_NAMES.get(assessment_of(prediction) or "not_recorded", NOT_RECORDED)


def verdict_text(prediction: dict[str, Any]) -> str:
    """The label as a list or a chart names it: none when not assessable, "leaning towards"
    when not decided."""
    label = prediction.get("label")
    assessment = assessment_of(prediction)
    if assessment == NOT_ASSESSABLE or label is None:
        return "no verdict"
    if assessment == INDETERMINATE:
        return f"not decided, leaning {label}"
    return str(label)


def reason_name(reason: str) -> str:
    return REASON_TITLES.get(reason, reason.replace("_", " "))


def render_verdict(prediction: dict[str, Any]) -> None:
    """The headline of a result and why. Not assessable: no label and no probability, only
    the reasons with their measures. Indeterminate: "not decided", the label only as the side
    it leans towards. Assessable: the label, with any checks the site only warns about."""
    assessment = assessment_of(prediction)
    label = prediction.get("label")
    reasons = "".join(f"\n- {plain(sentence)}" for sentence in reason_sentences(prediction))
    if assessment == NOT_ASSESSABLE or label is None:
        st.markdown("### :gray[**NOT ASSESSABLE**]")
        st.error(f"This image could not be assessed: no verdict is given.\n{reasons}")
    elif assessment == INDETERMINATE:
        st.markdown("### :orange[**NOT DECIDED**]")
        st.warning(
            "The result is not decided: the model's answer on this image is not reliable "
            f"enough to be read as a verdict.\n{reasons}"
        )
        st.markdown(f"Leaning towards {label_markdown(label)}: not a verdict.")
    else:
        st.markdown(f"### {label_markdown(label)}")
        if reasons:
            st.warning(f"Assessed, with warnings:\n{reasons}")
        if assessment is None:
            st.caption(
                "Assessability: not recorded (made before images were checked for tissue, "
                "focus and staining)."
            )
