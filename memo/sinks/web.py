"""``memweb``: records POSTed as JSON to an HTTP endpoint (needs ``memo[web]``)."""

from __future__ import annotations

from typing import Any

__all__ = ["memweb"]


def memweb(*args: Any, **kwargs: Any) -> Any:
    """Send each record to ``url`` as a JSON POST."""
    try:
        import httpx  # noqa: F401
    except ImportError:
        raise ImportError("memweb needs httpx: pip install 'memo[web]'") from None
    raise ImportError("memweb is not available in this version of memo")
