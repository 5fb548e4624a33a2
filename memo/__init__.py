"""memo: decorators that turn a sweep over a parameter grid into a table of results."""

from .errors import ignore_error
from .grid import grid, random_grid
from .load import load, to_pandas, to_polars
from .reader import CorruptLineWarning
from .record import KeyCollisionError
from .serialize import SerializationError
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
    "DeliveryError",
    "DeliveryWarning",
    "KeyCollisionError",
    "SerializationError",
    "WriteError",
    "capture_time",
    "grid",
    "ignore_error",
    "load",
    "memfile",
    "memfunc",
    "memlist",
    "memstdout",
    "memwandb",
    "memweb",
    "random_grid",
    "time_taken",
    "timeit",
    "to_pandas",
    "to_polars",
]
