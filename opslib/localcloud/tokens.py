"""Tokens localcloud signs (for Scheduler's OIDC and OAuth targets, and for callers) and checks.

ID tokens are JWTs with Google's ID-token claims (iss, aud, email, sub, iat, exp). Access tokens
(Scheduler's `oauthToken`, for Google APIs) are JWTs too, with `scope` instead of `aud`, so an
API can tell them apart: Google APIs refuse ID tokens. Both are signed with a key kept in the
state directory; times come from localcloud's clock, so a token minted on an advanced clock is
valid on it.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import jwt

from opslib.localcloud.cloud import Cloud

ISSUER = "https://accounts.google.com"
LIFETIME = 3600


def _key(cloud: Cloud) -> str:
    data = cloud.store.collection("localcloud")
    if "token_key" not in data:
        data["token_key"] = secrets.token_hex(32)
        cloud.store.save("localcloud")
    return data["token_key"]


def _subject(email: str) -> str:
    """A stable numeric `sub` for an account, as Google's tokens carry."""
    return str(int(hashlib.sha256(email.encode()).hexdigest(), 16) % 10**21)


def mint(cloud: Cloud, email: str, audience: str) -> str:
    """An ID token for `email` with audience `audience`, valid for an hour of clock time."""
    now = int(cloud.clock.time())
    subject = _subject(email)
    claims = {
        "iss": ISSUER,
        "aud": audience,
        "azp": subject,
        "sub": subject,
        "email": email,
        "email_verified": True,
        "iat": now,
        "exp": now + LIFETIME,
    }
    return jwt.encode(claims, _key(cloud), algorithm="HS256", headers={"kid": "localcloud"})


def mint_access(cloud: Cloud, email: str, scope: str) -> str:
    """An OAuth access token for `email` with `scope` (space-separated), valid for an hour."""
    now = int(cloud.clock.time())
    claims = {
        "iss": ISSUER,
        "sub": _subject(email),
        "email": email,
        "scope": scope,
        "iat": now,
        "exp": now + LIFETIME,
    }
    return jwt.encode(claims, _key(cloud), algorithm="HS256", headers={"kid": "localcloud"})


class InvalidToken(Exception):
    """The token is not one localcloud signed, or it has expired."""


def verify(cloud: Cloud, token: str) -> dict[str, Any]:
    """The claims of a token localcloud signed; the caller checks the audience."""
    try:
        claims = jwt.decode(
            token,
            _key(cloud),
            algorithms=["HS256"],
            options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    if claims.get("exp", 0) < cloud.clock.time():
        raise InvalidToken("token expired")
    return claims
