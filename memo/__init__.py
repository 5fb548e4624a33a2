"""memo: decorators that turn a sweep over a parameter grid into a table of results.

memo continues the project of the same name whose last release on the package index
is 0.2.4; install this one from its checkout (``pip install .``).
"""

import sys as _sys

if _sys.platform == "win32":
    # Checked before anything else is imported, so that the reason is the error, not a
    # "No module named 'fcntl'" from deep inside memo's file locking. A plain ImportError:
    # memo.exceptions (MemoError) cannot be imported on Windows either.
    raise ImportError(
        "memo does not run on Windows: its files are shared between processes with POSIX "
        "locks and appends (the fcntl module), which Windows does not have. It is tested "
        "on Linux and expected to work on macOS; on Windows, use it inside WSL."
    )

from .check import check
from .context import capture_context, memutils, run_context
from .errors import ignore_error
from .exceptions import MemoError
from .grid import grid, random_grid
from .load import load, to_pandas, to_polars
from .merge import merge
from .plan import plan
from .plot import plot  # altair and vl-convert are imported when a chart is made
from .reader import CorruptLineWarning
from .record import KeyCollisionError
from .runner import Failure, RunError, Runner, RunReport
from .serialize import SerializationError
from .shard import shard
from .sinks.file import memfile
from .sinks.func import memfunc, memstdout
from .sinks.list import memlist
from .sinks.wandb import memwandb
from .sinks.web import DeliveryError, DeliveryWarning, RetryPolicy, memweb
from .timing import capture_time, time_taken, timeit
from .writer import WriteError

__version__ = "0.3.0"

memwand = memwandb  # the name the first versions of memo gave the W&B decorator

__all__ = [
    "capture_context",
    "capture_time",
    "check",
    "CorruptLineWarning",
    "DeliveryError",
    "DeliveryWarning",
    "Failure",
    "grid",
    "ignore_error",
    "KeyCollisionError",
    "load",
    "memfile",
    "memfunc",
    "memlist",
    "MemoError",
    "memstdout",
    "memutils",
    "memwand",
    "memwandb",
    "memweb",
    "merge",
    "plan",
    "plot",
    "random_grid",
    "RetryPolicy",
    "run_context",
    "RunError",
    "Runner",
    "RunReport",
    "SerializationError",
    "shard",
    "time_taken",
    "timeit",
    "to_pandas",
    "to_polars",
    "WriteError",
]
