"""One prediction: the original beside its Grad-CAM overlay, the label, P(malignant) as a
gauge against the decision threshold, where it came from, and the way to ask about it."""

from typing import Any

import plotly.graph_objects as go
import streamlit as st

from frontend.components.assistant import assistant_link
from frontend.components.widgets import (
    CHART_COLOURS,
    label_markdown,
    show_prediction_images,
    when,
)
from frontend.utils.gateway_client import GatewayClient


def probability_gauge(p_malignant: float, threshold: float) -> go.Figure:
    """P(malignant) in percent; the black line is the threshold at which the label flips."""
    figure = go.Figure(
        go.Indicator(
            mode="gauge+number",
            value=round(p_malignant * 100, 1),
            number={"suffix": " %"},
            title={"text": "P(malignant)"},
            gauge={
                "axis": {"range": [0, 100]},
                "bar": {
                    "color": CHART_COLOURS["malignant" if p_malignant >= threshold else "benign"]
                },
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
        p_malignant = float(prediction["probabilities"].get("malignant", 0.0))
        st.markdown(f"### {label_markdown(prediction['label'])}")
        st.plotly_chart(
            probability_gauge(p_malignant, float(prediction["threshold"])),
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
