"""Entry point of the clinicians' app: `streamlit run frontend/app.py`."""

import streamlit as st

from frontend.components.system_status import render_system_status
from frontend.config.settings import get_settings
from frontend.utils.gateway_client import GatewayClient

st.set_page_config(page_title="Cancer Detection", page_icon="🔬", layout="wide")

settings = get_settings()
client = GatewayClient(settings.gateway_url, timeout_s=settings.request_timeout_s)

st.title("Breast histopathology assessment")
st.caption(
    "A decision-support tool: a CNN's benign/malignant assessment of histopathology images, "
    "with a heatmap of what drove it. It assists clinicians and does not diagnose."
)
st.button("Refresh status")  # any widget interaction reruns the script, which re-checks
render_system_status(client)
client.close()
