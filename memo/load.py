"""Reading results back: ``load`` for records, ``to_pandas`` and ``to_polars`` for tables."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .reader import Errors, iter_records

__all__ = ["load", "to_pandas", "to_polars"]

Source = str | os.PathLike[str] | Iterable[dict[str, Any]]


def load(path: str | os.PathLike[str], *, errors: Errors = "warn") -> list[dict[str, Any]]:
    """Every record of a memo JSONL file, as a list of dicts.

    Values the serialization layer tags (``nan``/``inf``, complex, bytes) are
    restored. A torn last line (a writer still writing, or one that died) and
    corrupt lines are reported with file and line number (``errors="warn"``),
    raised (``"raise"``) or skipped silently (``"ignore"``).
    """
    return list(iter_records(path, errors=errors))


def _records(source: Source, errors: Errors) -> list[dict[str, Any]]:
    if isinstance(source, (str, os.PathLike)):
        return load(source, errors=errors)
    return list(source)


def to_pandas(source: Source, *, errors: Errors = "warn") -> Any:
    """A pandas DataFrame of a memo file (or of a list of records, such as memlist's)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_pandas needs pandas: pip install 'memo[pandas]'") from None
    return pd.DataFrame(_records(source, errors))


def to_polars(source: Source, *, errors: Errors = "warn") -> Any:
    """A polars DataFrame of a memo file (or of a list of records)."""
    try:
        import polars as pl
    except ImportError:
        raise ImportError("to_polars needs polars: pip install 'memo[polars]'") from None
    return pl.DataFrame(_records(source, errors), infer_schema_length=None)
