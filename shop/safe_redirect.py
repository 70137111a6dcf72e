"""The `next` parameter after sign-in: only a path on this site, never another host."""

from __future__ import annotations

from urllib.parse import urlsplit


def safe_next(target: str | None) -> str | None:
    """`target` when it is a local absolute path ("/products/x?y=1"), else None.

    Refused: other hosts ("https://evil.example", "//evil.example"), backslash tricks
    ("/\\evil.example", which browsers read as "//evil.example"), schemes ("javascript:..."),
    control characters and relative paths.
    """
    if not target or len(target) > 2000:
        return None
    if any(ord(ch) < 32 or ch == "\\" for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target
