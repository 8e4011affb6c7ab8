"""Dashboard: predictions by label and day, how many images could not be assessed or were not
decided and why, the clinicians' agreement with the model, and the model's latency; and how many
whole slides were analysed, at what speed."""

from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from frontend.components.assessment import ASSESSMENT_NAMES, reason_name
from frontend.components.widgets import CHART_COLOURS, NEUTRAL_COLOUR, percent, show_error
from frontend.utils.gateway_client import GatewayClient, GatewayError

PERIODS = {"Last 7 days": 7, "Last 30 days": 30, "Last 90 days": 90, "All time": None}


def by_day_chart(by_day: list[dict[str, Any]]) -> go.Figure:
    days = [row["day"] for row in by_day]
    figure = go.Figure(
        [
            go.Bar(
                x=days,
                y=[row["by_label"].get(label, 0) for row in by_day],
                name=label,
                marker_color=colour,
            )
            for label, colour in CHART_COLOURS.items()
        ]
    )
    figure.update_layout(
        barmode="stack",
        height=320,
        yaxis_title="predictions",
        xaxis_type="category",  # one bar per UTC day, not a continuous time axis
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return figure


def counts_chart(counts: dict[str, int], colours: dict[str, str] | None = None) -> go.Figure:
    names = list(counts)
    figure = go.Figure(
        go.Bar(
            x=names,
            y=[counts[n] for n in names],
            marker_color=[(colours or {}).get(n, "#546e7a") for n in names],
        )
    )
    figure.update_layout(height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return figure


def render_dashboard(client: GatewayClient) -> None:
    st.header("Dashboard")
    period = st.selectbox("Period", list(PERIODS), index=1)
    days = PERIODS[period]
    since = (datetime.now(UTC) - timedelta(days=days)).isoformat() if days else None
    try:
        stats = client.stats(created_from=since)
    except GatewayError as exc:
        show_error(exc, "load the statistics")
        return
    reviews = stats["reviews"]
    total = stats["predictions"]
    malignant = stats["by_label"].get("malignant", 0)
    columns = st.columns(5)
    columns[0].metric("Predictions", total)
    columns[1].metric("Malignant", malignant, help="At the model's decision threshold")
    columns[2].metric(
        "Clinician agreement",
        percent(reviews["agreement_rate"]),
        help=f"{reviews['agree']} of {reviews['current']} current reviews agree with the model",
    )
    latency = stats["mean_latency_ms"]
    columns[3].metric("Mean model time", "—" if latency is None else f"{latency:.0f} ms")
    p95 = stats.get("p95_latency_ms")
    columns[4].metric("95th percentile", "—" if p95 is None else f"{p95:.0f} ms")
    if total == 0:
        st.info("No predictions in this period.")
    else:
        render_predictions(stats)
    render_slide_analyses(client)


def render_predictions(stats: dict[str, Any]) -> None:
    """The period's predictions in charts, by day, label, model version and assessability."""
    reviews, total = stats["reviews"], stats["predictions"]
    st.subheader("Predictions by day and label")
    st.plotly_chart(by_day_chart(stats["by_day"]), key="by-day")
    left, right = st.columns(2)
    with left:
        st.subheader("By label")
        st.plotly_chart(counts_chart(stats["by_label"], CHART_COLOURS), key="by-label")
    with right:
        st.subheader("By model version")
        st.plotly_chart(counts_chart(stats["by_model_version"]), key="by-version")
    render_assessability(stats)
    st.caption(
        f"{reviews['reviewed_predictions']} of {total} predictions reviewed "
        f"({percent(reviews['reviewed_predictions'] / total)})."
    )


def tiles_per_second(stats: dict[str, Any]) -> str:
    rate = stats.get("tiles_per_s")
    return "—" if rate is None else f"{rate:.1f}"


def render_slide_analyses(client: GatewayClient) -> None:
    """Whole-slide analyses, all time: slides analysed, tiles assessed, the usual speed."""
    st.subheader("Slide analyses (all time)")
    try:
        stats = client.analysis_stats()
    except GatewayError as exc:
        if exc.status_code == 404 and exc.code == "not_found":
            st.caption("This system does not analyse whole slides yet.")
            return
        show_error(exc, "load the slide analysis figures")
        return
    by_status = stats.get("analyses") or {}
    columns = st.columns(4)
    columns[0].metric("Slides analysed", stats["slides_analysed"])
    columns[1].metric("Tiles analysed", f"{stats['tiles_analysed']:,}")
    columns[2].metric(
        "Tiles per second",
        tiles_per_second(stats),
        help="Median of the last 20 analyses that succeeded",
    )
    columns[3].metric(
        "Waiting or running", by_status.get("queued", 0) + by_status.get("running", 0)
    )
    if failed := by_status.get("failed"):
        st.caption(f"{failed} analyses failed.")


def render_assessability(stats: dict[str, Any]) -> None:
    """How many images got no verdict (not assessable) or no decided one (indeterminate), and
    for which reasons; predictions stored before images were checked count as not recorded."""
    st.subheader("Assessability")
    by_assessment = stats["by_assessment"]  # every key, zero where none
    columns = st.columns(4)
    for column, name in zip(columns, ASSESSMENT_NAMES, strict=True):
        column.metric(ASSESSMENT_NAMES[name].capitalize(), by_assessment.get(name, 0))
    by_reason = {reason_name(r): n for r, n in stats["by_reason"].items() if n}
    if by_reason:
        figure = counts_chart(by_reason, {name: NEUTRAL_COLOUR for name in by_reason})
        figure.update_layout(yaxis_title="predictions")
        st.plotly_chart(figure, key="by-reason")
        st.caption(
            "Reasons of the not assessable and indeterminate images (and of warnings): an "
            "image may have several."
        )
    if not_recorded := by_assessment.get("not_recorded"):
        st.caption(
            f"{not_recorded} predictions were made before images were checked: their "
            "assessability is not recorded."
        )
