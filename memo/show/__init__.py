"""``memo show PATH...``: the records of memo files as a table in the terminal.

The same table from Python: :func:`table` (a string) or :func:`select` (the columns
and rows, before formatting).

A query runs in four steps, in this order: ``where`` keeps the records that match a
filter expression, ``tail`` keeps the last N of those, ``group_by`` aggregates the
numeric columns per group (``agg``: mean, std, count, min, max, median, sum), and
``sort`` orders the rows (groups are ordered by their keys unless ``sort`` is given).
``columns`` picks and orders the columns shown.

The filter is a small expression language, parsed with :mod:`ast` and interpreted
(never evaluated as Python): comparisons (``==  !=  <  <=  >  >=``, chained like
``0.01 <= lr < 0.1``), ``in``/``not in`` a list, ``and``/``or``/``not`` and
parentheses. Names are columns (a name that is not a valid identifier goes in
backquotes: ```time-taken` > 1``); ``nan``, ``inf``, ``true``, ``false``, ``null``
and ``None`` are constants unless a column has that name. ``x == nan`` is true for
NaN. A comparison of values that cannot be ordered (a number and a string, or a
missing value) is false.

Grouping reads the file with polars when it is installed (``memo.to_polars``, then
polars' ``group_by``), which keeps a million-record file within twice polars' own
time; otherwise, and for lists of records, it runs in Python with the same results.

Output: on a terminal, a table drawn by rich that fits the terminal's width (columns
that do not fit even when squeezed are left out, and named below the table). Anywhere
else (a pipe, a file) plain text: aligned columns, nothing cut. ``csv``, ``json``
(JSON lines as memo writes them, so nan and inf survive a round trip) and
``markdown`` formats print every value in full. NaN and infinities show as
``nan``, ``inf`` and ``-inf``. The reserved keys (``$memo``, ``$nonfinite``) are
never columns.

The package, one concept a module: :mod:`.where` (the filter), :mod:`.query` (what is
done with the records), :mod:`.output` (the output) and :mod:`.command` (``memo show``).
"""

from __future__ import annotations

# the names public before the split, also those outside __all__ (memo.show.columns_of, ...)
from .command import main, register
from .output import FORMATS, plain, render, table  # noqa: F401
from .query import AGGREGATES, HIDDEN, Query, Rows, columns_of, select  # noqa: F401
from .where import Record, Where, WhereError, compile_where  # noqa: F401

__all__ = ["AGGREGATES", "FORMATS", "Query", "WhereError", "compile_where", "main",
           "register", "select", "table"]
