"""One prediction: the original beside its Grad-CAM overlay, whether it could be assessed,
the label and P(malignant) as a gauge against the decision threshold when it could, where it
came from, and the way to ask about it."""

from typing import Any

import plotly.graph_objects as go
import streamlit as st

from frontend.components.assessment import (
    INDETERMINATE,
    NOT_ASSESSABLE,
    assessment_of,
    render_verdict,
)
from frontend.components.assistant import assistant_link
from frontend.components.widgets import (
    CHART_COLOURS,
    NEUTRAL_COLOUR,
    show_prediction_images,
    when,
)
from frontend.utils.gateway_client import GatewayClient


def probability_gauge(p_malignant: float, threshold: float, decided: bool = True) -> go.Figure:
    """P(malignant) in percent; the black line is the threshold at which the label flips.
    A result that is not decided gets a neutral bar: its colour must not read as a verdict."""
    colour = CHART_COLOURS["malignant" if p_malignant >= threshold else "benign"]
    figure = go.Figure(
        go.Indicator(
            mode="gauge+number",
            value=round(p_malignant * 100, 1),
            number={"suffix": " %"},
            title={"text": "P(malignant)"},
            gauge={
                "axis": {"range": [0, 100]},
                "bar": {"color": colour if decided else NEUTRAL_COLOUR},
                "threshold": {"line": {"color": "black", "width": 4}, "value": threshold * 100},
            },
        )
    )
    figure.update_layout(height=220, margin={"l": 35, "r": 35, "t": 50, "b": 10})
    return figure


def render_prediction(
    client: GatewayClient,
    prediction: dict[str, Any],
    key: str = "prediction",
) -> None:
    prediction_id = prediction["id"]
    image_column, heatmap_column, verdict_column = st.columns([1, 1, 1.2])
    show_prediction_images(client, prediction, image_column, heatmap_column)
    with verdict_column:
        render_verdict(prediction)
        if assessment_of(prediction) != NOT_ASSESSABLE and prediction.get("label"):
            p_malignant = float(prediction["probabilities"].get("malignant", 0.0))
            decided = assessment_of(prediction) != INDETERMINATE
            st.plotly_chart(
                probability_gauge(p_malignant, float(prediction["threshold"]), decided),
                key=f"{key}-gauge-{prediction_id}",
                config={"displayModeBar": False},
            )
        st.caption(
            f"Threshold {prediction['threshold']:.3f} · model **{prediction['model_version']}** · "
            f"{prediction['latency_ms']:.0f} ms · {when(prediction['created_at'])}"
        )
        st.caption(
            "Reviewed by a clinician." if prediction.get("reviewed") else "Not reviewed yet."
        )
        assistant_link(client, prediction_id)
