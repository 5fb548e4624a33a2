"""``memwandb``: one Weights & Biases run per call (needs ``memo[wandb]``)."""

from __future__ import annotations

from typing import Any

__all__ = ["memwandb"]


def memwandb(*args: Any, **kwargs: Any) -> Any:
    """Log each call as a W&B run: config = arguments, summary = result."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ImportError("memwandb needs wandb: pip install 'memo[wandb]'") from None
    raise ImportError("memwandb is not available in this version of memo")
