"""Reviewed labels as CSV, for retraining.

One row per reviewed prediction's image with the reviewed label: the model's label when the
latest current review agrees, the correction when it disagrees. The `path` column follows
the `folders` layout of `ml.datasets` (`<label>/<patient>_<image>.png`), so written out
under those names the files train with `make train DATA=...`. Each upload of an image is
its own record, so the same bytes uploaded for two patients are two rows, each under its
patient. No cell can start a spreadsheet formula (`spreadsheet_safe`).

Each row carries the model's assessment and its reasons (`;`-separated), or `not_recorded`
for predictions stored before assessments were. An image the model could not assess has no
model label; when its reviewer agreed, nobody gave it a label, so its `label` and `path` are
empty and it is no training example. A reviewer's correction gives it one, kept as such.
"""

import csv
import io
import re

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from data_service.audit.service import record
from data_service.images.models import Image
from data_service.patients.models import Patient
from data_service.predictions.models import Prediction
from data_service.predictions.schemas import NOT_RECORDED
from data_service.reviews.models import Review

COLUMNS = [
    "path",
    "image_id",
    "image_sha256",
    "label",
    "patient",
    "reviewer",
    "reviewed_at",
    "model_label",
    "model_version",
    "assessment",
    "reasons",
]
EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/tiff": "tif",
    "image/bmp": "bmp",
    "image/webp": "webp",
    "image/gif": "gif",
}
# What may not stay in a file name: anything but letters, digits, `.` and `-` (so `_`, which
# ends the patient in `ml.datasets`, separators and control characters), a run of dots, and a
# leading dot. References are refused such characters when patients are created or changed;
# rows stored before that are made safe here.
NOT_IN_NAME = re.compile(r"[^A-Za-z0-9.-]")
DOTS = re.compile(r"\.{2,}|^\.")
# A cell starting with one of these is a formula to a spreadsheet (`=HYPERLINK(...)`,
# `+1+1`, `@SUM(1)`, `-2+3`; tab and carriage return start one in some programs). Each such
# cell gets a leading `'`, which makes it text, as OWASP advises for CSV files.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> str:
    """The cell's text, made inert if a spreadsheet would run it as a formula."""
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


def patient_group(reference: str) -> str:
    """The `<patient>` part of an exported file name: one file name, never a path."""
    return DOTS.sub("-", NOT_IN_NAME.sub("-", reference))


async def reviewed_labels_csv(session: AsyncSession, actor: str) -> str:
    latest = (
        select(Review)
        .where(Review.is_current)
        .order_by(Review.prediction_id, Review.created_at.desc())
        .ext(distinct_on(Review.prediction_id))
        .subquery()
    )
    rows = await session.execute(
        select(
            Prediction,
            Image,
            Patient.external_ref,
            latest.c.verdict,
            latest.c.corrected_label,
            latest.c.reviewer,
            latest.c.created_at,
        )
        .join(latest, latest.c.prediction_id == Prediction.id)
        .join(Image, Image.id == Prediction.image_id)
        .outerjoin(Patient, Patient.id == Prediction.patient_id)
        .order_by(latest.c.created_at, Prediction.id)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    count = 0
    for prediction, image, reference, verdict, corrected, reviewer, reviewed_at in rows:
        label = prediction.label if verdict == "agree" else corrected
        group = patient_group(reference or f"unassigned-{image.id.hex[:8]}")
        extension = EXTENSIONS.get(image.content_type, "img")
        cells = [
            f"{label}/{group}_{image.id}.{extension}" if label else "",
            image.id,
            image.sha256,
            label or "",
            reference or "",
            reviewer,
            reviewed_at.isoformat(),
            prediction.label or "",
            prediction.model_version,
            prediction.assessment or NOT_RECORDED,
            ";".join(prediction.reasons or ()),
        ]
        writer.writerow([spreadsheet_safe(cell) for cell in cells])
        count += 1
    await record(session, actor, "labels.exported", "export", "reviewed-labels", {"rows": count})
    return buffer.getvalue()
