"""JSON-lines logging on the standard library: one object per event."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

# LogRecord attributes that are plumbing, not event fields (uvicorn adds a coloured copy of
# some messages).
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {
    "message",
    "asctime",
    "color_message",
}
# uvicorn's loggers write through the same handler: its "Exception in ASGI application" would
# otherwise print the traceback, whose last line quotes the exception's message.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error")
# uvicorn's access lines quote the path and query string (a searched name): never written.
# The service's own request log (`patient_search.http`) names the route template instead.
ACCESS_LOGGER = "uvicorn.access"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; `extra=` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                event[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception messages can quote the data that caused them.
            event["exc_type"] = record.exc_info[0].__name__
        return orjson.dumps(event, default=str).decode()


def log_config(level: str = "INFO") -> dict[str, Any]:
    """`logging.config.dictConfig` for uvicorn (`serve`'s `log_config`, applied in every
    worker before the app starts): every logger, uvicorn's and the root, writes JSON lines."""
    through_json = {"handlers": ["json"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "patient_search": {**through_json, "level": level},
            **{name: {**through_json, "level": level} for name in SERVER_LOGGERS},
            # Above INFO, uvicorn writes no access line even when asked to.
            ACCESS_LOGGER: {**through_json, "level": "WARNING"},
        },
        "root": {"handlers": ["json"], "level": "WARNING"},
    }


def configure_logging(level: str = "INFO") -> None:
    """Send the service's logs to stderr as JSON lines, and uvicorn's and libraries' too.

    Runs in the app's lifespan, so it holds under a server not started with `log_config`.
    Handlers others attached to the root (a test's log capture) are kept."""
    # The JSON lines show none of these, so no record collects them: the logging HOWTO's
    # "Optimization" switches. Without them every request's log line walked the stack for
    # its caller (27 against 16-20 µs a line, measured on the request log's fields).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    service = logging.getLogger("patient_search")
    service.setLevel(level)
    # Levels of uvicorn's loggers stay as its options set them; the access log goes quiet.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    for logger in (service, *map(logging.getLogger, (*SERVER_LOGGERS, ACCESS_LOGGER))):
        logger.handlers[:] = [handler]
        logger.propagate = False
    root = logging.getLogger()
    # Anything else goes through it too, not through logging's last resort (a traceback).
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.addHandler(handler)
