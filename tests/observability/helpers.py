"""Helpers for the observability tests: captured JSON logs, scraped samples, free ports."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from patient_search.observability.logs import JsonFormatter


class CapturedLogs(logging.Handler):
    """Every record of the `patient_search` loggers, formatted exactly as production writes it."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    def events(self, name: str) -> list[logging.LogRecord]:
        return [record for record in self.records if record.getMessage() == name]


@contextmanager
def capture_logs() -> Iterator[CapturedLogs]:
    """Capture after the app's lifespan has configured logging (it replaces the handlers)."""
    handler = CapturedLogs()
    logger = logging.getLogger("patient_search")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def sample(name: str, **labels: str) -> float:
    """This process's current value of one sample (0 when the series does not exist yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(text: str, name: str, **labels: str) -> float | None:
    """A sample's value in a text exposition, or None."""
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == name and item.labels == labels:
                return item.value
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
