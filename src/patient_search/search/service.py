"""The search: identifiers first, then names down the ladder, one page at a time."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

from patient_search.cache.policies import PatientCache, Rendered
from patient_search.contacts import (
    normalize_email,
    normalize_phone,
    phone_digits,
    postal_code_key,
)
from patient_search.db.dependencies import ClinicReader
from patient_search.search.cursor import CursorCodec
from patient_search.search.evidence import (
    DOB_EXACT_BITS,
    FREQUENCY_CAP,
    DobAgreement,
    Evidence,
    NameFields,
    TermWeights,
    highlights,
    near_dates,
    weigh,
)
from patient_search.search.indexing import MAX_TYPO_KEYED_LENGTH
from patient_search.search.names import deletion_keys, phonetic_codes, typo_budget
from patient_search.search.parse import parse_query
from patient_search.search.ranking import (
    MATCH_LABELS,
    MAX_BONUS,
    Hit,
    Rung,
    SortKey,
    TokenCandidates,
    name_match,
    rank_rows,
    score_of,
    tiebreak,
)
from patient_search.search.repository import (
    END_BOUND,
    START_BOUND,
    Bound,
    DobProbe,
    Posting,
    SearchRepository,
    TermRequest,
)
from patient_search.search.schemas import SearchCriteria, SearchPage, Summary
from patient_search.search.statistics import CLINIC_STATISTICS, estimate_clinic_size

LIVE_STATUSES = ["active", "inactive", "deceased"]
# The most candidates one name query ranks in Python; beyond it totals are estimates.
CANDIDATE_CAP = 1000
PARTIAL_TERMS_PER_TOKEN = 8
PARTIAL_PER_TERM = 10
SIMILAR_TERMS_PER_TOKEN = 10
# The trigram tier looks for what a garbled token may stand for: only tokens of 4+ letters
# that are no name of the clinic. Shorter ones are noise — "de" shares a trigram with every
# "de…" term (similarity ≥ 0.3 for "dean") — and a token that is a clinic's name was most
# likely typed as meant. Measured at 1M patients: the tier was the costliest statement
# (mean 2.6 ms, 7–11 ms for queries with particles such as "de la").
MIN_SIMILAR_LENGTH = 4
TOTAL_CAP = 1000
# What one query may cost, whatever is typed (measured: `bench/search_cost.py`). Prefix
# terms are shared by the tokens; typo keys stop where no typo-keyed term can be met, which
# keeps a query's keys under MAX_QUERY_KEYS (8 tokens of 14 letters: ~870); garbled tokens
# longer than a name get no trigram tier.
PREFIX_TERMS_PER_TOKEN = 64
PREFIX_TERMS_PER_QUERY = 128
MAX_QUERY_KEYS = 1000
MAX_SIMILAR_LENGTH = 32
MIN_PHONETIC_LENGTH = 3
MIN_PHONETIC_SPELLING = 60  # rapidfuzz ratio: Kathryn ~ Catherine 63, Garcia ~ Cruz 40
IDENTIFIER_RUNGS = {"mrn": Rung.MRN, "phone": Rung.PHONE, "email": Rung.EMAIL}
# With a date typed, names find fewer candidates: a wrong date cannot pick the right one
# among a thousand holders of one common name anyway, and the date finds its own.
DATED_CANDIDATE_CAP = 200
DOB_CANDIDATE_CAP = 500
# Patients born on a typed date who share no name with the query, ranked by the same
# evidence (a clerk with the right date and a garbled name still finds them).
DATE_ONLY_CAP = 50
# Adjacent tokens are also read joined ("jayde n" → "jayden") when one of them is this short,
# at most this many times per query.
MAX_JOIN_PART = 4
MAX_JOINED_READINGS = 3
MAX_JOINED_TOKENS = 4


# Sort bands of evidence-ranked hits, after the identifier rungs (MRN, phone, email): every
# typed field exact first (BR-P018). With a date typed, everyone else by evidence. Without
# one, patients agreeing with every name token by their worst token's rung (the ladder:
# "les john" is Leslie Johnson, by prefixes, before John Lewis, by a sound-alike), each rung
# by evidence, and then patients agreeing with some tokens, by evidence.
EXACT_BAND = int(Rung.EXACT)
DATED_BAND = EXACT_BAND + 1
PARTIAL_BAND = int(Rung.FUZZY) + 1
NEAR_DOB = {DobAgreement.TRANSPOSED, DobAgreement.DAY_MONTH_SWAPPED, DobAgreement.ONE_DIGIT}


@dataclass(slots=True)
class _Ranked:
    hits: list[Hit]
    total: int
    exact: bool


@dataclass(slots=True)
class _Ranking:
    """What evidence ranking weighs: the readings of the names, the typed dates, the weights."""

    readings: list[list[TokenCandidates]]  # the tokens as typed first, then joined readings
    comma_last: list[str]
    dates: list[dt.date]
    weights: TermWeights

    def rank(self, rows: list[dict[str, Any]], identifiers: dict[uuid.UUID, Rung]) -> list[Hit]:
        """Hits for rows, best first."""
        top = max(sum(self.weights.bits(c.token) for c in reading) for reading in self.readings)
        top += (DOB_EXACT_BITS if self.dates else 0.0) + MAX_BONUS
        hits = []
        for row in rows:
            name = NameFields.of(
                row.get("first_key"), row.get("last_key"), row.get("name_terms") or ()
            )
            evidence = weigh(
                name, self.readings, self.weights, self.dates, row.get("date_of_birth")
            )
            # The ladder's within-rung bonus (typed order, first/last over middle, spelling
            # similarity) stays as a tie-break worth less than a tenth of a bit.
            _, bonus = name_match(row, self.readings[0], self.comma_last)
            hits.append(self._hit(row, evidence, evidence.bits + bonus, top, identifiers))
        hits.sort(key=lambda hit: hit.sort_key)
        return hits

    def _hit(
        self,
        row: dict[str, Any],
        evidence: Evidence,
        value: float,
        top: float,
        identifiers: dict[uuid.UUID, Rung],
    ) -> Hit:
        norm = min(1.0, max(0.0, value / top)) if top > 0 else 0.0
        identifier = identifiers.get(row["id"])
        partial = evidence.missing > 0
        if identifier is not None:
            band, rung, label = int(identifier), identifier, MATCH_LABELS[identifier]
            score = score_of(identifier, MAX_BONUS * norm)
        elif evidence.all_exact:
            band, rung, label = EXACT_BAND, Rung.EXACT, "exact"
            score = 0.6 + MAX_BONUS * norm
        else:
            rung = Rung.FUZZY if partial else evidence.worst_level
            if partial:
                label = "partial"
            elif evidence.dob in NEAR_DOB:
                label = "dob_near"
            else:
                label = MATCH_LABELS[rung]
            if self.dates:
                band, score = DATED_BAND, 0.59 * norm
            elif partial:
                band, score = PARTIAL_BAND, MAX_BONUS * norm
            else:
                band, score = int(rung), score_of(rung, MAX_BONUS * norm)
        key: SortKey = (band, -round(value * 10_000), "", 0, *tiebreak(row))
        return Hit(row, rung, round(score, 6), key, label, evidence)


class SearchService:
    """Searches one clinic's patients (the transaction is already scoped to it)."""

    def __init__(
        self, repository: SearchRepository, cursors: CursorCodec, clinic_id: str, region: str
    ) -> None:
        self._repo = repository
        self._cursors = cursors
        self._clinic_id = clinic_id
        self._region = region

    async def search(self, criteria: SearchCriteria) -> SearchPage:
        """One page of results for the criteria, continuing after `criteria.cursor`."""
        fingerprint = _fingerprint(criteria)
        after = (
            self._cursors.decode(self._clinic_id, fingerprint, criteria.cursor)
            if criteria.cursor
            else None
        )
        parsed = parse_query(criteria.q or "", self._region)
        statuses: list[str] = [criteria.status] if criteria.status else LIVE_STATUSES
        tokens = [TokenCandidates.for_token(token) for token in parsed.names]
        joins = _join_candidates(tokens)
        need = criteria.offset + criteria.limit + 1
        # A date typed beside names is evidence; alone, or as the parameter, it filters.
        typed_dates = parsed.dates if tokens else []
        filter_dates = (
            [criteria.date_of_birth] if criteria.date_of_birth else [] if tokens else parsed.dates
        )
        evidence_dates = sorted(set(typed_dates) | set(filter_dates))

        filters: dict[str, set[uuid.UUID]] = {}
        explicit_phone = criteria.phone and normalize_phone(criteria.phone, self._region)
        suffix = phone_digits(criteria.phone) if criteria.phone and not explicit_phone else None
        everything = tokens + [candidates for _, candidates in joins]
        probes = _vocabulary_probes(everything)
        single = len(tokens) == 1 and not typed_dates
        known, uncounted = CLINIC_STATISTICS.known_frequencies(
            self._clinic_id, [] if single else sorted({c.token for c in everything})
        )
        found, terms, frequencies = await self._repo.identifiers_and_terms(
            mrns=parsed.mrns + ([criteria.mrn] if criteria.mrn else []),
            emails=parsed.emails + ([normalize_email(criteria.email)] if criteria.email else []),
            phones=parsed.phones + ([explicit_phone] if explicit_phone else []),
            phone_suffix=suffix,
            dates=filter_dates,
            postal_codes=[postal_code_key(criteria.postal_code)] if criteria.postal_code else [],
            keys=sorted(probes),
            prefixes=sorted({c.token for c in everything}),
            per_prefix=_prefix_terms_per_token(len(tokens)),
            frequency_terms=uncounted,
            frequency_cap=FREQUENCY_CAP,
        )
        _expand(everything, probes, terms)
        for _, joined in joins:
            # Two typed words read as one must spell a name, nearly: a sound-alike or a
            # nickname of the pasted string ("treyhle" ~ "turale") is a coincidence.
            joined.phonetic.clear()
            joined.nicknames.clear()
        readings = [tokens] + [
            tokens[:index] + [joined] + tokens[index + 2 :]
            for index, joined in joins
            if joined.known or joined.all_terms() != {joined.token}
        ]
        CLINIC_STATISTICS.remember_frequencies(self._clinic_id, frequencies)
        known |= frequencies
        size = 0
        if known:
            size = await CLINIC_STATISTICS.clinic_size(
                self._clinic_id, lambda: estimate_clinic_size(self._repo)
            )
        weights = TermWeights(size, known)
        mrn_hits = found.get("mrn", set())
        # Explicit parameters and typed identifiers filter (AND across kinds); an MRN typed in
        # the box is only a candidate, ranked first when it exists.
        if criteria.mrn:
            filters["mrn"] = set(mrn_hits)
        if criteria.email or parsed.emails:
            filters["email"] = found.get("email", set())
        if explicit_phone or parsed.phones:
            filters["phone"] = found.get("phone", set())
        if suffix:
            filters["phone_suffix"] = found.get("phone_suffix", set())
        if filter_dates or (parsed.invalid_dates and not tokens):
            filters["dob"] = found.get("dob", set())
        if criteria.postal_code:
            filters["postal_code"] = found.get("postal_code", set())

        ranking = _Ranking(readings, parsed.comma_last, evidence_dates, weights)
        if filters:
            ranked = await self._filtered(filters, mrn_hits, ranking, statuses)
        elif not tokens:
            ranked = await self._identified(mrn_hits, statuses)
        elif single and not mrn_hits:
            return await self._single_token(tokens[0], criteria, statuses, after, fingerprint)
        else:
            ranked = await self._names(ranking, typed_dates, statuses, need, mrn_hits)
        return await self._page(ranked, criteria, after, fingerprint, statuses, tokens)

    async def _identified(self, mrn_hits: set[uuid.UUID], statuses: list[str]) -> _Ranked:
        rows = await self._repo.summaries(sorted(mrn_hits), statuses)
        hits = rank_rows(rows, [], [], {row["id"]: Rung.MRN for row in rows})
        return _Ranked(hits, len(hits), True)

    async def _filtered(
        self,
        filters: dict[str, set[uuid.UUID]],
        mrn_hits: set[uuid.UUID],
        ranking: _Ranking,
        statuses: list[str],
    ) -> _Ranked:
        """Patients passing every filter; name evidence ranks them but is not required."""
        ids = set.intersection(*filters.values())
        rows = await self._repo.summaries(sorted(ids), statuses)
        rungs: dict[uuid.UUID, Rung] = {}
        for kind, members in filters.items():
            rung = IDENTIFIER_RUNGS.get(kind.removesuffix("_suffix"))
            for patient_id in members & ids:
                if rung is not None and rung < rungs.get(patient_id, Rung.FUZZY):
                    rungs[patient_id] = rung
        for patient_id in mrn_hits & ids:
            rungs[patient_id] = Rung.MRN
        if ranking.readings[0]:
            hits = ranking.rank(rows, rungs)
        else:
            hits = rank_rows(rows, [], [], rungs)
        return _Ranked(hits, len(hits), len(ids) <= 5000)

    async def _names(
        self,
        ranking: _Ranking,
        typed_dates: list[dt.date],
        statuses: list[str],
        need: int,
        mrn_hits: set[uuid.UUID],
    ) -> _Ranked:
        """Name tokens: GIN intersections, tier by tier, until a page is full; then the
        patients born on a typed date or a near one who share a name term; ranked by
        evidence.

        Exact terms first; then every rung's terms; then terms merely similar to a garbled
        token; then patients matching all tokens but one — each tier only when the ones
        before it found fewer patients than the page needs. Joined readings ("jayde n" as
        "jayden") are intersected too.
        """
        tokens = ranking.readings[0]
        rows: dict[uuid.UUID, dict[str, Any]] = {}
        exact = True
        cap = DATED_CANDIDATE_CAP if typed_dates else CANDIDATE_CAP

        def add(found: list[dict[str, Any]]) -> None:
            nonlocal exact
            exact = exact and len(found) < cap
            for row in found:
                rows.setdefault(row["id"], row)

        async def gather(groups: list[list[str]]) -> None:
            add(await self._repo.name_candidates(groups, statuses, cap))

        first = [[c.token] for c in tokens]
        expanded = [sorted(c.all_terms()) for c in tokens]
        born: list[dict[str, Any]] = []
        if typed_dates:
            # One round trip: the exact and the expanded terms (a full name seldom fills a
            # page exactly), and the patients born on a typed or near date who share a term
            # with the query. The tiers below count only name candidates, so those born on
            # the date are merged last.
            terms = {t for reading in ranking.readings for c in reading for t in c.all_terms()}
            probe = DobProbe(
                exact=sorted(typed_dates),
                near=sorted({date for typed in typed_dates for date in near_dates(typed)}),
                terms=sorted(terms),
                cap=DOB_CANDIDATE_CAP,
                exact_cap=DATE_ONLY_CAP,
            )
            tiers = [first] if expanded == first else [first, expanded]
            named, born = await self._repo.name_and_dob_candidates(tiers, cap, probe, statuses)
            for found in named:
                add(found)
        else:
            await gather(first)
            if len(rows) < need and exact and expanded != first:
                await gather(expanded)
        garbled = sorted(
            {
                c.token
                for c in tokens
                if MIN_SIMILAR_LENGTH <= len(c.token) <= MAX_SIMILAR_LENGTH and not c.known
            }
        )
        if len(rows) < need and exact and garbled:
            for token, term in await self._repo.similar_terms(garbled, SIMILAR_TERMS_PER_TOKEN):
                for candidates in tokens:
                    if candidates.token == token and term not in candidates.all_terms():
                        candidates.similar.add(term)
            if any(c.similar for c in tokens):
                expanded = [sorted(c.all_terms() | c.similar) for c in tokens]
                await gather(expanded)
        for reading in ranking.readings[1:]:
            await gather([sorted(c.all_terms()) for c in reading])
        if len(rows) < need and len(tokens) > 1:
            await self._partial_matches(tokens, rows, statuses, need)
        for row in born:
            rows.setdefault(row["id"], row)
        if mrn_hits:
            for row in await self._repo.summaries(sorted(mrn_hits - rows.keys()), statuses):
                rows[row["id"]] = row
        hits = ranking.rank(list(rows.values()), dict.fromkeys(mrn_hits, Rung.MRN))
        return _Ranked(hits, len(hits), exact)

    async def _partial_matches(
        self,
        tokens: list[TokenCandidates],
        rows: dict[uuid.UUID, dict[str, Any]],
        statuses: list[str],
        need: int,
    ) -> None:
        """Patients matching some of the tokens, to follow the full matches.

        Read from the ordered postings (a few index-only entries per candidate term) rather
        than a GIN intersection, whose bitmap would cover every patient with a common first
        name before its LIMIT applied.
        """
        requests = [
            TermRequest(term, index)
            for index, candidates in enumerate(tokens)
            for term in [candidates.token, *sorted(candidates.all_terms() - {candidates.token})][
                :PARTIAL_TERMS_PER_TOKEN
            ]
        ]
        postings = await self._repo.term_pages(requests, PARTIAL_PER_TERM)
        per_token: dict[int, list[uuid.UUID]] = {}
        for bucket, posting in postings:
            found = per_token.setdefault(bucket, [])
            if posting.patient_id not in rows and len(found) < need:
                found.append(posting.patient_id)
        ids = sorted({patient_id for found in per_token.values() for patient_id in found})
        # Ranking needs the name keys only; `_page` reads what is shown for one page.
        for row in await self._repo.name_keys(ids, statuses):
            rows.setdefault(row["id"], row)

    async def _single_token(
        self,
        candidates: TokenCandidates,
        criteria: SearchCriteria,
        statuses: list[str],
        after: SortKey | None,
        fingerprint: str,
    ) -> SearchPage:
        """One token: ordered index ranges per candidate term, never a scan of the clinic."""
        token = candidates.token
        buckets: list[tuple[Rung, int, str]] = [(Rung.EXACT, 0, token)]
        seen = {token}
        ladder = [
            (Rung.NICKNAME, sorted(candidates.nicknames)),
            (Rung.PHONETIC, sorted(candidates.phonetic)),
            (Rung.TYPO, sorted(candidates.typo, key=lambda t: (OSA.distance(token, t), t))),
        ]
        for rung, terms in ladder:
            for term in terms:
                if term not in seen:
                    seen.add(term)
                    buckets.append((rung, len(buckets), term))
        need = criteria.offset + criteria.limit + 1
        # Over-fetch: a patient matching several buckets is listed only in its best one.
        per_term = need * 2 if criteria.status is None else need * 6
        requests = [
            TermRequest(term, index, _bound(after, (rung, index)))
            for index, (rung, _, term) in enumerate(buckets)
            if _bucket_open(after, (rung, index))
        ]
        postings = await self._repo.term_pages(requests[:1], per_term) if requests else []
        if len(postings) < per_term:
            postings += await self._repo.term_pages(requests[1:], per_term)
            if after is None or after[0] <= Rung.PREFIX:
                term_bound, bound = _prefix_bound(token, after)
                prefix_rows = await self._repo.prefix_page(token, term_bound, bound, per_term)
                postings += [(-1, posting) for posting in prefix_rows]
        keyed = sorted(
            ((_posting_key(bucket, posting, buckets), posting) for bucket, posting in postings),
            key=lambda pair: pair[0],
        )
        first_seen: dict[uuid.UUID, SortKey] = {}
        for key, posting in keyed:
            first_seen.setdefault(posting.patient_id, key)
        ordered = sorted(first_seen.items(), key=lambda item: item[1])
        rows = {
            row["id"]: row
            for row in await self._repo.summaries([pid for pid, _ in ordered[: need * 2]], statuses)
        }
        hits: list[Hit] = []
        for patient_id, key in ordered:
            row = rows.get(patient_id)
            if row is None or _canonical_key(row, candidates, buckets) != key[:3]:
                continue
            # Later buckets and name parts score a little lower; never higher down the list.
            bonus = 0.09 * (1 - (2 * key[1] + key[3]) / (2 * len(buckets) + 2))
            hits.append(Hit(row, Rung(key[0]), score_of(Rung(key[0]), bonus), key))
        total, exact = await self._repo.count_term_matches(
            [term for _, _, term in buckets], token, TOTAL_CAP + 1
        )
        ranked = _Ranked(hits, total, exact)
        return await self._page(ranked, criteria, None, fingerprint, statuses, [candidates])

    async def _page(
        self,
        ranked: _Ranked,
        criteria: SearchCriteria,
        after: SortKey | None,
        fingerprint: str,
        statuses: list[str],
        tokens: list[TokenCandidates],
    ) -> SearchPage:
        hits = ranked.hits
        if after is not None:
            hits = [hit for hit in hits if hit.sort_key > after]
        window = hits[criteria.offset : criteria.offset + criteria.limit]
        more = len(hits) > criteria.offset + criteria.limit
        # Candidates ranked on name keys alone are shown only after a read through RLS.
        partial = [hit.row["id"] for hit in window if "mrn" not in hit.row]
        if partial:
            shown = {row["id"]: row for row in await self._repo.summaries(partial, statuses)}
            for hit in window:
                hit.row = shown.get(hit.row["id"], hit.row)
            window = [hit for hit in window if "mrn" in hit.row]
        next_cursor = (
            self._cursors.encode(self._clinic_id, fingerprint, window[-1].sort_key)
            if more and window
            else None
        )
        return SearchPage(
            items=[_summary(hit, tokens) for hit in window],
            total=ranked.total,
            total_exact=ranked.exact,
            next_cursor=next_cursor,
        )


def _join_candidates(tokens: list[TokenCandidates]) -> list[tuple[int, TokenCandidates]]:
    """Adjacent tokens read as one ("jayde n" → "jayden", "satte rley" → "satterley"): the
    position of the first, and the joined token's candidates. Not past MAX_JOINED_TOKENS
    typed tokens: every reading is ranked for every candidate, and a split name is one or two
    words among a few."""
    joins: list[tuple[int, TokenCandidates]] = []
    if len(tokens) > MAX_JOINED_TOKENS:
        return joins
    for index in range(len(tokens) - 1):
        first, second = tokens[index].token, tokens[index + 1].token
        if min(len(first), len(second)) <= MAX_JOIN_PART:
            joins.append((index, TokenCandidates.for_token(first + second)))
    return joins[:MAX_JOINED_READINGS]


def _prefix_terms_per_token(typed_tokens: int) -> int:
    """Prefix terms each token may expand to: the query's share, at most the token's own."""
    if typed_tokens <= 1:
        return PREFIX_TERMS_PER_TOKEN
    return max(1, min(PREFIX_TERMS_PER_TOKEN, PREFIX_TERMS_PER_QUERY // typed_tokens))


def _bounded_typo_budget(token: str) -> int:
    """The typo budget of a token that can still meet a typo-keyed term: terms longer than
    MAX_TYPO_KEYED_LENGTH carry no typo keys, so a token longer than that by more than its
    budget would only spend keys (two deletions of a 200-letter token are 20,000)."""
    budget = typo_budget(token)
    return budget if len(token) <= MAX_TYPO_KEYED_LENGTH + budget else 0


def _vocabulary_probes(tokens: list[TokenCandidates]) -> dict[str, list[TokenCandidates]]:
    """The phonetic codes and typo keys of the tokens, each with the tokens it came from.

    At most MAX_QUERY_KEYS in all, since no token past MAX_TYPO_KEYED_LENGTH + 2 letters
    gets typo keys and a query has at most MAX_TOKENS name tokens."""
    probes: dict[str, list[TokenCandidates]] = {}
    for candidates in tokens:
        token = candidates.token
        keys = phonetic_codes(token)
        budget = _bounded_typo_budget(token)
        if budget:
            keys |= deletion_keys(token, budget)
        for key in keys:
            probes.setdefault(key, []).append(candidates)
    return probes


def _expand(
    tokens: list[TokenCandidates],
    probes: dict[str, list[TokenCandidates]],
    terms: list[tuple[str, str, str]],
) -> None:
    """Fill in each token's prefix, phonetic and typo terms from the clinic's vocabulary."""
    for kind, probe, term in terms:
        if kind == "prefix":
            for candidates in tokens:
                if candidates.token != probe:
                    continue
                if term == probe:
                    candidates.known = True
                else:
                    candidates.prefix.add(term)
            continue
        for candidates in probes.get(probe, []):
            token = candidates.token
            if term == token:
                continue
            if probe.isupper():
                # A shared Double Metaphone code alone is too loose: codes of very short
                # names (initials, "Jay" ~ "Y") and of common ones ("Garcia" ~ "Cruz",
                # "Chris") match far too much. Keep sound-alikes that also look alike.
                if (
                    min(len(token), len(term)) >= MIN_PHONETIC_LENGTH
                    and fuzz.ratio(token, term) >= MIN_PHONETIC_SPELLING
                ):
                    candidates.phonetic.add(term)
            elif OSA.distance(token, term) <= typo_budget(token):
                candidates.typo.add(term)


def _bucket_open(after: SortKey | None, bucket: tuple[Rung, int]) -> bool:
    return after is None or (int(bucket[0]), bucket[1]) >= (after[0], after[1])


def _after_bound(after: SortKey) -> Bound:
    return (
        bool(after[3]),
        after[4],
        after[5],
        dt.date.fromisoformat(after[6]),
        uuid.UUID(after[7]),
    )


def _bound(after: SortKey | None, bucket: tuple[Rung, int]) -> Bound:
    if after is None or (int(bucket[0]), bucket[1]) != (after[0], after[1]):
        return START_BOUND
    return _after_bound(after)


def _prefix_bound(token: str, after: SortKey | None) -> tuple[str, Bound]:
    if after is None or after[0] < Rung.PREFIX:
        return token, END_BOUND
    return after[2], _after_bound(after)


def _posting_key(bucket: int, posting: Posting, buckets: list[tuple[Rung, int, str]]) -> SortKey:
    if bucket < 0:
        rung, rank, term = Rung.PREFIX, 0, posting.term
    else:
        rung, rank, term = buckets[bucket][0], bucket, ""
    return (
        int(rung),
        rank,
        term,
        int(posting.part),
        posting.last_key,
        posting.first_key,
        posting.date_of_birth.isoformat(),
        str(posting.patient_id),
    )


def _canonical_key(
    row: dict[str, Any], candidates: TokenCandidates, buckets: list[tuple[Rung, int, str]]
) -> tuple[int, int, str]:
    """The best bucket a patient belongs to: it is listed there and nowhere else."""
    terms = set(row.get("name_terms") or ())
    best: tuple[int, int, str] | None = None
    for index, (rung, _, term) in enumerate(buckets):
        if term in terms:
            best = (int(rung), index, "")
            break
    prefixed = sorted(t for t in terms if t.startswith(candidates.token) and t != candidates.token)
    if prefixed:
        prefix_key = (int(Rung.PREFIX), 0, prefixed[0])
        if best is None or prefix_key < best:
            best = prefix_key
    return best or (int(Rung.FUZZY), 0, "")


def _summary(hit: Hit, tokens: list[TokenCandidates]) -> Summary:
    row = hit.row
    evidence = hit.evidence
    if evidence is None and tokens:
        # Ranked by the single-token ladder: weigh it only to say how it agreed.
        name = NameFields.of(row["first_key"], row["last_key"], row["name_terms"] or ())
        evidence = weigh(name, [tokens], TermWeights(0), [], None)
    matched = evidence.matched() if evidence is not None else {}
    if hit.rung in IDENTIFIER_RUNGS.values():
        matched[MATCH_LABELS[hit.rung]] = "exact"
    displayed = {
        "first_name": row["first_name"],
        "middle_name": row["middle_name"],
        "last_name": row["last_name"],
    }
    return Summary(
        id=row["id"],
        mrn=row["mrn"],
        first_name=row["first_name"],
        middle_name=row["middle_name"],
        last_name=row["last_name"],
        date_of_birth=row["date_of_birth"],
        sex=row["sex"],
        status=row["status"],
        phones=list(row["phones"] or []),
        email=row["email"],
        match=hit.label or MATCH_LABELS[hit.rung],
        score=hit.score,
        matched=matched,
        highlights=highlights(evidence.agreements, displayed) if evidence is not None else {},
    )


class CachedSearch:
    """Search through the clinic's search cache; a database transaction only on a miss."""

    def __init__(
        self, cache: PatientCache, reader: ClinicReader, cursors: CursorCodec, region: str
    ) -> None:
        self._cache = cache
        self._reader = reader
        self._cursors = cursors
        self._region = region

    async def search(self, criteria: SearchCriteria) -> Rendered:
        """The page's JSON for the criteria: cached under the clinic's generation, else
        searched."""

        async def load() -> SearchPage:
            gate = self._reader.state.search_gate
            async with gate.slot(self._reader.clinic_id), self._reader.transaction() as db:
                service = SearchService(
                    SearchRepository(db), self._cursors, self._reader.clinic_id, self._region
                )
                return await service.search(criteria)

        # The whole request, position included, is the key; its HMAC is taken by the cache.
        request = orjson.dumps(criteria.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        return await self._cache.search(self._reader.clinic_id, request, load)


def _fingerprint(criteria: SearchCriteria) -> str:
    """What makes two requests the same search (the page position excluded)."""
    fields = criteria.model_dump(mode="json", exclude={"cursor", "offset"})
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
