"""Signed tokens for the API gateway lab: a stand-in login service's key pair, its public
keys as a JWKS (what Envoy is given), and JWTs signed with it (PyJWT)."""

from __future__ import annotations

import json
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER, AUDIENCE = "https://login.shop.test", "shop"


class Signer:
    def __init__(self, key_id: str = "shop-login-1") -> None:
        self.key_id = key_id
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> str:
        """The public key as a JSON Web Key Set: safe to publish, all a verifier needs."""
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        return json.dumps({"keys": [{**public, "kid": self.key_id, "alg": "RS256", "use": "sig"}]})

    def token(self, subject: str, lifetime_s: int = 300, audience: str = AUDIENCE) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": audience, "sub": subject, "iat": now, "exp": now + lifetime_s}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.key_id})
