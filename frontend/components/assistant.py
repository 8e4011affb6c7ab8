"""Assistant: one prediction explained in plain language, then follow-up questions about it.
The gateway answers from the prediction's stored facts only, with a language model or its
built-in templates, and names which; what it answers is shown as text, never as Markdown."""

import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import streamlit as st

from frontend.components.assessment import render_verdict, verdict_text
from frontend.components.widgets import (
    percent,
    plain,
    show_error,
    show_prediction_images,
    when,
)
from frontend.utils.gateway_client import GatewayClient, GatewayError, SessionExpired

# The page's entry in navigation.PAGES, which a link from another page must name.
URL_PATH = "assistant"
ICON = ":material/smart_toy:"
ROLES = {"admin", "clinician"}  # the gateway's explain route refuses viewers
QUERY_PARAM = "prediction"  # ?prediction=<id> opens the page on that prediction
CONVERSATIONS_KEY = "assistant_conversations"
CHOICE_KEY = "assistant_prediction"
RECENT_LIMIT = 50
# The gateway's limits on a request: longer history or turns are refused, not shortened.
MAX_HISTORY_TURNS = 20
MAX_TURN_CHARS = 4000
MAX_QUESTION_CHARS = 1000
SUGGESTED_QUESTIONS = (
    "What does the decision threshold mean?",
    "Where did the model look?",
    "How do I record my review?",
)
PROVIDER_NAMES = {"openai": "OpenAI", "anthropic": "Anthropic"}
REPLACED_BECAUSE = {
    "contradicts_facts": "it contradicted the prediction's stored facts",
    "provider_error": "the provider failed to answer",
}


@dataclass
class Turn:
    role: str  # "user" or "assistant", as the gateway's history names them
    content: str
    reply: dict[str, Any] | None = None  # the gateway's whole answer, for an assistant turn


@dataclass
class Conversation:
    """One prediction's exchange, kept between reruns so that nothing is asked twice. A
    failed request is kept too, with its question, until it is asked again."""

    turns: list[Turn] = field(default_factory=list)
    caveat: str | None = None
    error: GatewayError | None = None
    unanswered: str | None = None

    def history(self) -> list[dict[str, str]]:
        """Every turn the user saw, oldest first, as far as the gateway takes them."""
        turns = self.turns[-MAX_HISTORY_TURNS:]
        return [{"role": t.role, "content": t.content[:MAX_TURN_CHARS]} for t in turns]


def prediction_option(prediction: dict[str, Any]) -> str:
    """A prediction in the list: not assessable ones show no probability."""
    label = prediction["label"]
    reviewed = " · reviewed" if prediction.get("reviewed") else ""
    probability = "" if label is None else f" · P({label}) {percent(prediction['probability'])}"
    return f"{when(prediction['created_at'])} · {verdict_text(prediction)}{probability}{reviewed}"


def answered_by(reply: dict[str, Any]) -> str:
    provider, model = reply["provider"], reply.get("model")
    if provider == "offline":
        return f"Answered by the built-in offline assistant ({plain(model or 'templates')})"
    name = PROVIDER_NAMES.get(provider, provider)
    return plain(f"Answered by {name} {model}" if model else f"Answered by {name}")


def replacement_note(reply: dict[str, Any]) -> str:
    attempted = reply.get("attempted_provider")
    whose = f" ({PROVIDER_NAMES.get(attempted, attempted)})" if attempted else ""
    because = REPLACED_BECAUSE.get(reply.get("replaced_reason") or "", "it could not be used")
    return plain(f"The language model's answer{whose} was replaced by the built-in one: {because}.")


def assistant_link(client: GatewayClient, prediction_id: str) -> None:
    """A link that opens the Assistant on this prediction, for the roles that may ask."""
    session = client.session
    if session is None or session.role not in ROLES:
        return
    page = st.Page(
        partial(render_assistant, client), title="Assistant", icon=ICON, url_path=URL_PATH
    )
    st.page_link(
        page,
        label="Ask the assistant",
        icon=":material/chat:",
        query_params={QUERY_PARAM: prediction_id},
    )


def linked_prediction(client: GatewayClient, recent: list[dict[str, Any]]) -> dict | None:
    """The prediction the page's address names, if any; a wrong one is said, not raised."""
    wanted = st.query_params.get(QUERY_PARAM)
    if not wanted:
        return None
    if found := next((p for p in recent if p["id"] == wanted), None):
        return found
    try:
        uuid.UUID(wanted)
    except ValueError:
        st.warning(
            f"The link names no prediction (“{plain(wanted)}” is not a prediction id); "
            "choose one below."
        )
        return None
    try:
        return client.prediction(wanted)
    except SessionExpired:
        raise
    except GatewayError as exc:
        if exc.status_code == 404:
            st.warning(f"The linked prediction {wanted} does not exist; choose one below.")
        else:
            show_error(exc, "load the linked prediction")
        return None


def follow_choice() -> None:
    """The address names the chosen prediction, so a reload or a bookmark keeps it."""
    st.query_params[QUERY_PARAM] = st.session_state[CHOICE_KEY]


def render_assistant(client: GatewayClient) -> None:
    st.header("Assistant")
    st.caption(
        "Ask about one prediction in plain language. The answers come from its stored facts "
        "only: label and probability, decision threshold, model and its test results, heatmap "
        "and review. The patient's reference and record ids are never sent to a language "
        "model; please do not type names or other identifiers into a question."
    )
    try:
        recent = client.predictions(limit=RECENT_LIMIT)["items"]
    except GatewayError as exc:
        show_error(exc, "load the predictions")
        return
    choices = {p["id"]: p for p in recent}
    linked = linked_prediction(client, recent)
    if linked is not None:
        if linked["id"] not in choices:  # older than the list: it leads it
            choices = {linked["id"]: linked, **choices}
        st.session_state[CHOICE_KEY] = linked["id"]  # the link wins over an earlier choice
    elif st.session_state.get(CHOICE_KEY) not in choices:
        st.session_state.pop(CHOICE_KEY, None)
    if not choices:
        st.info("No predictions yet: analyse an image first, then ask about it here.")
        return
    chosen = st.selectbox(
        "Prediction",
        list(choices),
        format_func=lambda prediction_id: prediction_option(choices[prediction_id]),
        key=CHOICE_KEY,
        on_change=follow_choice,
    )
    prediction = choices[chosen]
    render_summary(client, prediction)
    render_conversation(client, prediction["id"])


def render_summary(client: GatewayClient, prediction: dict[str, Any]) -> None:
    label = prediction["label"]
    with st.container(border=True):
        image_column, heatmap_column, facts_column = st.columns([1, 1, 3])
        show_prediction_images(client, prediction, image_column, heatmap_column)
        with facts_column:
            render_verdict(prediction)
            # No probability for what could not be assessed: it would read as a verdict.
            probability = (
                "" if label is None else f"P({label}) **{percent(prediction['probability'])}** · "
            )
            st.caption(
                f"{probability}decision threshold P(malignant) {percent(prediction['threshold'])}"
                f" · model **{plain(prediction['model_version'])}** · "
                f"{when(prediction['created_at'])}"
            )
            if focus := prediction.get("heatmap_focus"):
                st.caption(heatmap_focus(focus))
            st.caption(
                "Reviewed by a clinician." if prediction.get("reviewed") else "Not reviewed yet."
            )


def heatmap_focus(focus: dict[str, Any]) -> str:
    if focus["spread"] == "none" or not focus.get("region"):
        return "Grad-CAM: no region stands out."
    areas = int(focus.get("areas") or 1)
    where = f"{areas} areas, the strongest in the " if areas > 1 else "the "
    return (
        f"Grad-CAM concentrates in {where}{plain(focus['region'])} "
        f"({focus['spread']}, {percent(focus['hot_area_fraction'])} of the image)."
    )


def ask(
    client: GatewayClient, prediction_id: str, conversation: Conversation, question: str | None
) -> None:
    """One request to the gateway; its answer, or its failure, goes into the conversation."""
    try:
        reply = client.explain(prediction_id, question, conversation.history())
    except SessionExpired:
        raise  # not this question's failure: the whole page goes back to sign-in
    except GatewayError as exc:
        conversation.error, conversation.unanswered = exc, question
        return
    conversation.error = conversation.unanswered = None
    if question is not None:
        conversation.turns.append(Turn("user", question))
    conversation.turns.append(Turn("assistant", reply["answer"], reply))
    conversation.caveat = reply.get("caveat") or conversation.caveat


def render_turn(turn: Turn) -> None:
    with st.chat_message(turn.role):
        st.markdown(plain(turn.content))
        if turn.reply is not None:
            st.caption(answered_by(turn.reply))
            if turn.reply.get("replaced"):
                st.warning(replacement_note(turn.reply), icon=":material/swap_horiz:")


def render_conversation(client: GatewayClient, prediction_id: str) -> None:
    conversations: dict[str, Conversation] = st.session_state.setdefault(CONVERSATIONS_KEY, {})
    conversation = conversations.setdefault(prediction_id, Conversation())
    if not conversation.turns and conversation.error is None:
        with st.spinner("Explaining this prediction…"):
            ask(client, prediction_id, conversation, None)
    if conversation.caveat:
        st.info(plain(conversation.caveat), icon=":material/medical_information:")
    thread = st.container()
    with thread:
        for turn in conversation.turns:
            render_turn(turn)
        if conversation.unanswered is not None:
            with st.chat_message("user"):
                st.markdown(plain(conversation.unanswered))
        if conversation.error is not None:
            doing = "answer the question" if conversation.unanswered else "explain it"
            show_error(conversation.error, doing)
    retry = conversation.error is not None and st.button("Ask again")
    if not conversation.turns:  # no explanation yet: nothing to follow up on
        if retry:
            conversation.error = None
            st.rerun()
        return

    with st.container(horizontal=True):
        # Every button is drawn, whichever was pressed.
        pressed = [q for q in SUGGESTED_QUESTIONS if st.button(q)]
        start_over = st.button("Start over", icon=":material/restart_alt:", type="tertiary")
    if start_over:
        del conversations[prediction_id]
        st.rerun()
    typed = st.chat_input("Ask about this prediction", max_chars=MAX_QUESTION_CHARS)
    question = (typed or "").strip() or next(iter(pressed), None)
    if retry and not question:
        question = conversation.unanswered
    if not question:
        return
    with thread:
        with st.chat_message("user"):
            st.markdown(plain(question))
        with st.chat_message("assistant"), st.spinner("Thinking…"):
            ask(client, prediction_id, conversation, question)
    st.rerun()
