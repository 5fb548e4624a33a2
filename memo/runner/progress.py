"""Progress of a run on stderr: a tqdm bar on a terminal, a line at intervals otherwise.

On a terminal (and with tqdm installed) a bar shows calls done out of the total,
failures, rate and time left. Piped or logged runs (a SLURM job's output file, ``|
tee``, CI) get no bar, whose redraws would fill the log; they get one plain line
every ``interval`` seconds instead, as joblib's ``verbose`` does::

    memo: estimate_pi: 1200/20000 calls (6%), 3 failed, 40 skipped, 452 calls/s, 0:00:41 left

and a last one when the run ends, if any was printed.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

__all__ = ["DEFAULT_INTERVAL", "Progress"]

DEFAULT_INTERVAL = 30.0  # seconds between lines in logs: a day-long sweep writes ~3,000


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts a run's calls and shows them (a bar, lines, or nothing).

    The bar is drawn from :meth:`start` on, which the backends call once their
    worker processes exist: tqdm's monitor thread must not be running when they are
    forked.
    """

    def __init__(self, progbar: bool | None, total: int | None, desc: str,
                 interval: float | None = None) -> None:
        self.tqdm: Any = None
        self.bar: Any = None
        self.total = total
        self.desc = desc
        self.done = self.failed = self.skipped = 0
        self.t0 = time.monotonic()
        self.lines = False
        self.last = self.t0
        if interval is None:
            interval = float(os.environ.get("MEMO_PROGRESS_INTERVAL", DEFAULT_INTERVAL))
        self.interval = interval
        if progbar is False:
            self.interval = -1.0
            return
        if not _is_terminal():
            return  # lines, not a bar
        self.interval = -1.0
        try:
            from tqdm.auto import tqdm  # type: ignore[import-untyped]
        except ImportError:
            if progbar:
                from .._util import missing
                raise missing("the progress bar (progbar=True)", "tqdm", "progress") from None
            return
        self.tqdm = tqdm

    def start(self, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        if self.tqdm is None or self.bar is not None:
            return
        try:  # a terminal that reports no size (some ptys) gets 80x24, not a hidden bar
            width, height = os.get_terminal_size(sys.stderr.fileno())
        except (OSError, ValueError, AttributeError):
            width = height = 0
        size: dict[str, Any] = {"dynamic_ncols": True} if width and height \
            else {"ncols": 80, "nrows": 24}
        self.bar = self.tqdm(total=self.total, desc=self.desc, unit="call", file=sys.stderr,
                             smoothing=0.1, initial=self.done + self.skipped, **size)

    def skip(self, n: int = 1) -> None:
        """Settings not run because they are already recorded."""
        self.skipped += n
        if self.bar is not None:
            self.bar.update(n)

    def advance(self, n: int, failed: int) -> None:
        self.done += n
        self.failed = failed
        if self.tqdm is not None:
            self.start()
            if failed:
                self.bar.set_postfix_str(f"failed={failed}", refresh=False)
            self.bar.update(n)
        elif self.interval >= 0:
            now = time.monotonic()
            if now - self.last >= self.interval:
                self.last = now
                self._line(now)

    def _line(self, now: float, final: bool = False) -> None:
        count = self.done + self.skipped
        text = f"memo: {self.desc}: {count}"
        if self.total:
            text += f"/{self.total} calls ({100 * count // self.total}%)"
        else:
            text += " calls"
        text += f", {self.failed} failed"
        if self.skipped:
            text += f", {self.skipped} skipped"
        spent = max(now - self.t0, 1e-9)
        rate = self.done / spent
        text += f", {rate:.3g} calls/s"
        if final:
            text += f", done in {_clock(spent)}"
        elif self.total and rate > 0:
            text += f", {_clock((self.total - count) / rate)} left"
        print(text, file=sys.stderr, flush=True)
        self.lines = True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.lines:
            self._line(time.monotonic(), final=True)


def _is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
