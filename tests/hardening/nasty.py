"""A corpus of hostile values, and the one rule every answer to them must follow."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM = "application/problem+json"

# Text a client might send anywhere a string goes.
NASTY_TEXT: dict[str, str] = {
    "nul": "ab\x00cd",
    "nul-only": "\x00",
    "10kB": "x" * 10_240,
    "emoji": "😀👩🏽‍⚕️🇺🇸",
    "rtl": "\u202eevil\u202c שלום مرحبا",
    "zero-width": "a\u200bb\ufeffc\u2060",
    "combining": "e\u0301" * 40,
    "ligatures-and-folding": "ﬃ ß İ ǅ",
    "newlines": "line1\r\nline2",
    "escape-sequence": "\x1b[31mred\x1b[0m",
    "c1-control": "next\x85line",
    "sql-quote": "'; DROP TABLE patients; --",
    "sql-or": '" OR 1=1 --',
    "sql-comment": "/* */ UNION SELECT * FROM patients",
    "like-wildcards": "%_\\",
    "percent": "%",
    "underscore": "_",
    "backslash": "\\",
    "tsquery": "a & b | !c :* (d) <-> e",
    "regex": ".*+?^$[](){}|\\1",
    "printf": "%s%n%x%d",
    "html": "<script>alert(1)</script>",
    "json-operator": '{"$ne": null}',
    "path-traversal": "../../etc/passwd",
    "arabic-digits": "٤١٥٥٥٥٠١٣٤",
    "fullwidth-digits": "４１５５５５０１３４",
    "huge-number": "9" * 400,
    "negative": "-1",
    "float-overflow": "1e309",
    "nan": "NaN",
    "impossible-date": "2023-02-30",
    "month-13": "2023-13-01",
    "year-zero": "0000-01-01",
    "datetime": "1975-03-14T00:00:00Z",
    "epoch": "86400",
    "whitespace": " \t ",
    "empty": "",
    "replacement-char": "\ufffd",
    "private-use": "\ue000\U000f0000",
    "noncharacter": "\ufdd0\uffff",
}
# Values of the wrong JSON type.
NASTY_JSON: dict[str, Any] = {
    "null": None,
    "true": True,
    "zero": 0,
    "huge-int": 10**30,
    "negative-int": -(10**18),
    "float": 1.5e300,
    "object": {"a": 1},
    "array": ["a"],
    "nested": [[[[[[["deep"]]]]]]],
}


def assert_clean_answer(response: httpx.Response, sent: object = None) -> None:
    """Never a 5xx; every error a problem document that says what is wrong and quotes nothing."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code < 400:
        return
    assert response.headers["content-type"] == PROBLEM, response.headers
    problem = response.json()
    assert problem["status"] == response.status_code
    assert isinstance(problem["title"], str) and problem["title"]
    assert isinstance(problem["detail"], str) and problem["detail"]
    if isinstance(sent, str) and len(sent.strip()) >= 5:
        # Long enough not to occur in a message by chance ("-1", "%"); the 10 kB one by prefix.
        assert sent.strip()[:50] not in response.text, "the error quotes the input"
