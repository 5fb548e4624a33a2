"""memo: decorators that turn a sweep over a parameter grid into a table of results."""

from .check import check
from .context import capture_context, memutils, run_context
from .errors import ignore_error
from .exceptions import MemoError
from .grid import grid, random_grid
from .load import load, to_pandas, to_polars
from .merge import merge
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

__version__ = "0.1.0"

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
    "memwandb",
    "memweb",
    "merge",
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
