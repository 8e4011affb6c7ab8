"""Patients and history: find a patient, see their predictions over time, open one."""

from typing import Any

import plotly.graph_objects as go
import streamlit as st

from frontend.components.assessment import (
    INDETERMINATE,
    assessment_name,
    assessment_of,
    verdict_text,
)
from frontend.components.result import render_prediction
from frontend.components.widgets import (
    CHART_COLOURS,
    NEUTRAL_COLOUR,
    label_markdown,
    plain,
    show_error,
    when,
)
from frontend.utils.gateway_client import GatewayClient, GatewayError

HISTORY_LIMIT = 100
NOT_DECIDED = "not decided"
LABELS = list(CHART_COLOURS)


def history_chart(predictions: list[dict[str, Any]]) -> go.Figure:
    """P(malignant) of each prediction over time, coloured by label, with the threshold. Not
    decided ones are grey; not assessable ones have no verdict, so no point at all."""
    figure = go.Figure()
    series = {label: [p for p in predictions if verdict_text(p) == label] for label in LABELS}
    series[NOT_DECIDED] = [p for p in predictions if assessment_of(p) == INDETERMINATE]
    for label, chosen in series.items():
        colour = CHART_COLOURS.get(label, NEUTRAL_COLOUR)
        figure.add_trace(
            go.Scatter(
                x=[p["created_at"] for p in chosen],
                y=[p["probabilities"].get("malignant", 0.0) for p in chosen],
                mode="markers",
                name=label,
                marker={"color": colour, "size": 10},
            )
        )
    thresholds = {p["threshold"] for p in predictions}
    if len(thresholds) == 1:
        figure.add_hline(y=thresholds.pop(), line_dash="dot", annotation_text="threshold")
    figure.update_layout(
        yaxis={"title": "P(malignant)", "range": [-0.02, 1.02]},
        xaxis={"type": "date", "tickformat": "%Y-%m-%d\n%H:%M"},
        height=300,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return figure


def prediction_option(prediction: dict[str, Any]) -> str:
    """A prediction in a list: not assessable ones show no probability."""
    p = prediction["probabilities"].get("malignant", 0.0)
    probability = "" if prediction.get("label") is None else f" · P(malignant) {p:.2f}"
    reviewed = " · reviewed" if prediction.get("reviewed") else ""
    return f"{when(prediction['created_at'])} · {verdict_text(prediction)}{probability}{reviewed}"


def render_review_history(client: GatewayClient, prediction_id: str) -> None:
    try:
        reviews = client.reviews(prediction_id)
    except GatewayError as exc:
        show_error(exc, "load the reviews")
        return
    for review in reviews:
        verdict = (
            "agreed"
            if review["verdict"] == "agree"
            else f"corrected to {label_markdown(review['corrected_label'])}"
        )
        current = "" if review["is_current"] else " (replaced by a later review)"
        comment = f" — “{plain(review['comment'])}”" if review.get("comment") else ""
        st.markdown(f"- {when(review['created_at'])}: {verdict}{current}{comment}")


def render_predictions(client: GatewayClient, predictions: list[dict[str, Any]], key: str) -> None:
    st.plotly_chart(history_chart(predictions), key=f"{key}-chart")
    st.dataframe(
        [
            {
                "when": when(p["created_at"]),
                "assessment": assessment_name(p),
                "label": verdict_text(p),
                "P(malignant)": None
                if p.get("label") is None
                else round(p["probabilities"].get("malignant", 0.0), 3),
                "model": p["model_version"],
                "reviewed": p["reviewed"],
            }
            for p in predictions
        ],
        hide_index=True,
    )
    by_id = {p["id"]: p for p in predictions}
    chosen = st.selectbox(
        "Open a prediction",
        list(by_id),
        format_func=lambda prediction_id: prediction_option(by_id[prediction_id]),
        key=f"{key}-open",
    )
    if chosen:
        prediction = by_id[chosen]
        with st.container(border=True):
            render_prediction(client, prediction, key=f"{key}-detail")
            render_review_history(client, prediction["id"])


def render_history(client: GatewayClient) -> None:
    st.header("Patients and history")
    scope = st.radio("Show", ["A patient's predictions", "All recent predictions"], horizontal=True)
    if scope == "All recent predictions":
        try:
            recent = client.predictions(limit=HISTORY_LIMIT)["items"]
        except GatewayError as exc:
            show_error(exc, "load the predictions")
            return
        if not recent:
            st.info("No predictions yet.")
            return
        render_predictions(client, recent, key="recent")
        return

    search = st.text_input("Search patients by reference", placeholder="e.g. H-2026-").strip()
    try:
        patients = client.patients(search=search or None)["items"]
    except GatewayError as exc:
        show_error(exc, "search patients")
        return
    if not patients:
        st.info("No patient matches." if search else "No patients are registered yet.")
        return
    by_reference = {p["external_ref"]: p for p in patients}
    reference = st.selectbox("Patient", list(by_reference))
    patient = by_reference[reference]
    details = [f"registered {when(patient['created_at'])}", f"sex {patient['sex']}"]
    if patient.get("birth_year"):
        details.append(f"born {patient['birth_year']}")
    st.caption(" · ".join(details))
    try:
        predictions = client.predictions(patient_id=patient["id"], limit=HISTORY_LIMIT)["items"]
    except GatewayError as exc:
        show_error(exc, "load this patient's predictions")
        return
    if not predictions:
        st.info(f"No predictions for {reference} yet.")
        return
    count = f"Latest {len(predictions)}" if len(predictions) == HISTORY_LIMIT else len(predictions)
    st.subheader(f"{count} predictions for {reference}")
    render_predictions(client, predictions, key="patient")
