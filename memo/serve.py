"""``memo serve``: the collector for ``memweb`` (needs ``memo[serve]``).

The implementation lives in :mod:`memo.web.server` (HTTP), :mod:`memo.web.collector`
(appending, de-duplication) and :mod:`memo.web.process` (:class:`ServerProcess`);
this module keeps the import path ``memo.serve`` (and the command's registration)
working.
"""

from __future__ import annotations

from .web.collector import Collector
from .web.errors import BadRequest, ServeError
from .web.process import ServerProcess
from .web.server import DEFAULT_MAX_BODY, main, make_app, register, serve

__all__ = ["DEFAULT_MAX_BODY", "BadRequest", "Collector", "ServeError", "ServerProcess", "main",
           "make_app", "register", "serve"]
