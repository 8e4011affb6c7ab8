"""Analyse: upload one or several images, optionally for a patient, and see each result."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from frontend.components.result import render_prediction
from frontend.components.widgets import plain, remember_image, show_error
from frontend.utils.gateway_client import GatewayClient, GatewayError, SessionExpired

ACCEPTED_TYPES = ["png", "jpg", "jpeg", "tif", "tiff", "bmp"]
RESULTS_KEY = "analyse_results"
PATIENT_PAGE_SIZE = 100  # the gateway's largest page
# A fixed namespace: the same upload always gets the same idempotency key.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f0c5d3e-2b1a-4c8e-9d7f-3a5b1c2e4f60")


@dataclass
class Upload:
    name: str
    content: bytes
    content_type: str
    upload_id: str  # Streamlit's id of this upload: new for every file the user picks


@dataclass
class AnalysedImage:
    """What the page keeps of one upload between reruns: not its bytes (those go to the
    session's bounded image cache under the prediction's id)."""

    name: str
    prediction: dict[str, Any] | None = None
    error: GatewayError | None = None


def patient_for_reference(client: GatewayClient, reference: str) -> dict[str, Any]:
    """The patient with exactly this reference, registered if it is new."""
    if patient := patient_with_reference(client, reference):
        return patient
    try:
        return client.create_patient(reference)
    except GatewayError as exc:
        if exc.status_code != 409:
            raise
        # Registered by a colleague a moment ago.
        found = patient_with_reference(client, reference)
        if found is None:
            raise
        return found


def patient_with_reference(client: GatewayClient, reference: str) -> dict[str, Any] | None:
    """The patient whose reference is exactly this one. The gateway searches by prefix only,
    so the pages are walked: a short reference can be the prefix of more than one page."""
    offset = 0
    while True:
        page = client.patients(search=reference, limit=PATIENT_PAGE_SIZE, offset=offset)
        items = page["items"]
        if match := next((p for p in items if p["external_ref"] == reference), None):
            return match
        offset += len(items)
        if not items or offset >= page["total"]:
            return None


def analyse_images(
    client: GatewayClient,
    uploads: list[Upload],
    patient_id: str | None,
    on_progress: Callable[[int, str], None] = lambda done, name: None,
) -> list[AnalysedImage]:
    """Each image through the gateway, one at a time (the gateway's own limit applies per
    user). A failure is kept with its image and does not stop the others. The idempotency
    key makes a repeated click, or a rerun of the page, return the first prediction."""
    results = []
    for done, upload in enumerate(uploads):
        on_progress(done, upload.name)
        key = uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{upload.upload_id}:{patient_id}").hex
        try:
            prediction = client.predict(
                upload.name, upload.content, upload.content_type, patient_id, key
            )
        except SessionExpired:
            raise  # not this image's failure: the whole page goes back to sign-in
        except GatewayError as exc:
            results.append(AnalysedImage(upload.name, error=exc))
            continue
        remember_image(f"image:{prediction['id']}", upload.content)
        results.append(AnalysedImage(upload.name, prediction=prediction))
    on_progress(len(uploads), "")
    return results


def render_analyse(client: GatewayClient) -> None:
    st.header("Analyse images")
    st.caption(
        "Upload haematoxylin-eosin stained breast tissue patches. Each gets the model's "
        "assessment and a Grad-CAM heatmap of what drove it; an image that is not assessable "
        "tissue gets no verdict, and says why."
    )
    files = st.file_uploader(
        "Histopathology images", type=ACCEPTED_TYPES, accept_multiple_files=True
    )
    reference = st.text_input(
        "Patient reference (optional)",
        max_chars=64,
        help="The hospital's pseudonymised reference, never a name. New references are registered.",
    ).strip()
    if st.button("Analyse", type="primary", disabled=not files):
        uploads = [
            Upload(f.name, f.getvalue(), f.type or "application/octet-stream", f.file_id)
            for f in files
        ]
        patient_id = None
        if reference:
            try:
                patient_id = patient_for_reference(client, reference)["id"]
            except GatewayError as exc:
                show_error(exc, f"register patient {reference!r}")
                return
        progress = st.progress(0.0, text="Starting…")

        def report(done: int, name: str) -> None:
            text = f"Analysing {name} ({done + 1} of {len(uploads)})…" if name else "Done."
            progress.progress(done / len(uploads), text=text)

        st.session_state[RESULTS_KEY] = analyse_images(client, uploads, patient_id, report)
        progress.empty()

    results: list[AnalysedImage] = st.session_state.get(RESULTS_KEY, [])
    if results:
        failed = sum(1 for r in results if r.error)
        st.subheader(f"Results ({len(results) - failed} of {len(results)} analysed)")
    for index, result in enumerate(results):
        with st.container(border=True):
            st.markdown(f"**{plain(result.name)}**")
            if result.error or result.prediction is None:
                show_error(result.error or GatewayError("No answer."), f"analyse {result.name}")
            else:
                render_prediction(client, result.prediction, key=f"analysed-{index}")
