"""The errors and the warning of remote collection (client and collector).

Each error derives from :class:`memo.MemoError` and keeps the builtin base it has
always had, so ``except OSError`` around a ``memweb`` call still catches a
:class:`DeliveryError`.
"""

from __future__ import annotations

from ..exceptions import MemoError

__all__ = ["BadRequest", "DeliveryError", "DeliveryWarning", "ServeError"]


class DeliveryError(MemoError, OSError):
    """Records could not be delivered to the endpoint.

    ``status`` is the HTTP status the endpoint answered (``None`` when it could not be
    reached); ``retry_after`` the seconds its ``Retry-After`` header asked for.
    """

    def __init__(self, message: str, status: int | None = None,
                 retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type[DeliveryError], tuple[str, int | None, float]]:
        return (type(self), (str(self), self.status, self.retry_after))


class DeliveryWarning(UserWarning):
    """memweb could not deliver records and kept them (in its spool, or set aside)."""


class BadRequest(MemoError, ValueError):
    """A request body that is not one record or a list of records (the collector's 400)."""


class ServeError(MemoError, ValueError):
    """``memo serve`` was given settings it refuses, or did not start."""
