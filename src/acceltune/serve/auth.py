"""API keys: ``Authorization: Bearer KEY`` with KEY one of the server's keys (none configured: no check)."""

from __future__ import annotations

import hmac

from fastapi import Request

from acceltune.serve.errors import APIError


def authorized(api_keys: tuple[str, ...], authorization: str) -> bool:
    """Whether an Authorization header value carries one of ``api_keys`` (always true without keys)."""
    if not api_keys:
        return True
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and bool(token) and _key_matches(api_keys, token.strip())


def _key_matches(api_keys: tuple[str, ...], token: str) -> bool:
    # Compare against every key, constant-time each, so timing reveals nothing about which matched.
    matched = False
    for key in api_keys:
        matched |= hmac.compare_digest(token.encode(), key.encode())
    return matched


def require_api_key(request: Request) -> None:
    """Dependency on every router but the probes when the server has keys."""
    if not authorized(request.app.state.serve.settings.api_keys, request.headers.get("authorization", "")):
        raise APIError(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer <key>'",
                       headers={"WWW-Authenticate": "Bearer"})
