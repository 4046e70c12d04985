"""URLs as they may be shown: in logs, reports and testbed.json.

The inventory refuses a user:password@ or a secret query parameter in a URL (a secret belongs in a reference), but whatever
builds a URL some other way must still not print its credentials, so every place that shows one
goes through :func:`redact_url`."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

HIDDEN = "***"

SECRET_PARAMS = frozenset({"p", "password", "passwd", "pwd", "pass", "token", "access_token", "auth",
                           "authorization", "secret", "key", "apikey", "api_key", "sig", "signature"})
"""Query parameters that carry a secret (InfluxDB 1.x takes ``u=`` and ``p=``; others a token or key)."""


def secret_params(query: str) -> list[str]:
    """The names of ``query``'s parameters that carry a secret, in order."""
    return [k for k, _ in parse_qsl(query, keep_blank_values=True) if k.lower() in SECRET_PARAMS]


def _redact_query(query: str) -> str:
    out = []
    for part in query.split("&"):
        name = part.split("=", 1)[0]
        out.append(f"{name}={HIDDEN}" if "=" in part and name.lower() in SECRET_PARAMS else part)
    return "&".join(out)


def redact_url(url: str) -> str:
    """``url`` with its userinfo (user:password@) replaced by ***@ and the values of secret query
    parameters (``p=``, ``token=``, ...) by ***; for showing, never for connecting."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed '[' of an IPv6 address: show nothing of it rather than a secret
        return f"<a URL that cannot be parsed ({len(url)} characters)>" if "@" in url else url
    if "@" in parts.netloc:
        parts = parts._replace(netloc=f"{HIDDEN}@{parts.netloc.rpartition('@')[2]}")
    if secret_params(parts.query):
        parts = parts._replace(query=_redact_query(parts.query))
    return urlunsplit(parts)
