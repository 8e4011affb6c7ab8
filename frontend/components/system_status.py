"""Shows whether the gateway and each service behind it are up."""

import streamlit as st

from frontend.utils.gateway_client import GatewayClient, GatewayError

SERVICE_LABELS = {"auth": "Authentication", "inference": "Inference", "data": "Data"}
# The gateway's public /ready says which service is down, never why (SECURITY.md).
NOT_ANSWERING = "Not answering. The reason is in the gateway's log."


def render_system_status(client: GatewayClient) -> None:
    st.subheader("System status")
    try:
        status = client.system_status()
    except GatewayError as exc:
        st.error(f"Gateway unreachable. {exc.message}")
        return
    if status.ready:
        st.success("All services are ready.")
    else:
        st.warning(status.message or "Some services are not ready.")
    columns = st.columns(max(len(status.services), 1))
    for column, (name, check) in zip(columns, status.services.items(), strict=False):
        up = check.get("status") == "up"
        label = SERVICE_LABELS.get(name, name)
        with column:
            st.metric(label, "ready" if up else "down")
            if up and "latency_ms" in check:
                st.caption(f"answered in {check['latency_ms']:.0f} ms")
            elif not up:
                st.caption(NOT_ANSWERING)
