"""Flushing what is still buffered when a process ends: the exit hooks in one place.

:func:`flush_at_exit` registers an object with a ``flush()`` method (weakly: a
dropped object is not kept alive). Its ``flush()`` is called

* at interpreter exit (``atexit``);
* when a ``multiprocessing`` worker exits (workers skip ``atexit``; its finalizers run);
* on ``SIGTERM`` (``Pool.terminate``, ``scancel``), when no other ``SIGTERM`` handler is
  installed: flush, then die of the signal as before.

Registrations are per process: a forked child starts with none (what its parent
registered is the parent's to flush).
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import warnings
import weakref
from typing import Any, Protocol

from .errors import DeliveryWarning

__all__ = ["flush_at_exit"]


class Flushable(Protocol):
    def flush(self) -> None: ...


_registered: list[weakref.ref[Any]] = []
_hooked_pid = -1


def flush_all() -> None:
    """Flush every registered object of this process; failures become warnings."""
    for ref in list(_registered):
        obj = ref()
        if obj is not None:
            try:
                obj.flush()
            except Exception as exc:  # at exit there is no caller left to raise to
                warnings.warn(f"memweb: {exc}", DeliveryWarning, stacklevel=1)


def _on_sigterm(signum: int, frame: Any) -> None:
    flush_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def flush_at_exit(obj: Flushable) -> None:
    """Call ``obj.flush()`` when this process ends: atexit, multiprocessing workers, SIGTERM."""
    global _hooked_pid
    pid = os.getpid()
    if _hooked_pid != pid:
        _registered.clear()  # inherited from a parent: its objects are the parent's to flush
        _hooked_pid = pid
        atexit.register(flush_all)
        from multiprocessing import util
        util.Finalize(None, flush_all, exitpriority=100)  # workers skip atexit
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    _registered.append(weakref.ref(obj))
