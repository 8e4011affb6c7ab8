"""JSON logging: one object per line with time, level, service, request_id and message."""

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str | None]
try:  # The web services carry the request id in asgi-correlation-id's context variable.
    from asgi_correlation_id.context import correlation_id as request_id_var
except ImportError:  # pragma: no cover - components without the web stack (the frontend)
    request_id_var = ContextVar("request_id", default=None)

# Loggers whose own handlers would bypass the JSON format; they are routed to the root logger.
_THIRD_PARTY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic")


def current_request_id() -> str | None:
    return request_id_var.get()


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.request_id = request_id_var.get() or "-"
        # uvicorn attaches a copy of the message with terminal colour codes; it is noise in JSON.
        record.__dict__.pop("color_message", None)
        return True


def json_formatter() -> JsonFormatter:
    return JsonFormatter(
        "%(levelname)s %(service)s %(request_id)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def json_handler(service: str) -> logging.Handler:
    """A handler writing one JSON object per line to stdout, with `service` and request id."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(json_formatter())
    handler.addFilter(_ContextFilter(service))
    return handler


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record of the process to stdout as one JSON object per line.

    Safe to call more than once (tests build several apps in one process): the previous
    handler is replaced, never duplicated.
    """
    handler = json_handler(service)

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)

    for name in _THIRD_PARTY_LOGGERS:
        third_party = logging.getLogger(name)
        third_party.handlers.clear()
        third_party.propagate = True
    # Requests are logged by our own access middleware, with the request id and duration; the
    # downstream's access line already records every call between services.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
