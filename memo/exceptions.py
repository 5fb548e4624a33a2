"""memo's exceptions, under one base.

Every error memo raises on purpose derives from :class:`MemoError`, and also keeps
the builtin base it always had, so ``except OSError`` and ``except memo.MemoError``
both work::

    MemoError
    ├── WriteError (OSError)            a record could not be appended; nothing partial left
    ├── LockTimeout (filelock.Timeout)  the file's lock was not taken within ``timeout``
    ├── SerializationError (TypeError)  a value has no JSON form; names function, key and type
    ├── KeyCollisionError (ValueError)  an output key equals an argument name
    ├── DeliveryError (OSError)         memweb could not deliver a record
    └── RunError (RuntimeError)         calls of a ``Runner.run`` failed

Each class is defined in the module of the concept it belongs to and imported from
there; this module holds only the base, so that any module can import it without
cycles.
"""

from __future__ import annotations

__all__ = ["MemoError"]


class MemoError(Exception):
    """Base of every error memo raises on purpose."""
