"""``memweb``: records POSTed as JSON to an HTTP endpoint (needs ``memo[web]``).

The implementation lives in the :mod:`memo.web` package, in layers (wire format,
retry policy, sender, batcher, spool, exit hooks, sink); this module keeps the
documented import path ``memo.sinks.web`` working.
"""

from __future__ import annotations

from ..web.errors import DeliveryError, DeliveryWarning
from ..web.retry import RetryPolicy
from ..web.sender import Sender
from ..web.sink import WebSink, memweb
from ..web.wire import ID_KEY, new_id
from ..web.wire import spool_name as default_spool

__all__ = ["ID_KEY", "DeliveryError", "DeliveryWarning", "RetryPolicy", "Sender", "WebSink",
           "default_spool", "memweb", "new_id"]
