"""The spool of ``memweb`` and the ``memo resend`` command.

The implementation lives in :mod:`memo.web.spool`; this module keeps the import
path ``memo.spool`` (and the command's registration) working.
"""

from __future__ import annotations

from .web.spool import Drained, Spool, main, refused_path, register, resend

__all__ = ["Drained", "Spool", "main", "refused_path", "register", "resend"]
