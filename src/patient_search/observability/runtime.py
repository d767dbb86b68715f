"""One worker's observability, built from the settings: the query observer, the request
middleware's sink, the background samplers and where /metrics is served."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from psycopg_pool import AsyncConnectionPool

from patient_search.db.statements import CompositeObserver, QueryObserver
from patient_search.observability.alerts import SlowQueryAlerts
from patient_search.observability.emf import EmfSink
from patient_search.observability.exposition import (
    mark_this_process_dead,
    metrics_endpoint,
    start_metrics_server,
)
from patient_search.observability.metrics import QueryMetrics
from patient_search.observability.multiprocess import multiprocess_dir
from patient_search.observability.samplers import RuntimeSampler
from patient_search.observability.slow_queries import SlowQueryLog
from patient_search.settings import Settings


class Observability:
    """Built with the app (no I/O); `start` and `stop` run in the lifespan."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.emf = (
            EmfSink(settings.cloudwatch_namespace, settings.slow_query_ms)
            if settings.cloudwatch_emf
            else None
        )
        self.alerts = (
            SlowQueryAlerts(
                settings.alert_webhook_url,
                settings.slow_query_ms,
                threshold=settings.alert_slow_query_threshold,
                window_s=settings.alert_window_s,
                min_interval_s=settings.alert_min_interval_s,
            )
            if settings.alert_webhook_url
            else None
        )
        observers: list[QueryObserver] = [
            QueryMetrics(settings.slow_query_ms),
            SlowQueryLog(settings.slow_query_ms),
        ]
        observers += [o for o in (self.emf, self.alerts) if o is not None]
        self.query_observer: QueryObserver = CompositeObserver(*observers)
        self._sampler: RuntimeSampler | None = None
        self._stop_server: Callable[[], None] | None = None

    def install_endpoint(self, app: FastAPI) -> None:
        """Serve GET /metrics on the API port, unless disabled or given a port of its own."""
        if self._settings.metrics_enabled and not self._settings.metrics_port:
            # An API route, so the request metrics label it by its template like the others.
            app.add_api_route(
                "/metrics",
                metrics_endpoint,
                methods=["GET"],
                include_in_schema=False,
                response_class=Response,
            )

    async def start(self, pool: AsyncConnectionPool[Any]) -> None:
        """Start the samplers, the EMF timer and the separate metrics port, as configured."""
        self._sampler = RuntimeSampler(pool, self.emf)
        self._sampler.start()
        if self.emf is not None:
            self.emf.start()
        settings = self._settings
        # With several workers the supervisor (`patient-search serve`) owns the port.
        if settings.metrics_enabled and settings.metrics_port and multiprocess_dir() is None:
            self._stop_server = start_metrics_server(settings.metrics_host, settings.metrics_port)

    async def stop(self) -> None:
        """Stop everything `start` started; flush what is buffered."""
        if self._sampler is not None:
            await self._sampler.stop()
        if self.emf is not None:
            await self.emf.stop()
        if self.alerts is not None:
            await self.alerts.drain()
        if self._stop_server is not None:
            self._stop_server()
            self._stop_server = None
        mark_this_process_dead()
