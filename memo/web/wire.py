"""The wire format that ``memweb`` (the client) and ``memo serve`` (the collector) share.

* **Ids.** Each record carries its id under :data:`ID_KEY`, 32 hex digits (a random
  per-process prefix and a counter), added by the client before the record is
  serialized; it stays in the record wherever the record goes (request, spool, the
  collector's file). The collector keeps the first copy of an id.
* **Bodies.** A ``POST`` body is one record (a JSON object) or a batch (a JSON list of
  objects), UTF-8 JSON as :mod:`memo.serialize` writes it (``$nonfinite`` and the
  other ``$`` encodings included). :func:`encode` builds a body from serialized lines,
  :func:`decode` turns one back into records or raises :class:`BadRequest`.
* **Statuses.** ``2xx``: stored (``{"written": n, "duplicates": d}``). Worth trying
  again later (:func:`transient`): no answer, ``408``, ``429`` (honouring
  ``Retry-After``) and ``5xx``. Every other status refuses the request for good;
  among those, :data:`ENDPOINT_STATUSES` (authentication, address, method) concern
  the endpoint and say nothing about the records, while the rest (``400`` a body
  that is not records, ``413`` a body over the limit, ...) concern the body: one
  record in a batch can be refused while the others are taken
  (:func:`refuses_record`).
"""

from __future__ import annotations

import itertools
import os
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any

import msgspec

from .errors import BadRequest

__all__ = [
    "ENDPOINT_STATUSES", "ID_KEY", "MAX_ID", "decode", "encode", "new_id", "refuses_record",
    "spool_name", "transient",
]

ID_KEY = "_memo_id"
"""The key under which each record carries its id."""

MAX_ID = 128
"""The longest id (characters) a collector accepts."""

ENDPOINT_STATUSES = frozenset({401, 403, 404, 405, 407, 410})
"""Refusals about the endpoint or the credentials: no record of the request is at fault."""

_ids: list[Any] = [-1, "", None]  # pid, this process's random prefix, counter
_decoder = msgspec.json.Decoder()


def new_id() -> str:
    """A fresh record id, 32 hex digits: 64 random bits drawn once per process + a counter.

    Unique across processes and runs without a system call per record; not drawn from
    the ``random`` module, which sweeps often seed identically in every worker.
    """
    pid = os.getpid()
    if _ids[0] != pid:
        _ids[:] = [pid, os.urandom(8).hex(), itertools.count()]
    return f"{_ids[1]}{next(_ids[2]):016x}"


def transient(status: int | None) -> bool:
    """Whether a request that got ``status`` (``None``: no answer) may succeed if sent again."""
    return status is None or status in (408, 429) or status >= 500


def refuses_record(status: int | None) -> bool:
    """Whether ``status`` refuses, for good, something in the body (not the endpoint itself)."""
    return status is not None and 400 <= status < 500 and not transient(status) \
        and status not in ENDPOINT_STATUSES


def encode(lines: Sequence[bytes], *, as_list: bool = True) -> bytes:
    """The body for serialized records (each one line, ``\\n`` ended): a list, or one object."""
    if not as_list and len(lines) == 1:
        return lines[0].rstrip(b"\n")
    return b"[" + b",".join(line.rstrip(b"\n") for line in lines) + b"]"


def decode(body: bytes) -> list[dict[str, Any]]:
    """The records of a request body; :class:`BadRequest` for anything else."""
    try:
        obj = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply to be a record") from None
    if isinstance(obj, dict):
        records = [obj]
    elif isinstance(obj, list):
        records = obj
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise BadRequest(f"item {i} of the batch is a JSON "
                                 f"{_json_type(record)}, not an object")
    else:
        raise BadRequest(f"the body is a JSON {_json_type(obj)}; send one record as an "
                         "object or a batch as a list of objects")
    for record in records:
        rid = record.get(ID_KEY)
        if rid is not None and (not isinstance(rid, str) or not 0 < len(rid) <= MAX_ID):
            raise BadRequest(f"{ID_KEY} must be a string of 1 to {MAX_ID} characters")
    return records


def _json_type(obj: Any) -> str:
    names = {str: "string", int: "number", float: "number", bool: "boolean", list: "list",
             dict: "object", type(None): "null"}
    return names.get(type(obj), type(obj).__name__)


def spool_name(url: str) -> str:
    """``memweb-spool-<host>-<port>[-<path>].jsonl``: the default spool of an endpoint."""
    u = urllib.parse.urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{u.hostname}-{port}-{u.path}").strip("-.")
    return f"memweb-spool-{slug}.jsonl"
