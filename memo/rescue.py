"""Where a computed record goes when its file refuses it (a full disk, a lost mount).

A record that cost hours to compute is not thrown away because the write failed:
:func:`save` appends its line to a rescue file, trying in order a folder beside the
data file (``<file>.rescue/``), ``$MEMO_RESCUE_DIR``, ``$XDG_STATE_HOME/memo/rescue``
(``~/.local/state/memo/rescue``) and the system's temporary folder. A rescue file is
a memo JSONL file: ``memo merge FILE FILE RESCUE`` brings its records back.
"""

from __future__ import annotations

import os
import socket
import tempfile

__all__ = ["folders", "save"]


def folders(path: str) -> list[str]:
    """The folders tried for records that ``path`` refused, in order."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".local", "state")
    out = [path + ".rescue"]
    if os.environ.get("MEMO_RESCUE_DIR"):
        out.append(os.environ["MEMO_RESCUE_DIR"])
    out += [os.path.join(state, "memo", "rescue"), os.path.join(tempfile.gettempdir(),
                                                                "memo-rescue")]
    return out


def save(path: str, line: bytes) -> str | None:
    """Append ``line`` to the first rescue file that takes it whole; its path, or None."""
    name = f"{os.path.basename(path)}.{socket.gethostname()}.{os.getpid()}.jsonl"
    for folder in folders(path):
        target = os.path.join(folder, name)
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            continue
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                n = os.write(fd, line)
                if n == len(line):
                    os.fsync(fd)
                    return target
            except OSError:
                pass
            try:
                os.ftruncate(fd, start)  # no partial line left behind
            except OSError:
                pass
        finally:
            os.close(fd)
    return None
