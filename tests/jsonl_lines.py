"""A test helper: the records of a JSONL file exactly as written (no memo reader in between)."""

from __future__ import annotations

import os

import orjson


def lines(path):
    """Each line of ``path`` decoded; the file must end with a newline (or be empty)."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    assert not data or data.endswith(b"\n")
    return [orjson.loads(line) for line in data.splitlines()]
