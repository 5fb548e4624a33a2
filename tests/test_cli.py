"""The ``memo`` command's conventions, run as a user runs them: real subprocesses.

--version; ``-`` for standard input and output; one set of exit statuses for every
subcommand (0 done, 1 problems in the data, 2 usage error or unusable path); errors
as one line on stderr, never a traceback; the CLI reference rendered from the parsers.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import ROOT, env

import memo
from memo import cli

GOOD = b'{"x": 1}\n{"x": 2}\n'
TORN = b'{"x": 1}\n{"x"\n{"x": 3}\n'


def memo_cmd(*args: str, cwd: Path, stdin: bytes | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "memo", *args], cwd=cwd, env=env(), input=stdin,
                          capture_output=True, timeout=timeout)


def _no_traceback(done: subprocess.CompletedProcess[bytes]) -> str:
    err = done.stderr.decode()
    assert "Traceback" not in err, err
    return err


def test_version(tmp_path: Path) -> None:
    done = memo_cmd("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.decode().strip() == f"memo {memo.__version__}" == "memo 0.3.0"


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    done = memo_cmd(cwd=tmp_path)
    assert done.returncode == cli.FAILED and b"usage: memo" in done.stderr
    assert memo_cmd("check", cwd=tmp_path).returncode == cli.FAILED  # PATH missing
    assert memo_cmd("merge", "--nope", "a", "b", cwd=tmp_path).returncode == cli.FAILED


def test_check_reads_stdin(tmp_path: Path) -> None:
    ok = memo_cmd("check", "-", cwd=tmp_path, stdin=GOOD)
    assert ok.returncode == cli.OK and ok.stdout == b""
    assert b"2 records in 1 file(s)" in ok.stderr
    bad = memo_cmd("check", "-", cwd=tmp_path, stdin=TORN)
    assert bad.returncode == cli.PROBLEMS
    assert bad.stdout.decode().splitlines() == ["<stdin>:2: corrupt line: Input data was truncated"]
    assert "memo-stdin" not in bad.stderr.decode()  # the temporary copy is not named


def test_check_stdin_together_with_files(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(TORN)
    done = memo_cmd("check", "a.jsonl", "-", cwd=tmp_path, stdin=GOOD)
    assert done.returncode == cli.PROBLEMS
    assert done.stdout.decode().startswith("a.jsonl:2: corrupt line")
    assert b"4 records in 2 file(s)" in done.stderr


def test_merge_stdin_to_file_and_file_to_stdout(tmp_path: Path) -> None:
    to_file = memo_cmd("merge", "out.jsonl", "-", cwd=tmp_path, stdin=GOOD)
    assert to_file.returncode == cli.OK, to_file.stderr
    assert memo.load(tmp_path / "out.jsonl") == [{"x": 1}, {"x": 2}]

    to_stdout = memo_cmd("merge", "-", "out.jsonl", cwd=tmp_path)
    assert to_stdout.returncode == cli.OK
    assert to_stdout.stdout.splitlines() == (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert "into <stdout>" in to_stdout.stderr.decode()
    assert not list(tmp_path.glob("-*"))  # no file called "-"


def test_merge_pipe_to_pipe_skips_corrupt_lines_and_exits_1(tmp_path: Path) -> None:
    done = memo_cmd("merge", "-", "-", cwd=tmp_path, stdin=TORN)
    assert done.returncode == cli.PROBLEMS
    assert done.stdout == b'{"x": 1}\n{"x": 3}\n'
    err = _no_traceback(done)
    assert "<stdin>:2: corrupt line" in err and "1 corrupt line(s) skipped" in err


def test_merge_exit_status_follows_check(tmp_path: Path) -> None:
    """merge and check agree on what is a problem: the same files give the same status."""
    (tmp_path / "good.jsonl").write_bytes(GOOD)
    (tmp_path / "torn.jsonl").write_bytes(TORN)
    (tmp_path / "open.jsonl").write_bytes(b'{"x": 1}\n{"x": 2')  # a writer mid-line
    for name in ("good.jsonl", "torn.jsonl", "open.jsonl"):
        checked = memo_cmd("check", name, cwd=tmp_path).returncode
        merged = memo_cmd("merge", "m.jsonl", name, cwd=tmp_path).returncode
        assert checked == merged, name
    assert memo_cmd("check", "good.jsonl", cwd=tmp_path).returncode == cli.OK
    assert memo_cmd("check", "torn.jsonl", cwd=tmp_path).returncode == cli.PROBLEMS


def test_merge_into_a_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(GOOD)
    (tmp_path / "folder").mkdir()
    done = memo_cmd("merge", "folder", "a.jsonl", cwd=tmp_path)
    assert done.returncode == cli.FAILED
    err = _no_traceback(done)
    assert err.strip() == "memo merge: folder: is a folder; OUT is the file to write"


def test_missing_inputs_exit_2(tmp_path: Path) -> None:
    for args in (("check", "nothere.jsonl"), ("merge", "o.jsonl", "nothere.jsonl")):
        done = memo_cmd(*args, cwd=tmp_path)
        assert done.returncode == cli.FAILED
        assert "nothere.jsonl: no such file or shard folder" in _no_traceback(done)
    assert not (tmp_path / "o.jsonl").exists()


def test_an_os_error_on_a_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Any OSError a command meets (here: an output under a file) ends as one line, status 2."""
    (tmp_path / "a.jsonl").write_bytes(GOOD)
    (tmp_path / "plain").write_bytes(b"")
    done = memo_cmd("merge", "plain/out.jsonl", "a.jsonl", cwd=tmp_path)
    assert done.returncode == cli.FAILED
    err = _no_traceback(done)
    assert len(err.strip().splitlines()) == 1 and err.startswith("memo merge: ")
    assert "plain" in err


def test_a_missing_optional_package_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """An extra that is not installed (here uvicorn cannot be imported): a one-line error."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "uvicorn.py").write_text("raise ImportError('No module named uvicorn')\n")
    child_env = env(PYTHONPATH=os.pathsep.join([str(hidden), str(ROOT)]))
    done = subprocess.run([sys.executable, "-m", "memo", "serve", str(tmp_path / "r.jsonl"),
                           "--port", "0"], cwd=tmp_path, env=child_env, capture_output=True,
                          timeout=60)
    assert done.returncode == cli.FAILED
    err = done.stderr.decode()
    assert "Traceback" not in err and err.startswith("memo serve: ")


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    big = b"".join(b'{"x": %d}\n' % i if i % 2 else b"nope\n" for i in range(200_000))
    (tmp_path / "big.jsonl").write_bytes(big)
    pipeline = (f'"{sys.executable}" -m memo check -q big.jsonl | head -n 1; '
                'echo "status=${PIPESTATUS[0]}" >&2')
    done = subprocess.run(["bash", "-c", pipeline], cwd=tmp_path, env=env(), capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.startswith("big.jsonl:1: corrupt line")
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert f"status={cli.BROKEN_PIPE}" in done.stderr


def _docs_hooks() -> ModuleType:
    """docs/hooks.py, what mkdocs runs to render docs/cli.md."""
    spec = importlib.util.spec_from_file_location("memo_docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("command", ["demo", "check", "merge", "serve", "resend"])
def test_every_subcommand_is_in_the_cli_reference(command: str) -> None:
    page = _docs_hooks().render_cli()
    assert f"## `memo {command}`" in page
    assert f"usage: memo {command}" in page
    assert "--version" in page


def test_a_new_subcommand_appears_in_the_cli_reference(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A module added to memo.cli's list shows up on the page without editing the page."""
    (tmp_path / "memo_hello_cmd.py").write_text(
        "def register(subparsers):\n"
        "    p = subparsers.add_parser('hello', help='say hello',\n"
        "                              description='Print a greeting.')\n"
        "    p.add_argument('--name', default='world', help='whom to greet')\n"
        "    p.set_defaults(handler=lambda a: print('hello', a.name) or 0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "_COMMANDS", (*cli._COMMANDS, "memo_hello_cmd"))
    page = _docs_hooks().render_cli()
    assert "## `memo hello`" in page and "whom to greet" in page
    assert page.index("## `memo resend`") < page.index("## `memo hello`")


def test_serve_on_a_taken_port_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = memo_cmd("serve", "r.jsonl", "--port", str(port), cwd=tmp_path)
    assert done.returncode == cli.FAILED
    err = _no_traceback(done)
    assert err.startswith("memo serve: ") and len(err.strip().splitlines()) == 1
