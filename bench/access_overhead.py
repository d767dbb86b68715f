"""What the access audit costs a cached profile lookup, and the rate limiter a search.

    .venv/bin/python bench/access_overhead.py [--redis redis://127.0.0.1:56379/0]

In-process (httpx over ASGI, no network), on a scratch database of the configured server,
one clinic of 200 patients. Each arm runs interleaved rounds; the median round is reported.
- lookup: GET /v1/patients/{id} served from the profile cache, at 1 and 16 concurrent clients,
  with the view audited as shipped (with `--redis`: through the audit journal), audited by the
  trail's own commit (the journal set aside), and not audited (the audit call removed);
- search: GET /v1/patients?q=... served from the search cache, limiter off / in-process / Redis,
  plus the limiter's own cost per call.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.factories import TEST_SECRET, bearer, new_clinic_id, patient_body  # noqa: E402

from patient_search import app as app_module  # noqa: E402
from patient_search.cli import migrate  # noqa: E402
from patient_search.patients import router as patients_router  # noqa: E402
from patient_search.patients.service import PatientLookup  # noqa: E402
from patient_search.rate_limit import RateLimiter  # noqa: E402
from patient_search.settings import Settings  # noqa: E402

ROUNDS = 5
DATABASE = "patient_search_bench_access"


def _settings(**overrides: Any) -> Settings:
    base = Settings()
    url = urlsplit(str(base.database_url))._replace(path=f"/{DATABASE}").geturl()
    values: dict[str, Any] = {
        "database_url": url,
        "env": "dev",
        "jwt_secret": TEST_SECRET,
        "redis_url": "",
        "search_rate_per_minute": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _recreate() -> None:
    admin = urlsplit(str(Settings().database_url))._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        name = sql.Identifier(DATABASE)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    migrate(_settings())


async def _rate(send: Callable[[int], Awaitable[httpx.Response]], clients: int, n: int) -> float:
    async def client(offset: int) -> None:
        for i in range(offset, n, clients):
            response = await send(i)
            assert response.status_code == 200, response.text

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return n / (time.perf_counter() - started)


def _no_audit_lookup(reader: Any) -> PatientLookup:
    state = reader.state
    return PatientLookup(state.cache, reader, state.settings.phone_region)


async def _lookups(redis_url: str) -> None:
    application = app_module.create_app(_settings(redis_url=redis_url))
    async with application.router.lifespan_context(application):
        logging.getLogger("patient_search").setLevel(logging.WARNING)
        services = application.state.services
        journal = services.audit_journal
        if journal is not None:
            while journal.state == "starting":
                await asyncio.sleep(0.01)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as http:
            headers = bearer(new_clinic_id())
            ids = []
            for _ in range(200):
                created = await http.post("/v1/patients", json=patient_body(), headers=headers)
                ids.append(created.json()["id"])

            def send(i: int) -> Awaitable[httpx.Response]:
                return http.get(f"/v1/patients/{ids[i % len(ids)]}", headers=headers)

            audited = patients_router._lookup

            def arm(name: str) -> None:
                patients_router._lookup = (  # type: ignore[assignment]
                    _no_audit_lookup if name == "not audited" else audited
                )
                services.audit_journal = journal if name == "journal" else None

            names = ["not audited", "trail"]
            if journal is not None and journal.state == "on":
                names.append("journal")
            for clients, n in ((1, 2000), (16, 4000)):
                await _rate(send, clients, 500)  # warm
                results: dict[str, list[float]] = {name: [] for name in names}
                for _ in range(ROUNDS):
                    for name in names:
                        arm(name)
                        results[name].append(await _rate(send, clients, n))
                arm("journal")
                without = statistics.median(results["not audited"])
                for name in names[1:]:
                    rate = statistics.median(results[name])
                    print(
                        f"cached lookup, {clients:2d} clients, audited by the {name:7s}: "
                        f"{rate:7.0f} req/s against {without:7.0f} not audited "
                        f"({100 * (rate / without - 1):+.0f} %; "
                        f"{1e6 / rate - 1e6 / without:+.0f} µs per request)"
                    )


async def _searches(redis_url: str) -> None:
    arms = {"off": _settings(), "in-process": _settings(search_rate_per_minute=10**6)}
    if redis_url:
        arms["redis"] = _settings(search_rate_per_minute=10**6, redis_url=redis_url)
    rates: dict[str, list[float]] = {name: [] for name in arms}
    apps = {name: app_module.create_app(settings) for name, settings in arms.items()}
    contexts = [a.router.lifespan_context(a) for a in apps.values()]
    for context in contexts:
        await context.__aenter__()
    try:
        logging.getLogger("patient_search").setLevel(logging.WARNING)
        clients = {}
        for name, application in apps.items():
            transport = httpx.ASGITransport(app=application)
            clients[name] = httpx.AsyncClient(transport=transport, base_url="http://b")
        headers = bearer(new_clinic_id())
        for _ in range(ROUNDS):
            for name, http in clients.items():

                def send(i: int, http: httpx.AsyncClient = http) -> Awaitable[httpx.Response]:
                    return http.get("/v1/patients", params={"q": "lovelace"}, headers=headers)

                await _rate(send, 1, 200)
                rates[name].append(await _rate(send, 1, 2000))
        off = statistics.median(rates["off"])
        for name in arms:
            rate = statistics.median(rates[name])
            print(
                f"cached search, limiter {name:10s}: {rate:7.0f} req/s "
                f"({1e6 / rate - 1e6 / off:+.0f} µs per request against off)"
            )
        for http in clients.values():
            await http.aclose()
    finally:
        for context in reversed(contexts):
            await context.__aexit__(None, None, None)
    for name, url in (("in-process", ""), ("redis", redis_url)):
        if name == "redis" and not url:
            continue
        limiter = RateLimiter(10**9, 10**6, redis_url=url)
        calls = 20_000 if not url else 5_000
        started = time.perf_counter()
        for i in range(calls):
            await limiter.check("c", f"u{i % 50}")
        print(f"limiter.check {name}: {1e6 * (time.perf_counter() - started) / calls:.1f} µs/call")
        await limiter.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=Settings().redis_url)
    args = parser.parse_args()
    _recreate()
    asyncio.run(_lookups(args.redis))
    asyncio.run(_searches(args.redis))


if __name__ == "__main__":
    main()
