"""A slide upload, streamed through: from the caller's body to the slide service, chunk by
chunk, never held whole (a slide is 1-5 GB).

The body is either the raw file (`application/octet-stream`, or `application/zip` for the
multi-file formats), with the patient and the file name in the query, or a multipart form
read as it arrives with python-multipart's streaming parser. In the form, the fields
(`patient_id`, optional `microns_per_pixel`) must come before `file`: the patient is checked
in the data service, and the slide service needs them in its query, before the first byte of
the file goes on.

When the caller's body goes wrong (it stops short, the caller hangs up, it passes the limit),
the error is raised inside the request to the slide service, so that request is cut off
before its end: the slide service sees an incomplete upload and stores nothing.
"""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from common.errors import ServiceError
from gateway.plumbing.downstream import Downstreams
from gateway.plumbing.proxy import caller_identity, raise_for_answer

ZIP_TYPES = ("application/zip", "application/x-zip-compressed")  # the second: Windows'
RAW_TYPES = ("application/octet-stream", *ZIP_TYPES)
FORM_FIELDS = ("patient_id", "microns_per_pixel")
MAX_FIELD_BYTES = 1024
MAX_FILENAME_CHARS = 255


def invalid(message: str) -> ServiceError:
    return ServiceError(422, message, code="validation_error")


class UploadIncomplete(ServiceError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message, code="upload_incomplete")


class SlideTooLarge(ServiceError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"The slide is larger than {limit / 1024**3:.1f} GiB.",
            code="payload_too_large",
            headers={"Connection": "close"},
        )


@dataclass(frozen=True)
class SlideFields:
    patient_id: uuid.UUID
    filename: str
    microns_per_pixel: float | None
    content_type: str  # of the file itself, for the slide service

    def query(self) -> dict[str, str]:
        query = {"patient_id": str(self.patient_id), "filename": self.filename}
        if self.microns_per_pixel is not None:
            query["microns_per_pixel"] = repr(self.microns_per_pixel)
        return query


def slide_fields(
    patient_id: str | None, filename: str | None, microns_per_pixel: str | None, content_type: str
) -> SlideFields:
    """The upload's fields checked, before anything is streamed: a name that could be a path
    is refused here rather than after gigabytes (the slide service refuses it too)."""
    if not patient_id:
        raise invalid("patient_id is required: the patient the slide belongs to.")
    try:
        patient = uuid.UUID(patient_id)
    except ValueError as exc:
        raise invalid("patient_id must be a UUID.") from exc
    if not filename:
        raise invalid("The slide's file name is required (filename).")
    if (
        "/" in filename
        or "\\" in filename
        or filename in (".", "..")
        or len(filename) > MAX_FILENAME_CHARS
        or any(not character.isprintable() for character in filename)
    ):
        raise ServiceError(
            422,
            "The file name must be a plain name of at most 255 characters: no path "
            "separators, no control characters.",
            code="invalid_filename",
        )
    mpp = None
    if microns_per_pixel not in (None, ""):
        try:
            mpp = float(microns_per_pixel)
        except ValueError as exc:
            raise invalid("microns_per_pixel must be a number.") from exc
        if not 0 < mpp < 1000:  # also refuses nan and inf
            raise invalid("microns_per_pixel must be a positive number below 1000.")
    zipped = content_type in ZIP_TYPES or filename.lower().endswith(".zip")
    return SlideFields(
        patient, filename, mpp, "application/zip" if zipped else "application/octet-stream"
    )


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The caller's body; a hang-up is an incomplete upload."""
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect as exc:
        raise UploadIncomplete("The upload was cut off before its end.") from exc


class MultipartSlide:
    """A multipart form with one file, read while it streams in: `start()` reads up to the
    file part and returns the fields before it; `file()` then yields the file's bytes."""

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes) -> None:
        self.body = body
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_type = ""
        self.file_ended = False
        self.pending: list[bytes] = []  # file bytes parsed, not yet passed on
        self._headers: dict[bytes, bytes] = {}
        self._header = [b"", b""]
        self._name = ""
        self._in_file = False
        self._value = bytearray()

    # -- parser callbacks (synchronous, inside `parser.write`) --------------------------------

    def _part_begin(self) -> None:
        self._headers, self._header, self._value = {}, [b"", b""], bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[0] += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1] += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header[0].lower()] = self._header[1]
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        self._in_file = b"filename" in options
        if self.filename is not None:
            raise invalid(
                "The file must be the form's last part: send patient_id and "
                "microns_per_pixel before file."
            )
        if self._in_file:
            if self._name != "file":
                raise invalid("Send the slide in the multipart field 'file'.")
            self.filename = options[b"filename"].decode("utf-8", "replace")
            self.file_type = self._headers.get(b"content-type", b"").decode("latin-1").lower()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.pending.append(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise invalid(f"The form field {self._name!r} is too long.")

    def _part_end(self) -> None:
        if self._in_file:
            self.file_ended = True
        elif self._name in FORM_FIELDS:
            self.fields[self._name] = self._value.decode("utf-8", "replace").strip()

    # -- reading ------------------------------------------------------------------------------

    async def _feed(self) -> bool:
        """Parse the next chunk of the body; False once the body has ended."""
        try:
            chunk = await anext(self.body)
        except StopAsyncIteration:
            self.parser.finalize()
            return False
        try:
            self.parser.write(chunk)
        except FormParserError as exc:
            raise ServiceError(400, f"The multipart body cannot be read: {exc}") from exc
        return True

    async def start(self) -> tuple[dict[str, str], str]:
        """The form's fields and the file's name, once the file part has begun."""
        while self.filename is None:
            if not await self._feed():
                raise invalid("Send the slide in the multipart field 'file'.")
        return self.fields, self.filename

    async def file(self, limit: int) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive (at most `limit`), then the rest of the body read
        to its end, so that a part after the file is refused before the upload completes."""
        size = 0
        while True:
            while self.pending:
                chunk = self.pending.pop(0)
                size += len(chunk)
                if size > limit:
                    raise SlideTooLarge(limit)
                yield chunk
            if self.file_ended:
                break
            if not await self._feed():
                raise UploadIncomplete("The multipart body ended inside the file.")
        while await self._feed():
            pass


async def _capped(body: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            raise SlideTooLarge(limit)
        yield chunk


class SlideUploads:
    """Check the patient, then stream the slide to the slide service (`app.state`)."""

    def __init__(self, downstreams: Downstreams, timeout_s: float, limit: int) -> None:
        self.downstreams = downstreams
        self.timeout_s = timeout_s
        self.limit = limit

    async def upload(
        self,
        request: Request,
        patient_id: str | None,
        filename: str | None,
        microns_per_pixel: str | None,
    ) -> httpx.Response:
        """The slide service's answer to the upload in `request`; the query's fields count
        for a raw body, the form's for a multipart one."""
        content_type, options = parse_options_header(request.headers.get("content-type", ""))
        media_type = content_type.decode("latin-1").lower()
        body = _body(request)
        if media_type == "multipart/form-data":
            boundary = options.get(b"boundary")
            if not boundary:
                raise ServiceError(400, "The multipart body has no boundary.")
            form = MultipartSlide(body, boundary)
            fields, form_filename = await form.start()
            if "patient_id" not in fields and patient_id is None:
                raise invalid(
                    "patient_id is required, as a form field before file: the file streams "
                    "on as it arrives, so fields after it come too late."
                )
            slide = slide_fields(
                fields.get("patient_id") or patient_id,
                form_filename,
                fields.get("microns_per_pixel") or microns_per_pixel,
                form.file_type,
            )
            file = form.file(self.limit)
        elif media_type in RAW_TYPES:
            slide = slide_fields(patient_id, filename, microns_per_pixel, media_type)
            file = _capped(body, self.limit)
        else:
            raise ServiceError(
                415,
                "Send the slide as multipart/form-data (fields patient_id, then file) or as "
                "the raw body (application/octet-stream, or application/zip for a MIRAX or "
                "DICOM folder) with patient_id and filename in the query.",
                code="unsupported_media_type",
            )
        identity = caller_identity(request)
        await self._check_patient(slide.patient_id, identity)
        headers = {**identity, "content-type": slide.content_type}
        if media_type in RAW_TYPES and "content-length" in request.headers:
            # The slide service then refuses an oversized file before reading it.
            headers["content-length"] = request.headers["content-length"]
        return await self.downstreams.call(
            "slides",
            "POST",
            "/slides",
            idempotent=False,  # the body is a stream: it cannot be sent twice
            timeout_s=self.timeout_s,
            params=slide.query(),
            content=file,
            headers=headers,
        )

    async def _check_patient(self, patient_id: uuid.UUID, headers: dict[str, str]) -> None:
        """The patient must exist (404 relayed from the data service), before any byte of
        the slide is sent."""
        answer = await self.downstreams.call(
            "data", "GET", f"/patients/{patient_id}", idempotent=True, headers=headers
        )
        raise_for_answer(answer)
