"""``memo doctor PATH``: what the filesystem at PATH gives memo, measured on the spot.

A cluster filesystem's guarantees depend on how the site mounted and configured
it, so the doctor measures instead of trusting names. It reports:

* the mount holding PATH: type, options, mount point (:func:`memo.filesystem.mount_info`);
* whether ``flock``, POSIX record locks (``lockf``) and exclusive creation
  (``O_CREAT | O_EXCL``, what the ``soft`` lock file relies on) work there;
* whether appends from this host are whole under each lock mode: a few processes
  append numbered records to a temporary file beside PATH through memo's own
  writer, and the file is counted (intact, torn, lost, duplicated records);
* the lock mode ``lock="auto"`` takes there, and why (:func:`memo.filesystem.auto_lock`).

With ``--peer``, two invocations on two hosts (``srun --ntasks=2 --nodes=2 memo
doctor PATH --peer``) meet through files beside PATH (written whole and renamed
into place, read by reopening: close-to-open consistency is all they need). The
first to create its file exclusively leads. Then, step by step: the leader takes
each kind of lock and the other tries it (does a lock on one host exclude the
other?); the other tries to create a file the leader created exclusively; and
both hosts append at once under each lock mode, after which the leader counts
the records. This is the only way to know whether a cluster's locks are
cluster-wide. Every temporary file is removed at the end, also on failure.

The exit status is 0 when the checks found nothing wrong with memo's automatic
choice, 1 when they did (appends torn or lost, or with ``--peer`` a lock that does
not exclude the other host), 2 for a usage error.

The package, one concept a module: :mod:`.probes` (the checks on this host),
:mod:`.peer` (the two-host checks), :mod:`.report` (:func:`diagnose` and the text
report) and :mod:`.command` (``memo doctor``).
"""

from __future__ import annotations

# the names public before the split, also those outside __all__ (memo.doctor.PREFIX, ...)
from .command import main, register
from .peer import Peer, check_peer  # noqa: F401
from .probes import MODES, PAD, PREFIX, check_appends, check_locks, count_records, try_lock  # noqa: F401
from .report import diagnose, format_report  # noqa: F401

__all__ = ["MODES", "count_records", "diagnose", "main", "register"]
