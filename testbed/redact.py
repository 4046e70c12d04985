"""URLs as they may be shown: in logs, reports and testbed.json.

The inventory refuses a user:password@ in a URL (a secret belongs in a reference), but whatever
builds a URL some other way must still not print its credentials, so every place that shows one
goes through :func:`redact_url`."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"


def redact_url(url: str) -> str:
    """``url`` with its userinfo (user:password@) replaced by ***@; for showing, never for connecting."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed '[' of an IPv6 address: show nothing of it rather than a secret
        return f"<a URL that cannot be parsed ({len(url)} characters)>" if "@" in url else url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=f"{HIDDEN}@{parts.netloc.rpartition('@')[2]}"))
