"""The clinician assistant without the stack: the offline provider per label and probability
band, the grounding check, the prompt (no identifier in it, the token budget), and one
exchange with a provider whose answer contradicts the facts."""

import logging
import re
import time
import uuid

import pytest
from prometheus_client import CollectorRegistry

from gateway.assistant import grounding, offline, wording
from gateway.assistant.facts import Gathered, _model_detail, facts_from, reference_variants
from gateway.assistant.offline import OfflineProvider
from gateway.assistant.prompt import REDACTED, Turn, build_prompt, estimated_tokens
from gateway.assistant.providers import Exchange, OpenAIProvider, VendorSettings
from gateway.assistant.service import Assistant, provider_from_settings
from gateway.plumbing.downstream import Downstreams
from gateway.settings import GatewaySettings
from tests.support.llm_server import Reply, openai_completion, openai_error, scripted_llm_server

THRESHOLD = 0.35
CARD = {
    "version": "demo-synthetic-1",
    "threshold_rule": {"target": 0.95, "metric": "sensitivity", "chosen_on": "validation split"},
    "metrics": {
        "split": "test",
        "images": 400,
        "sensitivity": 0.96,
        "specificity": 0.812,
        "precision": 0.83,
        "accuracy": 0.88,
        "roc_auc": 0.953,
        "threshold": THRESHOLD,
    },
    "training_data": {"synthetic": True},
    "intended_use": "Decision support for trained clinicians.",
    "warning": "Trained on synthetic images: a demonstration, not a medical device.",
}
PATIENT_REF = "MRN-77/Smith"
PATIENT_ID = str(uuid.uuid4())
IMAGE_ID = str(uuid.uuid4())
REQUESTER = str(uuid.uuid4())
PREDICTION_ID = str(uuid.uuid4())
IDENTIFIERS = (*reference_variants(PATIENT_REF), PATIENT_ID, IMAGE_ID, REQUESTER, PREDICTION_ID)


def stored_prediction(p_malignant: float, **changes) -> dict:
    label = "malignant" if p_malignant >= THRESHOLD else "benign"
    probabilities = {"benign": round(1 - p_malignant, 6), "malignant": p_malignant}
    return {
        "id": PREDICTION_ID,
        "image_id": IMAGE_ID,
        "patient_id": PATIENT_ID,
        "requested_by": REQUESTER,
        "model_version": "demo-synthetic-1",
        "label": label,
        "probability": probabilities[label],
        "probabilities": probabilities,
        "threshold": THRESHOLD,
        "heatmap_ref": IMAGE_ID,
        "heatmap_focus": {
            "region": "upper left",
            "peak_region": "centre",
            "hot_area_fraction": 0.124,
            "spread": "focal",
        },
        **changes,
    }


def make_facts(p_malignant: float, reviews=(), card=CARD, **changes):
    detail = {"card": card} if card else None
    note = None if card else "the model registry could not be reached"
    return facts_from(stored_prediction(p_malignant, **changes), list(reviews), detail, note)


BANDS = [
    ("malignant", 0.97, "high", "is confident in malignant"),
    ("malignant", 0.72, "moderate", "leans clearly towards malignant"),
    ("malignant", 0.38, "borderline", "could flip it to benign"),
    ("benign", 0.02, "high", "is confident in benign"),
    ("benign", 0.18, "moderate", "leans clearly towards benign"),
    ("benign", 0.30, "borderline", "could flip it to malignant"),
]


@pytest.mark.parametrize(("label", "p_malignant", "band", "says"), BANDS)
def test_the_offline_explanation_for_each_label_and_band(label, p_malignant, band, says):
    facts = make_facts(p_malignant)
    assert (facts.label, wording.band(facts)) == (label, band)

    text = offline.explanation(facts)

    probability = p_malignant if label == "malignant" else 1 - p_malignant
    assert f"assessed this image as {label}, with a probability of {probability * 100:.1f} %" in (
        text
    )
    assert says in text
    assert "P(malignant) is 35.0 % or more" in text  # the threshold
    assert "at least 95.0 % of malignant images (sensitivity)" in text
    assert "sensitivity 96.0 %, specificity 81.2 %, ROC AUC 0.95." in text  # short: three
    assert "missed about 4" in text and "about 19 were false alarms" in text
    assert "concentrated in the upper left of the image, strongest in the centre" in text
    assert "covering 12.4 % of it (focal)" in text
    assert "no clinician has reviewed this prediction yet" in text
    assert "assists and does not diagnose" in text
    assert "not a medical device" in text  # the card's warning for a synthetic model
    assert grounding.problems(text, facts) == []


def test_the_offline_explanation_says_what_is_missing_and_who_reviewed():
    without_card = make_facts(0.9, card=None, heatmap_focus=None)
    text = offline.explanation(without_card)
    assert "the model registry could not be reached" in text
    assert "no summary of where it concentrates was recorded" in text
    assert grounding.problems(text, without_card) == []

    reviews = [
        {"verdict": "agree", "corrected_label": None, "is_current": True},
        {"verdict": "disagree", "corrected_label": "benign", "is_current": True},
        {"verdict": "disagree", "corrected_label": "benign", "is_current": False},
    ]
    reviewed = make_facts(0.9, reviews=reviews, heatmap_ref=None, heatmap_focus=None)
    text = offline.explanation(reviewed)
    assert "one clinician agreed with the model; one clinician corrected the label to benign" in (
        text
    )
    assert "Heatmap: none was made for this prediction." in text
    assert grounding.problems(text, reviewed) == []

    flat = make_facts(
        0.9,
        heatmap_focus={
            "region": None,
            "peak_region": None,
            "hot_area_fraction": 0.0,
            "spread": "none",
        },
    )
    assert "no region of the image pushed the model" in offline.explanation(flat)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What does the decision threshold mean?", "P(malignant) is 35.0 % or more"),
        ("Where did the model look?", "concentrated in the upper left"),
        ("How sure is the model?", "with a probability of 87.0 %"),
        ("Has anyone reviewed it?", "no clinician has reviewed this prediction yet"),
        ("How do I export the labels for retraining?", "download the reviewed labels as CSV"),
        ("How do I upload a new image?", "open Analyse"),
        ("Should I send the patient to surgery?", "does not diagnose"),
        ("What is the weather tomorrow?", "did not find your question"),
        ("Is the procedure safe to measure?", "did not find your question"),  # no roc, sure
    ],
)
def test_the_offline_provider_answers_follow_up_questions(question, expected):
    facts = make_facts(0.87)
    answer = offline.answer_question(facts, question)
    assert expected in answer
    assert grounding.problems(answer, facts, question) == []


@pytest.mark.parametrize(
    "answer",
    [
        "The model classified this image as benign with a probability of 87.3 %.",
        "Its prediction: benign (87.3 %). The model assessed it as malignant.",
        "The model assessed this image as malignant, with a probability of 42.0 %.",
        "The model assessed this image as malignant, with a probability of 0.42.",
        "The model assessed this image as malignant.",  # no probability
        "There is a probability of 87.3 % here.",  # no label
    ],
)
def test_an_answer_that_contradicts_or_omits_the_stored_facts_is_caught(answer):
    assert grounding.problems(answer, make_facts(0.873))


@pytest.mark.parametrize(
    "answer",
    [
        "The model assessed this image as malignant, with a probability of 87.3 %.",
        "It was classified as malignant (about 87 %), not benign; P(benign) is 12.7 %.",
        "The model predicted malignant with probability 0.873; it would have labelled it "
        "benign only below 35 %. Sensitivity 96 % means it misses about 4 % of cancers.",
    ],
)
def test_an_answer_that_agrees_with_the_facts_passes(answer):
    assert grounding.problems(answer, make_facts(0.873)) == []


def test_a_follow_up_may_repeat_the_numbers_of_the_question_but_not_invent_others():
    facts = make_facts(0.873)
    question = "What would happen at a threshold of 50 %?"
    assert grounding.problems("At 50 % it would still be malignant.", facts, question) == []
    assert grounding.problems("At 60 % it would be benign.", facts, question)


def test_no_patient_identifier_reaches_the_prompt():
    facts = make_facts(0.873)
    question = (
        f"Is this {PATIENT_REF} (patient {PATIENT_ID}, image {IMAGE_ID}) the same as "
        "jane.doe@hospital.example, born 12/03/1961, record 4451278?"
    )
    history = [
        Turn("user", f"Explain the result of {PATIENT_REF.lower()}"),
        Turn("assistant", f"Prediction {PREDICTION_ID} of user {REQUESTER} ..."),
    ]

    prompt = build_prompt(facts, question, history, IDENTIFIERS, max_input_tokens=4000)

    text = prompt.text()
    for identifier in (*IDENTIFIERS, "jane.doe@hospital.example", "12/03/1961", "4451278"):
        assert identifier.lower() not in text.lower()
    assert text.count(REDACTED) >= 8
    assert re.search(r"[0-9a-f]{8}-[0-9a-f]{4}", text) is None  # no id of any kind
    # The facts are all there.
    assert "malignant, with a probability of 87.3 %" in prompt.system
    assert "concentrated in the upper left" in prompt.system
    assert "precision 83.0 %, accuracy 88.0 %" in prompt.system  # every metric of the card


def test_the_oldest_turns_are_left_out_when_the_conversation_exceeds_the_budget():
    facts = make_facts(0.873)
    history = []
    for n in range(12):
        history += [Turn("user", f"question {n} " + "x" * 800), Turn("assistant", f"answer {n}")]
    question = "And the heatmap?"

    prompt = build_prompt(facts, question, history, (), max_input_tokens=2000)

    kept = prompt.messages[:-1]
    assert 0 < len(kept) < len(history)
    assert kept[-1].content == "answer 11"  # the newest turns are kept
    assert kept[0].role == "user"  # the conversation still opens with the clinician
    total = estimated_tokens(prompt.system) + sum(estimated_tokens(t.content) for t in kept)
    assert total + estimated_tokens(question) <= 2000
    assert prompt.messages[-1] == Turn("user", question)


def test_the_prompt_hash_identifies_the_prompt():
    facts = make_facts(0.873)
    first = build_prompt(facts, "Why?", [], (), 4000)
    assert first.sha256() == build_prompt(facts, "Why?", [], (), 4000).sha256()
    assert first.sha256() != build_prompt(facts, "Why not?", [], (), 4000).sha256()
    assert re.fullmatch(r"[0-9a-f]{64}", first.sha256())


def test_the_provider_follows_the_keys_in_the_environment(monkeypatch):
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GATEWAY_ASSISTANT_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    assert provider_from_settings(GatewaySettings(_env_file=None)).name == "offline"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    assert provider_from_settings(GatewaySettings(_env_file=None)).name == "anthropic"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert provider_from_settings(GatewaySettings(_env_file=None)).name == "openai"
    monkeypatch.setenv("GATEWAY_ASSISTANT_PROVIDER", "offline")
    assert provider_from_settings(GatewaySettings(_env_file=None)).name == "offline"
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ValueError, match="needs its API key"):
        GatewaySettings(_env_file=None, assistant_provider="anthropic")


async def test_a_contradicting_answer_is_replaced_logged_and_recorded(caplog):
    """A provider that calls a malignant prediction benign: the clinician gets the offline
    answer, the replacement is logged, and the audit event says so (never the key)."""
    facts = make_facts(0.873)
    with scripted_llm_server() as llm, scripted_llm_server() as data:
        llm.script(Reply(200, openai_completion("The model classified the image as benign.")))
        data.script(Reply(201, {"audit_event_id": 41, "prediction_id": PREDICTION_ID}))
        settings = GatewaySettings(_env_file=None, data_url=data.url)
        downstreams = Downstreams(settings, CollectorRegistry())
        provider = OpenAIProvider(
            VendorSettings("sk-secret-test", "gpt-test", f"{llm.url}/v1", 5, 0, 300)
        )
        assistant = Assistant(provider, downstreams, 4000, 10.0, CollectorRegistry())
        try:
            with caplog.at_level(logging.WARNING, logger="gateway.assistant"):
                reply = await assistant.exchange(
                    uuid.UUID(PREDICTION_ID), Gathered(facts, IDENTIFIERS), None, [], {}
                )
        finally:
            await assistant.close()
            await downstreams.close()

    assert reply.completion.provider == "offline"
    assert reply.completion.text == offline.explanation(facts)
    assert (reply.replaced_reason, reply.attempted_provider) == ("contradicts_facts", "openai")
    assert reply.audit_event_id == 41
    assert "replaced by the offline one" in caplog.text
    assert "gives the assessment as benign" in caplog.text
    [audit] = data.requests
    assert audit.path == f"/predictions/{PREDICTION_ID}/explanations"
    assert audit.body["provider"] == "offline"
    assert audit.body["attempted_provider"] == "openai"
    assert audit.body["replaced"] is True
    assert audit.body["replaced_reason"] == "contradicts_facts"
    assert audit.body["prompt_sha256"] == reply.prompt.sha256()
    assert audit.body["latency_ms"] >= 0
    assert "sk-secret-test" not in str(audit.body) and "sk-secret-test" not in caplog.text
    assert audit.body["input_tokens"] == 321  # the vendor's tokens were spent all the same


async def test_the_offline_provider_is_its_own_fallback():
    facts = make_facts(0.2)
    prompt = build_prompt(facts, None, [], (), 4000)
    completion = await OfflineProvider().answer(Exchange(prompt, facts))
    assert completion.provider == "offline" and completion.model == "templates"
    assert completion.text.startswith("The model assessed this image as benign")


async def test_a_provider_past_the_deadline_gives_way_to_the_offline_answer():
    """Retries of slow attempts must not outlast the frontend's patience."""
    facts = make_facts(0.2)
    with scripted_llm_server() as llm, scripted_llm_server() as data:
        llm.script(*[Reply(500, openai_error("overloaded"), delay_s=1.0)] * 3)
        data.script(Reply(201, {"audit_event_id": 42, "prediction_id": PREDICTION_ID}))
        settings = GatewaySettings(_env_file=None, data_url=data.url)
        downstreams = Downstreams(settings, CollectorRegistry())
        # Each failing attempt is within its own timeout; the three are not within 1.5 s.
        provider = OpenAIProvider(VendorSettings("sk-test", "gpt-test", f"{llm.url}/v1", 5, 2, 300))
        assistant = Assistant(provider, downstreams, 4000, 1.5, CollectorRegistry())
        started = time.monotonic()
        try:
            reply = await assistant.exchange(
                uuid.UUID(PREDICTION_ID), Gathered(facts, ()), None, [], {}
            )
        finally:
            await assistant.close()
            await downstreams.close()
    assert time.monotonic() - started < 3.0
    assert (reply.completion.provider, reply.replaced_reason) == ("offline", "provider_error")
    assert reply.completion.text == offline.explanation(facts)
    assert data.requests[0].body["replaced_reason"] == "provider_error"


def test_a_conversation_opening_with_the_explanation_keeps_it():
    """The page sends the explanation as the first turn: it stays in the model's context."""
    facts = make_facts(0.873)
    explanation = offline.explanation(facts)
    prompt = build_prompt(facts, "Why?", [Turn("assistant", explanation)], (), 4000)
    assert [t.role for t in prompt.messages] == ["user", "assistant", "user"]
    assert prompt.messages[1].content == explanation


AGREEING_FOLLOW_UPS = [
    (0.2, "Images with P(malignant) of 35 % or more are labelled malignant; below that, benign."),
    (0.873, "Images with P(malignant) below 35 % are classified as benign."),
    (0.2, "The system calls an image malignant once P(malignant) reaches 35 %."),
    (0.2, "It flags a patch as malignant when P(malignant) is 35 % or more."),
    (0.30, "This one is borderline, so it could easily be classified as malignant."),
    (0.873, "The model predicts a low probability of benign (12.7 %)."),
    (0.873, "The model is nearly 90 % sure; about 20 % of benign images were false alarms."),
    (0.873, "The model assessed it as malignant (87 %). Verdict: malignant."),
]


@pytest.mark.parametrize(("p_malignant", "answer"), AGREEING_FOLLOW_UPS)
def test_general_conditional_and_approximate_statements_are_not_contradictions(p_malignant, answer):
    assert grounding.problems(answer, make_facts(p_malignant), "Why?") == []


def test_a_reviewers_correction_is_a_fact_not_a_contradiction():
    facts = make_facts(0.873, reviews=[{"verdict": "disagree", "corrected_label": "benign"}])
    answer = "One clinician reviewed it and judged it benign; the model said malignant."
    assert grounding.problems(answer, facts, "Was it reviewed?") == []


@pytest.mark.parametrize(
    "answer",
    [
        "The model assessed this image as malignant, with a probability of 87.3 per cent.",
        "The model assessed this image as malignant, with a probability of 0.873.",
        "The model assessed this image as malignant (87.3 %). It assists and does not diagnose.",
    ],
)
def test_explanations_in_other_notations_pass(answer):
    assert grounding.problems(answer, make_facts(0.873)) == []


@pytest.mark.parametrize(
    ("answer", "question"),
    [
        # The caveat's "not" in the sentence before does not excuse the claim.
        (
            "This tool assists and does not diagnose. The model assessed this image as "
            "benign, with P(malignant) at 87.3 %.",
            None,
        ),
        ("Verdict: benign. P(malignant) 87.3 %.", None),  # the label only inside P(...)
        ("The model assessed it as malignant with a probability of 65 %.", "Why?"),
        ("P(malignant) is 12.7 %.", "Why?"),
        ("The model thinks this tissue is benign.", "Why?"),
        ("The probability of malignancy is 0.42.", "Why?"),
        ("It changes by 6 %.", "What happens at 50 %?"),  # 50 is asked, 6 is no fact
    ],
)
def test_subtler_contradictions_are_caught(answer, question):
    assert grounding.problems(answer, make_facts(0.873), question)


@pytest.mark.parametrize("p_malignant", [0.001, 0.004, 0.995, 0.9999, 0.5, 0.349, 0.35])
@pytest.mark.parametrize("card", [CARD, None])
def test_the_offline_answers_pass_their_own_check_at_the_extremes(p_malignant, card):
    facts = make_facts(p_malignant, card=card)
    assert grounding.problems(offline.explanation(facts), facts) == []
    for _, words in offline.INTENTS:
        question = f"What about the {words[0]}?"
        assert grounding.problems(offline.answer_question(facts, question), facts, question) == []


def test_a_malignant_label_below_even_odds_is_explained():
    facts = make_facts(0.46)  # above the 35 % threshold, below 50 %
    text = offline.explanation(facts)
    assert "by the model's own probabilities benign is the more likely class here" in text
    assert "the decision threshold is set low" in text
    assert grounding.problems(text, facts) == []
    assert "more likely class here" not in offline.explanation(make_facts(0.72))


def test_separate_hot_areas_are_counted_in_the_explanation():
    focus = {
        "region": "upper left",
        "peak_region": "upper left",
        "hot_area_fraction": 0.125,
        "spread": "focal",
        "areas": 2,
        "added_later": "ignored",  # a newer inference service's field does not break it
    }
    facts = make_facts(0.873, heatmap_focus=focus)
    text = offline.explanation(facts)
    assert "concentrated in 2 separate areas, the strongest in the upper left" in text
    assert grounding.problems(text, facts) == []


@pytest.mark.parametrize(
    ("typed", "gone"),
    [
        ("Is this Mrs Smith (MRN 77)?", ["Smith", "77"]),
        ("ref MRN77Smith", ["MRN77Smith"]),
        ("born 12/3/61", ["12/3/61"]),
        ("born 3 March 1961", ["March 1961"]),
        ("born March 3, 1961", ["March 3, 1961"]),
        ("record 44512", ["44512"]),
        ("hospital no. 1234-5", ["1234-5"]),
        ("patient 7 again", ["7"]),
    ],
)
def test_identifiers_typed_in_other_forms_are_redacted(typed, gone):
    prompt = build_prompt(make_facts(0.873), typed, [], IDENTIFIERS, 4000)
    for part in gone:
        assert part not in prompt.question
    assert REDACTED in prompt.question


def test_a_short_reference_does_not_eat_ordinary_words():
    prompt = build_prompt(make_facts(0.873), "Why malignant, Ma?", [], ("ma",), 4000)
    assert prompt.question == f"Why malignant, {REDACTED}?"


@pytest.mark.parametrize(
    ("reply", "note"),
    [
        (Reply(503, {"error": {"code": "service_unavailable", "message": "no db"}}), "reached"),
        (Reply(404, {"error": {"code": "not_found", "message": "no such version"}}), "no longer"),
        (Reply(200, {"card": {"threshold_rule": "odd", "metrics": []}}), "could not be read"),
    ],
)
async def test_an_unhelpful_registry_leaves_the_rest_of_the_facts(reply, note):
    with scripted_llm_server() as registry:
        registry.script(reply)
        settings = GatewaySettings(_env_file=None, inference_url=registry.url, retry_attempts=1)
        downstreams = Downstreams(settings, CollectorRegistry())
        try:
            detail, why = await _model_detail(downstreams, "demo-synthetic-1", {})
        finally:
            await downstreams.close()
    facts = facts_from(stored_prediction(0.873), [], detail, why)
    assert facts.model is None and note in (facts.model_note or "")
    assert grounding.problems(offline.explanation(facts), facts) == []
