"""Models, the benchmark page: registered versions with their test metrics, the confusion
matrix and ROC curve of the chosen one, which is active; an admin activates another."""

from typing import Any

import plotly.graph_objects as go
import streamlit as st

from frontend.components.assessment import NOT_RECORDED
from frontend.components.widgets import cached_image, percent, plain, show_error, when
from frontend.utils.gateway_client import GatewayClient, GatewayError

METRICS = ["roc_auc", "sensitivity", "specificity", "precision", "accuracy", "f1", "brier_score"]
ROC_FIGURE = "evaluation-test/roc_curve.png"


def versions_table(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "version": v["version"],
            "status": v["status"],
            "created": when(v["created_at"]),
            **{name: _rounded(v["metrics"].get(name)) for name in METRICS[:4]},
            "threshold": _rounded(v["metrics"].get("threshold")),
            "test images": v["metrics"].get("images"),
        }
        for v in versions
    ]


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def confusion_chart(matrix: dict[str, Any]) -> go.Figure:
    labels = matrix["labels"]
    values = matrix["rows_true_columns_predicted"]
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=[f"predicted {label}" for label in labels],
            y=[f"true {label}" for label in labels],
            text=values,
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
        )
    )
    figure.update_layout(
        height=300, yaxis={"autorange": "reversed"}, margin={"l": 10, "r": 10, "t": 10, "b": 10}
    )
    return figure


def roc_chart(roc: dict[str, list[float]], auc: float | None, at: dict[str, Any]) -> go.Figure:
    figure = go.Figure(
        [
            go.Scatter(
                x=roc["false_positive_rate"],
                y=roc["true_positive_rate"],
                mode="lines",
                name=f"ROC (AUC {auc:.3f})" if auc is not None else "ROC",
            ),
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                line={"dash": "dash", "color": "grey"},
                name="chance",
            ),
            go.Scatter(
                x=[1 - at["specificity"]],
                y=[at["sensitivity"]],
                mode="markers",
                marker={"size": 12, "color": "black"},
                name=f"decision threshold {at['threshold']:.3f}",
            ),
        ]
    )
    figure.update_layout(
        height=320,
        xaxis_title="1 - specificity",
        yaxis_title="sensitivity",
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return figure


def history_chart(history: dict[str, list[float]]) -> go.Figure:
    figure = go.Figure(
        [
            go.Scatter(y=values, mode="lines+markers", name=name)
            for name, values in history.items()
            if name in ("loss", "val_loss", "auc", "val_auc")
        ]
    )
    figure.update_layout(
        height=300, xaxis_title="epoch", margin={"l": 10, "r": 10, "t": 10, "b": 10}
    )
    return figure


def choose_version(client: GatewayClient, label: str, table: bool = False) -> dict | None:
    """A version picked from the registry (the active one preselected), with its card and
    reports; None, with the reason shown, when there is none to show."""
    try:
        versions = client.models()
    except GatewayError as exc:
        show_error(exc, "load the model registry")
        return None
    if not versions:
        st.info("No model version is registered.")
        return None
    if table:
        st.dataframe(versions_table(versions), hide_index=True)
    names = [v["version"] for v in versions]
    active = next((v["version"] for v in versions if v["status"] == "active"), names[0])
    chosen = st.selectbox(label, names, index=names.index(active))
    try:
        return client.model(chosen)
    except GatewayError as exc:
        show_error(exc, f"load version {chosen}")
        return None


FLASH_KEY = "models_flash"


def render_models(client: GatewayClient) -> None:
    st.header("Models")
    if flash := st.session_state.pop(FLASH_KEY, None):
        st.success(flash)
    if detail := choose_version(client, "Version", table=True):
        render_version(client, detail)


def render_version(client: GatewayClient, detail: dict[str, Any]) -> None:
    card, reports = detail["card"], detail["reports"]
    version = detail["version"]
    status = (
        "**active** (serving predictions)" if detail["status"] == "active" else detail["status"]
    )
    st.markdown(f"Version **{version}** is {status}. {card.get('architecture', '')}")
    if (card.get("training_data") or {}).get("synthetic"):
        st.warning("Trained on synthetic images: a demonstration model, not for clinical use.")
    evaluation = reports.get("evaluation") or {}
    at_threshold = evaluation.get("at_threshold")
    if at_threshold:
        at_half = evaluation.get("at_0_5", {})
        st.subheader("Test metrics")
        st.dataframe(
            [
                {
                    "metric": name,
                    f"at threshold {at_threshold['threshold']:.3f}": _rounded(
                        at_threshold.get(name)
                    ),
                    "at 0.5": _rounded(at_half.get(name)),
                }
                for name in METRICS
            ],
            hide_index=True,
        )
        matrix_column, roc_column = st.columns(2)
        with matrix_column:
            st.subheader("Confusion matrix")
            st.plotly_chart(
                confusion_chart(at_threshold["confusion_matrix"]), key=f"confusion-{version}"
            )
        with roc_column:
            st.subheader("ROC curve")
            if roc := evaluation.get("roc_curve"):
                st.plotly_chart(
                    roc_chart(roc, at_threshold.get("roc_auc"), at_threshold), key=f"roc-{version}"
                )
            elif ROC_FIGURE in detail.get("figures", []):
                render_figure(client, version, ROC_FIGURE, "ROC curve of the test split")
            else:
                st.info("This version's evaluation has no ROC curve.")
    else:
        st.info("This version has no evaluation report.")
    render_assessability_card(card)
    if history := reports.get("training_history"):
        st.subheader("Training history")
        st.plotly_chart(history_chart(history), key=f"history-{version}")
    with st.expander("Model card"):
        st.json(card)
    if client.session and client.session.role == "admin" and detail["status"] != "active":
        render_activation(client, version)


def _number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else NOT_RECORDED


def _share(value: Any) -> str:
    return percent(value) if isinstance(value, int | float) else NOT_RECORDED


def render_assessability_card(card: dict[str, Any]) -> None:
    """What decides whether a prediction is read as a verdict, as training recorded it on the
    card: calibration, the indeterminate band and the out-of-distribution threshold. Cards
    written before these existed say "not recorded" (and their checks do not apply)."""
    st.subheader("Calibration and assessability")
    calibration = card.get("calibration") or {}
    band = card.get("indeterminate_band") or {}
    ood = card.get("out_of_distribution") or {}
    columns = st.columns(4)
    columns[0].metric(
        "Calibration error before",
        _number(calibration.get("ece_before")),
        help="Expected calibration error of the raw probabilities on the validation split",
    )
    columns[1].metric(
        "Calibration error after",
        _number(calibration.get("ece_after")),
        help="The same, after temperature scaling: the probabilities the system shows",
    )
    half_width = band.get("half_width")
    columns[2].metric(
        "Indeterminate band",
        NOT_RECORDED if half_width is None else f"± {_share(half_width)}",
        help="P(malignant) this close to the decision threshold is indeterminate",
    )
    columns[3].metric(
        "Out-of-distribution threshold",
        _number(ood.get("threshold"), 2),
        help="An image scoring above it is unlike the training data",
    )
    notes = []
    if calibration:
        notes.append(
            f"Calibration: {calibration.get('method', 'temperature')} scaling, temperature "
            f"{_number(calibration.get('temperature'))}, {calibration.get('bins', '?')} bins, "
            f"chosen on the {plain(str(calibration.get('chosen_on', 'validation')))} split."
        )
    if band:
        notes.append(
            f"Indeterminate band: {plain(str(band.get('rule', 'no rule recorded')))} The model "
            f"was wrong on {_share(band.get('error_rate_inside'))} of validation images inside "
            f"it and {_share(band.get('error_rate_outside'))} outside."
        )
    if ood:
        target = ood.get("quantile", ood.get("false_positive_target"))
        notes.append(
            f"Out of distribution: {plain(str(ood.get('method', '?')))} distance of the "
            f"{plain(str(ood.get('layer', '?')))} layer's features, threshold chosen on the "
            f"{plain(str(ood.get('chosen_on', '?')))} split"
            + (f" at {target}." if target is not None else ".")
        )
    for note in notes:
        st.caption(note)
    if not (calibration and band and ood):
        st.caption(
            "Not recorded means this version's card predates the measure; the check that "
            "needs it does not apply to its predictions."
        )


def render_figure(client: GatewayClient, version: str, figure: str, caption: str) -> None:
    try:
        content = cached_image(
            f"figure:{version}:{figure}", lambda: client.model_figure(version, figure)
        )
    except GatewayError as exc:
        show_error(exc, f"load {figure}")
        return
    st.image(content, caption=caption)


def render_activation(client: GatewayClient, version: str) -> None:
    st.subheader("Activate")
    st.caption("Every inference replica switches to it within seconds; new predictions use it.")
    confirmed = st.checkbox(f"I want {version} to serve every new prediction")
    if st.button(f"Activate {version}", type="primary", disabled=not confirmed):
        try:
            client.activate_model(version)
        except GatewayError as exc:
            show_error(exc, f"activate {version}")
            return
        st.session_state[FLASH_KEY] = f"{version} is now active."
        st.rerun()
