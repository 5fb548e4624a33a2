"""Merge memo JSONL files and shard folders into one file (same as ``memo merge``).

Usage: python scripts/merge.py OUT IN... [--dedupe] [--dedupe-by KEY]... [--corrupt FILE] [-q]
"""

from __future__ import annotations

import sys

from memo.cli import main

if __name__ == "__main__":
    sys.exit(main(["merge", *sys.argv[1:]]))
