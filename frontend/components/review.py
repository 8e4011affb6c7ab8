"""Review queue: predictions one at a time, in the order the gateway gives (indeterminate ones
and those a reviewer disagreed on first, then the newest: what a review teaches the model
most); agree, or correct the label, with a comment. What it records is the labelled set that
`GET /exports/labels` hands to `ml/`."""

from typing import Any

import streamlit as st

from frontend.components.assessment import INDETERMINATE, assessment_of
from frontend.components.result import render_prediction
from frontend.components.widgets import label_markdown, show_error
from frontend.utils.gateway_client import GatewayClient, GatewayError

QUEUE_PAGE = 100
SKIPPED_KEY = "review_skipped"
FLASH_KEY = "review_flash"
AGREE, CORRECT = "Agree with the model", "Correct the label"


def render_review_queue(client: GatewayClient) -> None:
    st.header("Review queue")
    st.caption(
        "Each review is kept with its reviewer and time; a later review of the same "
        "prediction replaces the earlier one in the statistics and the export."
    )
    if flash := st.session_state.pop(FLASH_KEY, None):
        st.success(flash)
    skipped: set[str] = st.session_state.setdefault(SKIPPED_KEY, set())
    try:
        waiting = client.review_queue(limit=QUEUE_PAGE)["items"]
    except GatewayError as exc:
        show_error(exc, "load the review queue")
        return
    pending = [p for p in waiting if p["id"] not in skipped]
    more = "+" if len(waiting) == QUEUE_PAGE else ""
    st.caption(
        f"{len(pending)}{more} waiting for review: the ones the model could not decide first, "
        "then the newest."
    )
    if not pending:
        st.success("Nothing left to review.")
        if skipped and st.button("Show the skipped ones again"):
            skipped.clear()
            st.rerun()
    else:
        render_review_form(client, pending[0], skipped)
    if client.session and client.session.role == "admin":
        render_label_export(client)


def render_review_form(client: GatewayClient, prediction: dict, skipped: set[str]) -> None:
    prediction_id = prediction["id"]
    with st.container(border=True):
        render_priority(client, prediction)
        render_prediction(client, prediction, key="review")
        verdict = st.radio(
            "Your assessment", [AGREE, CORRECT], horizontal=True, key=f"verdict-{prediction_id}"
        )
        corrected = None
        if verdict == CORRECT:
            corrected = st.selectbox(
                "Correct label", correction_choices(prediction), key=f"label-{prediction_id}"
            )
        comment = st.text_area("Comment (optional)", max_chars=4000, key=f"comment-{prediction_id}")
        submit_column, skip_column = st.columns([1, 4])
        submitted = submit_column.button("Submit review", type="primary")
        if skip_column.button("Skip for now"):
            skipped.add(prediction_id)
            st.rerun()
    if not submitted:
        return
    if corrected == prediction["label"]:
        st.warning("That is the model's own label: choose “Agree with the model” instead.")
        return
    try:
        client.review(
            prediction_id,
            "agree" if verdict == AGREE else "disagree",
            corrected_label=corrected,
            comment=comment.strip() or None,
        )
    except GatewayError as exc:
        show_error(exc, "record the review")
        return
    outcome = "agreement" if corrected is None else f"correction to {label_markdown(corrected)}"
    st.session_state[FLASH_KEY] = f"Review recorded: {outcome}."
    st.rerun()


def correction_choices(prediction: dict[str, Any]) -> list[str]:
    """The other label first; both, in order, for an image the model gave no label."""
    label = prediction.get("label")
    if label is None:
        return ["benign", "malignant"]
    return ["benign" if label == "malignant" else "malignant", label]


def priority_badges(prediction: dict[str, Any], reviews: list[dict[str, Any]]) -> list[str]:
    """Why the queue puts this prediction first, if it does."""
    badges = []
    if assessment_of(prediction) == INDETERMINATE:
        badges.append("Not decided by the model")
    if any(r["is_current"] and r["verdict"] == "disagree" for r in reviews):
        badges.append("A reviewer disagreed with the model")
    return badges


def render_priority(client: GatewayClient, prediction: dict[str, Any]) -> None:
    # Only a prediction reviewed already can carry a disagreement: one request, for it alone.
    reviews: list[dict[str, Any]] = []
    if prediction.get("reviewed"):
        try:
            reviews = client.reviews(prediction["id"])
        except GatewayError as exc:
            show_error(exc, "load its earlier reviews")
    badges = priority_badges(prediction, reviews)
    if badges:
        with st.container(horizontal=True):
            for badge in badges:
                st.badge(
                    f"First in the queue: {badge.lower()}",
                    icon=":material/priority_high:",
                    color="orange",
                )


def render_label_export(client: GatewayClient) -> None:
    st.divider()
    st.subheader("Export reviewed labels")
    st.caption(
        "One row per reviewed prediction with the clinician's label: the training set "
        "for `make train`. The export is a snapshot taken when you prepare it."
    )
    if st.button("Prepare the export"):
        try:
            st.session_state["label_export"] = client.label_export()
        except GatewayError as exc:
            show_error(exc, "export the labels")
    if export := st.session_state.get("label_export"):
        rows = max(export.count(b"\n") - 1, 0)
        st.download_button(
            f"Download labels.csv ({rows} rows)", export, "labels.csv", mime="text/csv"
        )
