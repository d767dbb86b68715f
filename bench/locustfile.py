"""Locust scenarios of the benchmark; `bench/load.py` picks one by class name and runs it headless.

- `FrontDesk` (paced): a receptionist finding the patient in front of them — search-as-you-type
  bursts (the box sends the text so far when typing pauses for the debounce), full-name and
  name + date-of-birth searches, phone and MRN lookups, opening the profile of the first hit, and
  now and then an update (GET, then PATCH with If-Match).
- `CheckIn` (paced): profile lookups whose patient popularity follows Zipf (s = BENCH_ZIPF_S).
- `ClosedLoop` (no think time): one endpoint as fast as it answers — `healthz`, `lookup` (the
  sample's ids), `search` (the name queries), `match` (registrations with a typo, POSTed to
  `/v1/patients/match`) — chosen by BENCH_ENDPOINT.

Inputs (environment): BENCH_FIXTURES (fixtures.py's JSON), BENCH_TOKENS (a JSON list of bearer
tokens, one per simulated user: the search rate limit is per user),
BENCH_SAMPLES (every request is written there as CSV when locust quits), BENCH_ENDPOINT,
BENCH_ZIPF_S, BENCH_ZIPF_PATIENTS (the day's roster; 0: the whole clinic), BENCH_CHECKIN_PACING_S,
BENCH_SEARCH_LIMIT, BENCH_SEARCH_HOT (1: only the fixtures' hot_searches).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import time
from functools import cache
from typing import Any

import gevent
import numpy as np
from locust import FastHttpUser, between, constant, events, task

# Typing: a key every 80-300 ms; the box waits for a 250 ms pause before it searches.
KEY_GAP_S = (0.08, 0.30)
DEBOUNCE_S = 0.25
MIN_TYPED = 2
# Reading the hits before opening one, and the pause before the next patient's action.
READ_RESULTS_S = (0.2, 0.8)
OPEN_PROFILE_SHARE = 0.8
# A request outstanding this long when the run ends counts as hung.
HANG_S = 5.0

# (start epoch s, name, ms, status, Retry-After present, key) per finished request.
_samples: list[tuple[float, str, float, int, int, str]] = []
_inflight: dict[int, float] = {}


@cache
def fixtures() -> dict[str, Any]:
    with open(os.environ["BENCH_FIXTURES"], encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


@cache
def tokens() -> list[str]:
    with open(os.environ["BENCH_TOKENS"], encoding="utf-8") as handle:
        loaded: list[str] = json.load(handle)
    return loaded


_user_numbers = itertools.count()


@cache
def zipf_ranks() -> tuple[list[str], np.ndarray]:
    """The popularity-ordered ids and the cumulative Zipf distribution over their ranks."""
    with open(fixtures()["ids_path"], encoding="ascii") as handle:
        ids = handle.read().split()
    # The day's roster: the first BENCH_ZIPF_PATIENTS ids of the fixed random order (all when 0).
    roster = int(os.environ.get("BENCH_ZIPF_PATIENTS", "0"))
    ids = ids[:roster] if roster > 0 else ids
    weights = 1.0 / np.arange(1, len(ids) + 1) ** float(os.environ.get("BENCH_ZIPF_S", "1.1"))
    cdf = np.cumsum(weights)
    return ids, cdf / cdf[-1]


def queries(*kinds: str) -> list[str]:
    texts = [t for kind in kinds for t in fixtures()["queries"].get(kind, [])]
    if not texts:
        raise RuntimeError(f"the fixtures hold no queries of kinds {kinds}")
    return texts


@cache
def _query_pool(kinds: tuple[str, ...]) -> list[str]:
    return queries(*kinds)


def pick(*kinds: str) -> str:
    return random.choice(_query_pool(kinds))


@cache
def search_texts() -> list[str]:
    """The closed-loop search's texts: every name query, or (BENCH_SEARCH_HOT=1) the hot few."""
    if os.environ.get("BENCH_SEARCH_HOT") == "1":
        hot: list[str] = fixtures()["hot_searches"]
        return hot
    return queries(*fixtures()["name_kinds"])


@events.request.add_listener
def _record(
    name: str,
    response_time: float,
    response: Any,
    start_time: float | None = None,
    context: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    status = int(getattr(response, "status_code", 0) or 0)
    headers = getattr(response, "headers", None) or {}
    retry_after = 1 if status == 503 and headers.get("Retry-After") else 0
    key = str((context or {}).get("key", ""))
    _samples.append((start_time or time.time(), name, response_time, status, retry_after, key))


@events.quitting.add_listener
def _write_samples(**_: Any) -> None:
    out = os.environ.get("BENCH_SAMPLES")
    if not out:
        return
    now = time.monotonic()
    hung = [now - started for started in _inflight.values() if now - started > HANG_S]
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("start", "name", "ms", "status", "retry_after", "key"))
        writer.writerows(_samples)
    with open(out + ".inflight.json", "w", encoding="utf-8") as handle:
        json.dump(
            {"in_flight": len(_inflight), "hung": len(hung), "oldest_s": max(hung, default=0)},
            handle,
        )


class BenchUser(FastHttpUser):
    """Shared plumbing: the token, bounded timeouts, and every request through `get`."""

    abstract = True
    network_timeout = 15.0
    connection_timeout = 5.0
    max_retries = 0

    def on_start(self) -> None:
        token = tokens()[next(_user_numbers) % len(tokens())]
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, name: str, key: str = "", **params: Any) -> Any:
        """GET with the token; the response is read in full before the next request."""
        slot = id(gevent.getcurrent())
        _inflight[slot] = time.monotonic()
        response = self.client.get(
            path, params=params or None, headers=self.headers, name=name, context={"key": key}
        )
        # Not in a `finally`: a request still waiting when Locust stops its users is killed
        # here, stays in _inflight, and counts as hung if it had waited longer than HANG_S.
        del _inflight[slot]
        return response

    def post(self, path: str, name: str, body: dict[str, Any], key: str = "") -> Any:
        """POST a JSON body with the token, as `get` does."""
        slot = id(gevent.getcurrent())
        _inflight[slot] = time.monotonic()
        response = self.client.post(
            path, json=body, headers=self.headers, name=name, context={"key": key}
        )
        del _inflight[slot]
        return response

    def search(self, name: str, text: str, **params: Any) -> list[dict[str, Any]]:
        """The box, as the front end calls it; the hits (empty when the request failed)."""
        response = self.get("/v1/patients", name, q=text, **params)
        if response.status_code != 200:
            return []
        items: list[dict[str, Any]] = response.json()["items"]
        return items


class FrontDesk(BenchUser):
    """A receptionist: one action per patient at the desk, with human pacing."""

    wait_time = between(0.3, 1.2)

    def open_first(self, hits: list[dict[str, Any]]) -> None:
        if hits and random.random() < OPEN_PROFILE_SHARE:
            gevent.sleep(random.uniform(*READ_RESULTS_S))
            self.get(f"/v1/patients/{hits[0]['id']}", "profile")

    @task(45)
    def type_ahead(self) -> None:
        text = pick(*fixtures()["type_ahead_kinds"])
        hits: list[dict[str, Any]] = []
        for typed in range(1, len(text) + 1):
            gap = random.uniform(*KEY_GAP_S)
            last = typed == len(text)
            prefix = text[:typed]
            if len(prefix.strip()) >= MIN_TYPED and (last or gap >= DEBOUNCE_S):
                gevent.sleep(DEBOUNCE_S)
                started = time.monotonic()
                hits = self.search("search.type_ahead", prefix)
                gap -= DEBOUNCE_S + (time.monotonic() - started)
            gevent.sleep(max(0.0, gap))
        self.open_first(hits)

    @task(20)
    def full_name(self) -> None:
        self.open_first(self.search("search.name", pick(*fixtures()["name_kinds"])))

    @task(12)
    def name_and_dob(self) -> None:
        self.open_first(self.search("search.name_dob", pick("name_dob")))

    @task(10)
    def phone(self) -> None:
        self.open_first(self.search("search.phone", pick("phone")))

    @task(10)
    def mrn(self) -> None:
        self.open_first(self.search("search.mrn", pick("mrn")))

    @task(3)
    def update(self) -> None:
        """Re-confirm the email on file: a real write (a new version), the data left as it was."""
        patient_id = random.choice(fixtures()["hot_ids"])
        profile = self.get(f"/v1/patients/{patient_id}", "profile")
        if profile.status_code != 200:
            return
        with self.client.patch(
            f"/v1/patients/{patient_id}",
            json={"email": profile.json().get("email")},
            headers={**self.headers, "If-Match": profile.headers.get("ETag", "")},
            name="update",
            catch_response=True,
        ) as response:
            if response.status_code == 412:  # another desk wrote first: expected, not an error
                response.success()


def poisson_pacing(mean_s: float) -> Any:
    """Requests start at the times of a Poisson process of mean gap `mean_s` (less the time
    the previous request took, as `constant_pacing` does).

    With constant pacing, users started together stay in step: measured, 50 check-in clients
    sent their requests within the same 20 ms of every 200 ms period, so each one queued
    behind the other 49 — a burst no front desk produces.
    """

    def wait_time(user: Any) -> float:
        now = time.monotonic()
        due: float = getattr(user, "_next_start", now) + random.expovariate(1 / mean_s)
        user._next_start = max(due, now)
        return user._next_start - now

    return wait_time


class CheckIn(BenchUser):
    """Patients arriving for appointments: lookups by id, popularity Zipf-distributed."""

    wait_time = poisson_pacing(float(os.environ.get("BENCH_CHECKIN_PACING_S", "0.1")))

    @task
    def lookup(self) -> None:
        ids, cdf = zipf_ranks()
        rank = int(np.searchsorted(cdf, random.random()))
        self.get(f"/v1/patients/{ids[rank]}", "lookup.zipf", key=str(rank))


class ClosedLoop(BenchUser):
    """One endpoint, no think time: the maximum the server sustains at this concurrency."""

    wait_time = constant(0)

    @task
    def hit(self) -> None:
        endpoint = os.environ["BENCH_ENDPOINT"]
        if endpoint == "healthz":
            self.get("/healthz", "healthz")
        elif endpoint == "lookup":
            patient_id = random.choice(fixtures()["hot_ids"])
            self.get(f"/v1/patients/{patient_id}", "lookup", key=patient_id)
        elif endpoint == "search":
            limit = os.environ.get("BENCH_SEARCH_LIMIT", "10")
            self.get("/v1/patients", "search", q=random.choice(search_texts()), limit=limit)
        elif endpoint == "match":
            self.post("/v1/patients/match", "match", random.choice(fixtures()["match_bodies"]))
        else:
            raise RuntimeError(f"unknown BENCH_ENDPOINT {endpoint!r}")
