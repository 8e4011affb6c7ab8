"""`/api/v1/predictions/{id}/explain`: the clinician assistant."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Request

from gateway.assistant.facts import gather_facts
from gateway.assistant.prompt import Turn
from gateway.assistant.schemas import ExplainRequest, Explanation, ExplanationFacts
from gateway.assistant.wording import CAVEAT
from gateway.deps import AssistantDep, AssistantQuota, DownstreamsDep
from gateway.plumbing.errors import error_responses
from gateway.plumbing.proxy import caller_identity

router = APIRouter(prefix="/api/v1/predictions", tags=["assistant"])


@router.post(
    "/{prediction_id}/explain",
    response_model=Explanation,
    summary="Explain a prediction in plain language, or answer a follow-up question",
    description=(
        "Built from the prediction's stored facts only: whether the image could be assessed "
        "and why (no verdict is ever stated on one that could not), label and probability, "
        "the decision "
        "threshold and what it means for sensitivity and specificity, the model version and "
        "its test metrics, where the Grad-CAM heatmap concentrates, whether it was reviewed. "
        "No patient identifier is sent to a language model. The answer names its provider; "
        "one that contradicts the stored label or probability is replaced by the built-in "
        "offline answer (`replaced`). Every exchange is an audit event. Clinicians and "
        "admins; limited per user like predictions."
    ),
    responses=error_responses(401, 403, 404, 422, 429, 503, 504),
)
async def explain_prediction(
    request: Request,
    downstreams: DownstreamsDep,
    assistant: AssistantDep,
    prediction_id: uuid.UUID,
    _: AssistantQuota,
    body: Annotated[ExplainRequest | None, Body()] = None,
) -> Explanation:
    body = body or ExplainRequest()
    headers = caller_identity(request)
    gathered = await gather_facts(downstreams, prediction_id, headers)
    history = [Turn(turn.role, turn.content) for turn in body.history]
    reply = await assistant.exchange(prediction_id, gathered, body.question, history, headers)
    facts = gathered.facts
    return Explanation(
        prediction_id=prediction_id,
        kind=reply.prompt.kind,
        answer=reply.completion.text,
        provider=reply.completion.provider,  # type: ignore[arg-type]
        model=reply.completion.model,
        replaced=reply.replaced_reason is not None,
        replaced_reason=reply.replaced_reason,  # type: ignore[arg-type]
        attempted_provider=reply.attempted_provider,
        facts=ExplanationFacts(
            label=facts.label,
            probability=facts.probability,
            probabilities=facts.probabilities,
            threshold=facts.threshold,
            model_version=facts.model_version,
            reviewed=facts.reviewed,
            heatmap_focus=facts.heatmap,
            assessment=facts.assessment,  # type: ignore[arg-type]
            reasons=list(facts.reasons),  # type: ignore[arg-type]
            failed_checks=list(facts.failed_checks),
        ),
        caveat=CAVEAT,
        prompt_sha256=reply.prompt.sha256(),
        latency_ms=reply.latency_ms,
        audit_event_id=reply.audit_event_id,
    )
