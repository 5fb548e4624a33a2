"""What a run did: :class:`RunReport`, one :class:`Failure` per failed call, :class:`RunError`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import MemoError

__all__ = ["Failure", "RunError", "RunReport"]


@dataclass(frozen=True)
class Failure:
    """One call that failed: it raised (``raised=True``) or returned ``status="error"``.

    Workers make these with empty ``settings`` (the parent knows them by ``index``
    and fills them in), so a batch's outcome stays small to send back.
    """

    index: int
    settings: Mapping[str, Any]
    error_type: str
    message: str
    traceback: str = ""
    raised: bool = True

    def __str__(self) -> str:
        how = "raised" if self.raised else "recorded"
        return f"#{self.index} {dict(self.settings)!r}: {how} {self.error_type}: {self.message}"


@dataclass
class RunReport:
    """What a run did: calls finished, skipped (already recorded), failed, and how long it took.

    ``total`` counts every setting, ``skipped`` those not run because a recorder with
    ``skip=True`` already held them, ``done`` the calls that ran to an outcome.
    """

    func: str
    total: int
    done: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    elapsed: float = 0.0
    results: list[Any] | None = None

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def succeeded(self) -> int:
        return self.done - self.failed

    @property
    def ok(self) -> bool:
        return not self.failures and self.done + self.skipped == self.total

    def summary(self, limit: int = 10) -> str:
        """A few lines: counts, then the failed settings (at most ``limit`` of them)."""
        ran = self.total - self.skipped
        head = f"{self.func}: {self.succeeded} of {ran} calls succeeded, {self.failed} failed"
        if self.skipped:
            head += f", {self.skipped} skipped (already recorded)"
        if self.done < ran:
            head += f", {ran - self.done} did not run"
        head += f" ({self.elapsed:.1f} s)"
        lines = [head]
        for failure in sorted(self.failures, key=lambda f: f.index)[:limit]:
            lines.append(f"  {failure}")
        if self.failed > limit:
            lines.append(f"  ... and {self.failed - limit} more (see RunReport.failures)")
        return "\n".join(lines)


class RunError(MemoError, RuntimeError):
    """Calls raised during a run; every other call finished. ``.report`` has the details."""

    def __init__(self, report: RunReport) -> None:
        self.report = report
        super().__init__(report.summary())
