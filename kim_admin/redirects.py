"""Where a login may send the browser afterwards: only back to this site."""

from __future__ import annotations

from urllib.parse import urlsplit


def safe_next(target: str | None) -> str | None:
    """Return ``target`` only if it is a path on this site (no open redirect)."""
    if not target or len(target) > 2000:
        return None
    if any(ord(char) < 32 or ord(char) == 127 for char in target):
        return None  # no header injection through the Location header
    target = target.replace("\\", "/")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target
