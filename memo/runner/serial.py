"""``serial``: every call in the calling process, one after another (for debugging, or n=1).

Ctrl-C ends the run at once. ``timeout`` interrupts a call with SIGALRM when the run
is started from the main thread (only the main thread takes signals).
"""

from __future__ import annotations

from .base import Backend, Run, register_backend

__all__ = ["SerialBackend"]


class SerialBackend(Backend):
    name = "serial"

    def workers(self) -> int:
        return 1

    def run(self, run: Run) -> None:
        run.progress.start()
        job = run.job()
        for item in run.indexed:
            run.deliver(job.run_batch([item]))
            run.indexed.forget([item])


register_backend("serial", SerialBackend, aliases=("sequential",))
