"""Remote collection: ``memweb`` sends records over HTTP, ``memo serve`` collects them.

The layers, one module each (the client's need ``memo[web]``, the server's ``memo[serve]``):

========================  ===============================================================
:mod:`~memo.web.wire`     what client and server share: record ids, body shape, statuses
:mod:`~memo.web.errors`   :class:`DeliveryError`, :class:`DeliveryWarning`, the server's
:mod:`~memo.web.retry`    :class:`RetryPolicy`: which failures are retried, how long to wait
:mod:`~memo.web.sender`   :class:`Sender`: POSTs under the retry policy, finds refused records
:mod:`~memo.web.batcher`  :class:`Batcher`: the background thread that sends lists
:mod:`~memo.web.spool`    :class:`Spool`: what was not delivered, drained later; ``memo resend``
:mod:`~memo.web.hooks`    flushing buffers at exit, in workers and on ``SIGTERM``
:mod:`~memo.web.sink`     :class:`WebSink` and :func:`memweb`: where each record goes
:mod:`~memo.web.collector` the server's core: bodies in, lines appended, each id once
:mod:`~memo.web.server`   ``memo serve``: HTTP, authentication, connection limits
:mod:`~memo.web.process`  :class:`ServerProcess`: ``memo serve`` in a subprocess
========================  ===============================================================

This package imports only the client side; the server modules are imported when used.
"""

from __future__ import annotations

from .batcher import Batcher
from .errors import BadRequest, DeliveryError, DeliveryWarning, ServeError
from .retry import RetryPolicy
from .sender import Sender
from .sink import WebSink, memweb
from .spool import Spool, resend
from .wire import ID_KEY, new_id

__all__ = [
    "ID_KEY", "BadRequest", "Batcher", "DeliveryError", "DeliveryWarning", "RetryPolicy",
    "Sender", "ServeError", "Spool", "WebSink", "memweb", "new_id", "resend",
]
