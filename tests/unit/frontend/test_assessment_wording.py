"""The sentences that say why an image got no verdict, or no decided one: one per failed
check, with its measure and limit written so that people can compare them."""

import pytest

from frontend.components.assessment import (
    ASSESSMENT_NAMES,
    REASON_TITLES,
    check_sentence,
    formatted,
    reason_sentences,
    verdict_text,
)
from ml.assessment import Assessment, Check, Reason


def failed(measure: str, value: float, limit: float, comparison: str, reason: Reason) -> dict:
    check = Check(measure, value, limit, comparison, reason)  # type: ignore[arg-type]
    assert not check.passed
    return check.as_dict()


def test_the_frontend_knows_every_reason_and_assessment_the_contract_has():
    # The frontend's image installs nothing of `ml`: it mirrors the codes; this keeps them equal.
    assert set(REASON_TITLES) == {reason.value for reason in Reason}
    assert set(ASSESSMENT_NAMES) - {"not_recorded"} == {a.value for a in Assessment}


# Each failed check as (measure, value, limit, comparison, reason) and its sentence.
SENTENCES = [
    (("tissue_fraction", 0.02, 0.2, "at_least", Reason.NO_TISSUE),
     "No tissue found: 2 % of the image is tissue, at least 20 % is needed."),
    (("tissue_fraction", 0.199, 0.2, "at_least", Reason.NO_TISSUE),
     "No tissue found: 19.9 % of the image is tissue, at least 20 % is needed."),
    (("tissue_fraction", 0.0, 0.2, "at_least", Reason.NO_TISSUE),
     "No tissue found: 0 % of the image is tissue, at least 20 % is needed."),
    (("focus", 3.1, 10.0, "at_least", Reason.OUT_OF_FOCUS),
     "Out of focus: the tissue's sharpness measures 3.1, at least 10 is needed."),
    (("pen_fraction", 0.124, 0.05, "at_most", Reason.PEN_OR_ARTEFACT),
     "Pen ink or artefacts: 12 % of the image looks like pen ink, at most 5 % is accepted."),
    (("bright_fraction", 0.61, 0.3, "at_most", Reason.EXPOSURE),
     "Badly exposed: 61 % of the image is over-exposed (near white), at most 30 % is accepted."),
    (("out_of_distribution_score", 41.26, 25.0, "at_most", Reason.OUT_OF_DISTRIBUTION),
     "Unlike the images the model was trained on: its out-of-distribution score is 41.3, at "
     "most 25 is accepted."),
    (("distance_from_threshold", 0.02, 0.05, "at_least", Reason.NEAR_THRESHOLD),
     "Too close to the decision threshold: P(malignant) is 2 percentage points from the "
     "threshold, at least 5 percentage points is needed."),
    (("he_plausibility", 0.2049, 0.205, "at_least", Reason.NOT_H_AND_E),
     "Not H&E-stained tissue: its colours match haematoxylin and eosin at 0.2049, at least "
     "0.205 is needed."),
]  # fmt: skip


@pytest.mark.parametrize(("check", "sentence"), SENTENCES)
def test_a_failed_check_reads_as_one_sentence_with_its_measure(check, sentence):
    assert check_sentence(failed(*check)) == sentence


@pytest.mark.parametrize(
    ("check", "sentence"),
    [
        # A measure or reason this frontend does not know yet: its raw name and numbers.
        (
            {
                "measure": "glare_index",
                "value": 0.5,
                "limit": 0.3,
                "comparison": "at_most",
                "reason": "glare",
                "passed": False,
            },
            "Glare: glare index is 0.5, at most 0.3 is accepted.",
        ),
        # Numbers missing or not numbers: the reason alone, never a failure of the page.
        ({"measure": "focus", "reason": "out_of_focus", "passed": False}, "Out of focus."),
        (
            {"measure": "focus", "value": "sharp", "limit": None, "reason": "out_of_focus"},
            "Out of focus.",
        ),
        ({}, "A check failed."),
    ],
)
def test_an_unknown_or_malformed_check_still_reads_as_a_sentence(check, sentence):
    assert check_sentence(check) == sentence


def test_numbers_that_are_not_finite_are_written_as_they_are():
    assert formatted(float("nan"), 0.2, "fraction") == ("nan", "0.2")


def test_sentences_follow_the_failed_checks_and_name_reasons_without_one():
    prediction = {
        "reasons": ["no_tissue", "exposure"],
        "checks": [
            failed("tissue_fraction", 0.02, 0.2, "at_least", Reason.NO_TISSUE),
            Check("focus", 50.0, 10.0, "at_least", Reason.OUT_OF_FOCUS).as_dict(),  # passed
            "not a check",
        ],
    }
    assert reason_sentences(prediction) == [
        "No tissue found: 2 % of the image is tissue, at least 20 % is needed.",
        "Badly exposed.",
    ]
    assert reason_sentences({"assessment": None, "reasons": None, "checks": None}) == []


@pytest.mark.parametrize(
    ("prediction", "text"),
    [
        ({"assessment": "not_assessable", "label": None}, "no verdict"),
        ({"assessment": "indeterminate", "label": "malignant"}, "not decided, leaning malignant"),
        ({"assessment": "assessable", "label": "benign"}, "benign"),
        ({"assessment": None, "label": "benign"}, "benign"),  # stored before assessments
    ],
)
def test_a_verdict_in_a_list_is_never_a_label_the_model_did_not_give(prediction, text):
    assert verdict_text(prediction) == text
