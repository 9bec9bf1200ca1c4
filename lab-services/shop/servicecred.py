"""Service credentials: which service calls an internal endpoint, checked by the service called.

An application-level control, kept small on purpose (the Istio part compares it with the
mesh's way: mTLS identities and an AuthorizationPolicy, with no key and no code in the app):

- The caller signs a short-lived token for every call: an HS256 JWT (PyJWT) with
  iss = sub = the calling service, aud = the called service, exp = now + 60 s.
- The services share one key (setting service_key, env SHOP_SERVICE_KEY): msalab makes a
  random one per local deployment, deploy_shop a Kubernetes Secret per namespace.
- The called service checks signature, expiry and audience (401 when a check fails or no
  token came) and that the caller is one it serves (403). With no key configured it refuses
  every call (401): an internal endpoint is never open by accident.

One shared key keeps customers out of the internal endpoints; it does not keep one
compromised service from posing as another (anyone with the key can sign any `sub`).
Per-service keys or certificates would; that is what the mesh gives.
"""

from __future__ import annotations

import time
from typing import Callable

import jwt
from fastapi import Request

from .errors import ShopError

ALGORITHM = "HS256"
LIFETIME_S = 60
LEEWAY_S = 5  # two machines' clocks differ a little
MIN_KEY_CHARS = 32  # HS256 wants a key of at least 256 bits


def check_key(key: str) -> None:
    """At start-up: a key that is set must be long enough to be worth having."""
    if key and len(key) < MIN_KEY_CHARS:
        raise SystemExit(f"SHOP_SERVICE_KEY has {len(key)} characters; use at least {MIN_KEY_CHARS}, e.g. "
                         "python -c 'import secrets; print(secrets.token_urlsafe(32))'")


def credential(key: str, caller: str, callee: str) -> dict[str, str]:
    """The header that proves `caller` to `callee`; none without a key (the callee will say so)."""
    if not key:
        return {}
    now = int(time.time())
    claims = {"iss": caller, "sub": caller, "aud": callee, "iat": now, "exp": now + LIFETIME_S}
    return {"Authorization": "Bearer " + jwt.encode(claims, key, algorithm=ALGORITHM)}


def require_caller(key: str, service: str, allowed: tuple[str, ...]) -> Callable[[Request], str]:
    """A FastAPI dependency for internal routes of `service`: only `allowed` services get through."""

    def verified_caller(request: Request) -> str:
        what = f"{request.method} {request.url.path} is internal to the shop"
        if not key:
            raise ShopError(401, f"{what}, and {service} has no service key to check callers with: "
                                 "set SHOP_SERVICE_KEY (the same on every service)")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ShopError(401, f"{what}: send a service credential (Authorization: Bearer <token>)")
        claims = _verified(token, key, service, what)
        caller = claims["sub"]
        if caller not in allowed:
            raise ShopError(403, f"{what}: {caller} may not call it; only {', '.join(allowed)} may")
        return caller

    return verified_caller


def _verified(token: str, key: str, service: str, what: str) -> dict:
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=service, leeway=LEEWAY_S,
                            options={"require": ["iss", "sub", "aud", "iat", "exp"]})
    except jwt.ExpiredSignatureError:
        raise ShopError(401, f"{what}: the service credential has expired")
    except jwt.InvalidAudienceError:
        raise ShopError(401, f"{what}: the service credential is meant for another service, not {service}")
    except jwt.PyJWTError as err:
        raise ShopError(401, f"{what}: invalid service credential ({err})")
    if claims["iss"] != claims["sub"] or claims["exp"] - claims["iat"] > LIFETIME_S:
        raise ShopError(401, f"{what}: the service credential is not one a shop service issues "
                             f"(issuer must be the caller, lifetime at most {LIFETIME_S} s)")
    return claims
