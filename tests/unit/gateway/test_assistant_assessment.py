"""The assistant on assessments: its facts carry the assessment and the failed checks, the
offline answer says plainly why an image could not be assessed and never gives it a verdict,
an undecided result is called undecided, and grounding treats a verdict stated on an image
that was not assessed as a contradiction."""

import pytest

from gateway.assistant import grounding, offline
from gateway.assistant.facts import facts_from
from gateway.assistant.prompt import build_prompt
from ml.assessment import Check, Reason
from tests.unit.gateway.test_assistant import CARD, IDENTIFIERS, stored_prediction

NO_TISSUE = Check("tissue_fraction", 0.02, 0.2, "at_least", Reason.NO_TISSUE).as_dict()
BLURRED = Check("focus", 3.1, 40.0, "at_least", Reason.OUT_OF_FOCUS).as_dict()
IN_FOCUS = Check("focus", 140.0, 40.0, "at_least", Reason.OUT_OF_FOCUS).as_dict()
NEAR = Check("distance_from_threshold", 0.012, 0.05, "at_least", Reason.NEAR_THRESHOLD).as_dict()


def refused_facts(reasons=("no_tissue",), checks=(NO_TISSUE, IN_FOCUS)):
    prediction = stored_prediction(
        0.7,
        label=None,
        probability=None,
        assessment="not_assessable",
        reasons=list(reasons),
        checks=list(checks),
    )
    return facts_from(prediction, [], {"card": CARD})


def undecided_facts():
    prediction = stored_prediction(
        0.362, assessment="indeterminate", reasons=["near_threshold"], checks=[IN_FOCUS, NEAR]
    )
    return facts_from(prediction, [], {"card": CARD})


def test_the_facts_carry_the_assessment_its_reasons_and_the_failed_checks():
    facts = refused_facts()
    assert (facts.assessment, facts.reasons, facts.verdict) == (
        "not_assessable",
        ("no_tissue",),
        False,
    )
    assert [c.measure for c in facts.failed_checks] == ["tissue_fraction"]  # the one failed
    older = facts_from(stored_prediction(0.9), [], {"card": CARD})
    assert (older.assessment, older.reasons, older.verdict) == (None, (), True)
    odd = facts_from(
        stored_prediction(0.9, assessment="assessable", reasons=[], checks=[{"x": 1}]), [], None
    )
    assert odd.failed_checks == ()  # checks of another shape are left out, not trusted


def test_the_offline_explanation_says_why_an_image_could_not_be_assessed_and_gives_no_verdict():
    facts = refused_facts()
    text = offline.explanation(facts)
    assert (
        "This image could not be assessed: no tissue was found (2.0 % of the image is tissue, "
        "at least 20.0 % is needed)."
    ) in text
    assert "assessed this image as" not in text and "70.0 %" not in text
    assert grounding.problems(text, facts) == []
    two = refused_facts(("no_tissue", "out_of_focus"), (NO_TISSUE, BLURRED))
    text = offline.explanation(two)
    assert "the tissue is out of focus (focus 3.1, at least 40 expected)" in text
    assert grounding.problems(text, two) == []


@pytest.mark.parametrize(
    "question",
    ["How sure is the model?", "Is it cancer or not?", "Where did the model look?", "Hello"],
)
def test_offline_follow_ups_on_an_image_not_assessed_give_no_verdict(question):
    facts = refused_facts()
    answer = offline.answer_question(facts, question)
    assert "assessed this image as" not in answer
    assert grounding.problems(answer, facts, question) == []


def test_an_undecided_result_is_called_not_decided_with_its_reason():
    facts = undecided_facts()
    text = offline.explanation(facts)
    assert "assessed this image as malignant, with a probability of 36.2 %" in text
    assert "This result is not decided (indeterminate): P(malignant) lies too close" in text
    assert "(P(malignant) is 1.2 percentage points from the threshold" in text
    assert grounding.problems(text, facts) == []
    # An explanation that gives the label as if it were decided is not used.
    decided = "The model assessed this image as malignant, with a probability of 36.2 %."
    assert "does not say that the result is not decided" in grounding.problems(decided, facts)


def test_a_warning_that_only_warns_is_named_beside_the_verdict():
    prediction = stored_prediction(
        0.9, assessment="assessable", reasons=["out_of_focus"], checks=[BLURRED]
    )
    facts = facts_from(prediction, [], {"card": CARD})
    text = offline.explanation(facts)
    assert "as malignant, with a probability of 90.0 %" in text
    assert "Warning: the tissue is out of focus (focus 3.1, at least 40 expected)." in text
    assert grounding.problems(text, facts) == []


@pytest.mark.parametrize(
    "answer",
    [
        "This image could not be assessed, but the tissue looks malignant.",
        "This image could not be assessed. The model classified it as benign.",
        "This image could not be assessed; it is probably malignant.",
        "This image could not be assessed. P(malignant) is 70 %.",
        "This image could not be assessed. The malignant class scored 70.0 %.",
        "The model found no tissue here.",  # does not say it could not be assessed
    ],
)
def test_a_verdict_on_an_image_not_assessed_contradicts_the_facts(answer):
    assert grounding.problems(answer, refused_facts())


@pytest.mark.parametrize(
    "answer",
    [
        "This image could not be assessed: only 2 % of it is tissue, and at least 20 % is "
        "needed. The model gives no benign or malignant verdict on it.",
        "The image is not assessable (no tissue). Below the threshold, images are called "
        "benign; that does not apply here.",
    ],
)
def test_an_answer_that_keeps_to_no_verdict_passes(answer):
    assert grounding.problems(answer, refused_facts()) == []


def test_the_prompt_forbids_a_verdict_and_holds_no_class_probability_as_a_fact():
    facts = refused_facts()
    prompt = build_prompt(facts, None, [], IDENTIFIERS, 8000)
    assert "This image could not be assessed: the model gives no verdict on it" in prompt.system
    assert "give exactly the stored label" not in prompt.system
    assert "70.0 %" not in prompt.system and "no tissue was found (2.0 %" in prompt.system
    undecided = build_prompt(undecided_facts(), None, [], IDENTIFIERS, 8000)
    assert "The result is not decided (indeterminate)" in undecided.system
