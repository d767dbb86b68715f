"""uvicorn's own loggers write the service's JSON lines: a failed request's traceback never
prints the exception's message (it can quote the patient data that caused it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from patient_search.cli import REPO_ROOT
from tests.factories import TEST_SECRET
from tests.observability.helpers import free_port

FAKE_PATIENT = "Zebulon Quixotewright MRN-QX-80412"

# `patient-search serve` exactly as the command runs it, but around an ASGI app whose every
# request fails with patient data in the exception; one request, then SIGTERM.
SERVE_A_FAILING_APP = textwrap.dedent(
    """
    import logging, os, signal, sys, threading, time, urllib.error, urllib.request

    import uvicorn

    from patient_search import cli
    from patient_search.settings import get_settings

    PORT, FAKE = int(sys.argv[1]), sys.argv[2]


    async def failing_app(scope, receive, send):
        if scope["type"] == "http":
            raise ValueError(f"cannot register {FAKE}")


    serve_uvicorn = uvicorn.run


    def run(app, factory, **options):
        serve_uvicorn(failing_app, **options)


    def request_then_stop():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/", timeout=5)
            except urllib.error.HTTPError:
                break  # the 500 of the failed request
            except OSError:
                time.sleep(0.05)  # not listening yet
        try:
            raise RuntimeError(f"a library failed on {FAKE}")
        except RuntimeError:
            logging.getLogger("some.library").exception("library_failure")
        os.kill(os.getpid(), signal.SIGTERM)


    uvicorn.run = run
    threading.Thread(target=request_then_stop, daemon=True).start()
    cli.serve(get_settings(), "127.0.0.1", PORT, 1)
    """
)


def test_serve_logs_a_failed_request_as_json_without_the_exception_message() -> None:
    env = {
        **os.environ,
        "PATIENT_SEARCH_ENV": "dev",
        "PATIENT_SEARCH_JWT_SECRET": TEST_SECRET,
        "PATIENT_SEARCH_METRICS_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", SERVE_A_FAILING_APP, str(free_port()), FAKE_PATIENT],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    output = done.stdout + done.stderr
    for part in FAKE_PATIENT.split():
        assert part not in output, f"{part!r} reached the server's output:\n{output[-2000:]}"
    events = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    failed = [e for e in events if e["logger"] == "uvicorn.error" and e["level"] == "error"]
    assert [e.get("exc_type") for e in failed] == ["ValueError"], events
    assert {"logger": "some.library", "exc_type": "RuntimeError"}.items() <= next(
        e for e in events if e["event"] == "library_failure"
    ).items()
