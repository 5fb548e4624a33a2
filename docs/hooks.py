"""MkDocs hooks: the command-line reference is rendered from memo's own parsers.

``docs/cli.md`` holds the marker ``<!-- memo-cli -->``; at build time it is replaced by
the help of ``memo`` and of every subcommand that ``memo.cli.build_parser()`` knows,
so a new subcommand shows up in the reference without editing the page.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

MARKER = "<!-- memo-cli -->"
WIDTH = "88"  # argparse wraps help to $COLUMNS; fixed so the page does not depend on a terminal


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render_cli() -> str:
    """Markdown for ``memo --help`` and ``memo COMMAND --help``, for every command."""
    from memo.cli import build_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        parts = ["```text", parser.format_help().rstrip(), "```"]
        for name, sub in _subcommands(parser).items():
            parts += ["", f"## `memo {name}`", "", "```text", sub.format_help().rstrip(), "```"]
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(parts)


def on_config(config: Any, **kwargs: Any) -> Any:
    # the memo of this checkout, not whichever memo is installed
    root = os.path.dirname(os.path.abspath(config.config_file_path))
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, render_cli())
    return markdown


# Docstrings name other objects with Sphinx roles (:func:`memo.shard`); mkdocstrings renders
# the role's name as text before the code span, which only reads as noise on the page.
_ROLE = re.compile(r":(?:func|class|meth|attr|mod|exc|data|obj):(?=<code>)")


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    return _ROLE.sub("", html)
