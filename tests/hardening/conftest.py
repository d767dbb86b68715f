"""Fixtures for the hostile-input suite: a real HTTP server for tools that speak HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from patient_search.app import create_app
from patient_search.settings import Settings


# Package scope, not session: a server thread left running would keep publishing its own
# pool and loop gauges into the process-wide metrics that later tests read.
@pytest.fixture(scope="package")
def live_server(settings: Settings) -> Iterator[str]:
    """The app behind uvicorn on a free local port, with its own pool; its base URL.

    Schemathesis and the kill-and-rerun tests talk real HTTP (sync clients, raw sockets),
    which an app bound to the test session's event loop cannot serve.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), log_level="warning", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)
    sock.close()
