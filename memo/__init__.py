"""memo: decorators that turn a sweep over a parameter grid into a table of results."""

from .check import check
from .context import capture_context, memutils, run_context
from .errors import ignore_error
from .grid import grid, random_grid
from .load import load, to_pandas, to_polars
from .merge import merge
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
from .sinks.web import DeliveryError, DeliveryWarning, memweb
from .timing import capture_time, time_taken, timeit
from .writer import WriteError

__version__ = "0.1.0"

__all__ = [
    "CorruptLineWarning",
    "Failure",
    "DeliveryError",
    "DeliveryWarning",
    "KeyCollisionError",
    "RunError",
    "RunReport",
    "Runner",
    "SerializationError",
    "WriteError",
    "capture_context",
    "capture_time",
    "check",
    "grid",
    "ignore_error",
    "load",
    "memfile",
    "merge",
    "plot",
    "memfunc",
    "memlist",
    "memutils",
    "memstdout",
    "memwandb",
    "memweb",
    "random_grid",
    "run_context",
    "shard",
    "time_taken",
    "timeit",
    "to_pandas",
    "to_polars",
]
