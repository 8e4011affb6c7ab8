"""The sentences that describe a prediction's facts. The prompt gives them to a language
model as its facts, and the offline provider answers with them, so that a number is always
written the same way."""

from gateway.assistant.facts import INDETERMINATE, MALIGNANT, PredictionFacts
from gateway.predictions.schemas import Check

CAVEAT = (
    "This model assists and does not diagnose: a pathologist's reading of the tissue decides, "
    "and the assessment must not be used on its own to make clinical decisions."
)
METRIC_NAMES = {
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "precision": "precision",
    "accuracy": "accuracy",
    "roc_auc": "ROC AUC",
}
# Distance of P(malignant) from the threshold within which an assessment is borderline.
BORDERLINE_MARGIN = 0.10
HIGH_CONFIDENCE = 0.90


def percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def band(facts: PredictionFacts) -> str:
    """ "borderline" near the decision threshold, "high" at 90 % or more for the label,
    "moderate" between."""
    if abs(facts.malignant_probability - facts.threshold) < BORDERLINE_MARGIN:
        return "borderline"
    return "high" if (facts.probability or 0.0) >= HIGH_CONFIDENCE else "moderate"


# Measures that are shares of the image, and what the share is of.
SHARES = {
    "tissue_fraction": "tissue",
    "pen_fraction": "pen ink or artefact",
    "bright_fraction": "overexposed",
    "dark_fraction": "underexposed",
}
# What each reason means, in words a clinician reads (`ml.assessment.Reason`).
REASON_WORDS = {
    "no_tissue": "no tissue was found",
    "out_of_focus": "the tissue is out of focus",
    "not_h_and_e": "its colours are not those of H&E-stained tissue",
    "pen_or_artefact": "pen ink or another artefact covers it",
    "exposure": "it is over- or under-exposed",
    "out_of_distribution": "it is unlike the images the model was trained on",
    "near_threshold": (
        "P(malignant) lies too close to the decision threshold, where the model was too "
        "often wrong on its validation images"
    ),
}


def measure(check: Check) -> str:
    """A failed check as a clinician reads it: the value, and the limit it missed."""
    bound = "at least" if check.comparison == "at_least" else "at most"
    if check.measure in SHARES:
        return (
            f"{percent(check.value)} of the image is {SHARES[check.measure]}, {bound} "
            f"{percent(check.limit)} is {'needed' if bound == 'at least' else 'allowed'}"
        )
    if check.measure == "distance_from_threshold":
        return (
            f"P(malignant) is {check.value * 100:.1f} percentage points from the threshold, "
            f"at least {check.limit * 100:.1f} are needed"
        )
    name = check.measure.replace("_", " ")
    return f"{name} {check.value:.3g}, {bound} {check.limit:.3g} expected"


def reasons(facts: PredictionFacts) -> str:
    """Every reason, with the measure of its failed check when one was recorded."""
    parts = []
    for reason in facts.reasons:
        words = REASON_WORDS.get(reason, reason.replace("_", " "))
        measures = [measure(c) for c in facts.failed_checks if c.reason == reason]
        parts.append(f"{words} ({'; '.join(measures)})" if measures else words)
    return "; ".join(parts)


def assessment(facts: PredictionFacts) -> str:
    if not facts.verdict:
        because = reasons(facts) or "its quality checks failed"
        return (
            f"This image could not be assessed: {because}. The model gives no verdict on it, "
            "neither benign nor malignant; look at the image itself, or send a better one."
        )
    others = ", ".join(
        f"P({name}) {percent(value)}" for name, value in sorted(facts.probabilities.items())
    )
    text = (
        f"The model assessed this image as {facts.label}, with a probability of "
        f"{percent(facts.probability or 0.0)} ({others})."
    )
    if facts.assessment == INDETERMINATE:
        return (
            f"{text} This result is not decided (indeterminate): {reasons(facts)}. Do not "
            "read it as a verdict."
        )
    if facts.reasons:  # checks that only warn at this site
        return f"{text} Warning: {reasons(facts)}."
    if facts.assessment is None:
        return f"{text} No check of the image's quality was recorded for this prediction."
    return text


def confidence(facts: PredictionFacts) -> str:
    if not facts.verdict:
        return "No probability is given as a verdict for an image that could not be assessed."
    text = _confidence(facts)
    if (facts.probability or 0.0) < 0.5:
        # A threshold below 50 % calls some images malignant that the model finds more
        # likely benign: say so, or "malignant at 46 %" reads as a contradiction.
        text += (
            f" Note that by the model's own probabilities {facts.other_label} is the more likely "
            f"class here; the image is called {facts.label} because the decision threshold is "
            "set low, so that fewer cancers are missed."
        )
    return text


def _confidence(facts: PredictionFacts) -> str:
    which = band(facts)
    if which == "borderline":
        return (
            f"This is a borderline result: P(malignant) is within "
            f"{BORDERLINE_MARGIN * 100:.0f} percentage points of the decision threshold, so a "
            f"small change in the image could flip it to {facts.other_label}. Weigh it lightly."
        )
    if which == "high":
        return (
            f"The model is confident in {facts.label} here, far from the decision threshold; "
            "confidence is not correctness, and a confident model can still be wrong on tissue "
            "unlike its training data."
        )
    return (
        f"The model leans clearly towards {facts.label} but is not highly confident; treat "
        "it as one piece of evidence beside your own reading."
    )


def threshold(facts: PredictionFacts) -> str:
    text = (
        f"Decision threshold: the model says {MALIGNANT} when P(malignant) is "
        f"{percent(facts.threshold)} or more, and benign below."
    )
    model = facts.model
    if model is not None and model.target_sensitivity is not None:
        text += (
            f" It was chosen on the {model.threshold_chosen_on or 'validation split'} so that "
            f"the model finds at least {percent(model.target_sensitivity)} of malignant images "
            "(sensitivity). A lower threshold misses fewer cancers but raises more false alarms "
            "on benign tissue (lower specificity); a higher one does the opposite."
        )
    return text


# An explanation names these; a question about the model gets every metric of the card.
EXPLANATION_METRICS = ("sensitivity", "specificity", "roc_auc")


def model_summary(facts: PredictionFacts, names: tuple[str, ...] = tuple(METRIC_NAMES)) -> str:
    model = facts.model
    if model is None:
        return f"Model version {facts.model_version}: {facts.model_note}."
    metrics = {name: value for name, value in model.test_metrics.items() if name in names}
    parts = [
        f"{METRIC_NAMES[name]} {value:.2f}"
        if name == "roc_auc"
        else f"{METRIC_NAMES[name]} {percent(value)}"
        for name, value in metrics.items()
    ]
    text = f"Model version {model.version}"
    if parts:
        images = f"{model.test_images} images, " if model.test_images else ""
        text += f", on its test split ({images}at this threshold): " + ", ".join(parts) + "."
    else:
        text += ": its card records no test metrics."
    if "sensitivity" in metrics and "specificity" in metrics:
        text += (
            f" In other words, of 100 malignant test images it missed about "
            f"{round((1 - metrics['sensitivity']) * 100)}, and of 100 benign ones about "
            f"{round((1 - metrics['specificity']) * 100)} were false alarms."
        )
    if model.synthetic and model.warning:
        text += f" {model.warning}"
    return text


def heatmap(facts: PredictionFacts) -> str:
    focus = facts.heatmap
    if not facts.verdict:
        return (
            "Heatmap: the image could not be assessed, so an overlay, where one was made, is "
            "no evidence for any verdict."
        )
    if focus is None:
        if facts.has_heatmap:
            return (
                "Heatmap: an overlay is stored, but no summary of where it concentrates was "
                "recorded for this prediction; look at the overlay itself."
            )
        return "Heatmap: none was made for this prediction."
    if focus.spread == "none":
        return (
            "Heatmap: no region of the image pushed the model towards this label, so the "
            "overlay shows nothing to check; be cautious with this result."
        )
    peak = (
        f", strongest in the {focus.peak_region}"
        if focus.peak_region and focus.peak_region != focus.region
        else ""
    )
    where = (
        f"in {focus.areas} separate areas, the strongest in the {focus.region} of the image"
        if focus.areas > 1
        else f"in the {focus.region} of the image"
    )
    return (
        f"Heatmap (Grad-CAM): the areas that drove the assessment towards {facts.label} are "
        f"concentrated {where}{peak}, covering "
        f"{percent(focus.hot_area_fraction)} of it ({focus.spread}). Check that this area shows "
        "the tissue features you would expect; attention on background, slide edges or "
        "artefacts is a reason for caution."
    )


def review(facts: PredictionFacts) -> str:
    if not facts.reviewed:
        return "Review: no clinician has reviewed this prediction yet."
    parts = []
    if facts.review.agreed:
        parts.append(f"{_clinicians(facts.review.agreed)} agreed with the model")
    for label in sorted(set(facts.review.corrections)):
        count = facts.review.corrections.count(label)
        parts.append(f"{_clinicians(count)} corrected the label to {label}")
    return "Review: " + "; ".join(parts) + "."


def _clinicians(count: int) -> str:
    return "one clinician" if count == 1 else f"{count} clinicians"


def fact_sheet(facts: PredictionFacts, metrics: tuple[str, ...] = EXPLANATION_METRICS) -> list[str]:
    """Every fact, one sentence group each, in the order an explanation gives them; of the
    model's test metrics, `metrics`."""
    return [
        assessment(facts),
        threshold(facts),
        model_summary(facts, metrics),
        heatmap(facts),
        review(facts),
        f"Caveat: {CAVEAT}",
    ]
