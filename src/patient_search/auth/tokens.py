"""HS256 JSON Web Tokens carrying the caller, the clinic and the scopes."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
READ_SCOPE = "patients:read"
WRITE_SCOPE = "patients:write"
CLINIC_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REQUIRED_CLAIMS = ("sub", "clinic_id", "scope", "exp")


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why without echoing it."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: str
    clinic_id: str
    scopes: frozenset[str]


def issue_token(
    secret: str,
    *,
    clinic_id: str,
    user_id: str,
    scopes: str = f"{READ_SCOPE} {WRITE_SCOPE}",
    ttl_s: int = 3600,
) -> str:
    """A signed token for `user_id` in `clinic_id`, valid for `ttl_s` seconds."""
    if not CLINIC_ID.match(clinic_id):
        raise ValueError("clinic id must be 1-64 characters of A-Z, a-z, 0-9, _ or -")
    claims = {
        "sub": user_id,
        "clinic_id": clinic_id,
        "scope": scopes,
        "exp": int(time.time()) + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


LEEWAY_S = 5


def verify_token(
    token: str, secret: str, *, issuer: str | None = None, audience: str | None = None
) -> Principal:
    """The principal a valid token names; InvalidToken otherwise."""
    return _verify(token, secret, issuer, audience)[0]


class TokenVerifier:
    """`verify_token` for one secret, issuer and audience, remembering tokens until they expire.

    A front desk sends the same token with every request; checking its signature and claims
    each time was ~5 % of a cached lookup's CPU. A remembered token is still refused once
    its `exp` (plus the same leeway) has passed; the memory is bounded and per process.
    """

    def __init__(
        self,
        secret: str,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        max_tokens: int = 10_000,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._max_tokens = max_tokens
        self._known: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        known = self._known.get(token)
        if known is not None:
            principal, expires = known
            if time.time() < expires + LEEWAY_S:
                return principal
            del self._known[token]
        principal, expires = _verify(token, self._secret, self._issuer, self._audience)
        if len(self._known) >= self._max_tokens:
            self._known.clear()  # rare: 10k distinct live tokens in one worker
        self._known[token] = (principal, expires)
        return principal


def _verify(
    token: str, secret: str, issuer: str | None, audience: str | None
) -> tuple[Principal, float]:
    options: dict[str, object] = {"require": list(REQUIRED_CLAIMS)}
    if audience is None:
        options["verify_aud"] = False
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # pinned: never "none", never an algorithm the token picks
            options=options,  # type: ignore[arg-type]
            issuer=issuer,
            audience=audience,
            leeway=LEEWAY_S,
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("the token has expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise InvalidToken("the token is not valid yet") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"the token lacks the '{exc.claim}' claim") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidToken("the token is malformed or its signature does not verify") from exc
    sub, clinic_id, scope = claims["sub"], claims["clinic_id"], claims["scope"]
    if not isinstance(sub, str) or not sub or len(sub) > 200:
        raise InvalidToken("the token's 'sub' claim must be a non-empty string")
    if not isinstance(clinic_id, str) or not CLINIC_ID.match(clinic_id):
        raise InvalidToken("the token's 'clinic_id' claim is not a valid clinic id")
    if not isinstance(scope, str):
        raise InvalidToken("the token's 'scope' claim must be a space-separated string")
    principal = Principal(user_id=sub, clinic_id=clinic_id, scopes=frozenset(scope.split()))
    return principal, float(claims["exp"])
