"""Issue 19, item 2: every process a stage starts dies with the stage, and writes nothing once the stage has ended.

The faults are injected as a user would: SIGTERM / SIGKILL to the process that started ``python -m nbrun`` (what
DVC is to a stage) and SIGKILL to the preload server, while a tiny notebook waits (no training).  Each time the
notebook's process must go away, the output keep its previous content and no temporary stay behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from processes import gone as _gone
from processes import wait_for as _wait_for

from nbrun import SOCKET_ENV

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and PR_SET_PDEATHSIG")

COMMITTED = "the committed result"


def _notebook(path: Path, *sources: str) -> Path:
    import nbformat

    cells = [nbformat.v4.new_code_cell("flag = ''", metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(textwrap.dedent(s)) for s in sources]
    metadata = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=metadata), path)
    return path


# The notebook announces itself (its pid in `flag`), then waits for a file that never comes (the test ends it).
WAITER = """
import os, time
open(flag + '.tmp', 'w').write(str(os.getpid())); os.replace(flag + '.tmp', flag)
while not os.path.exists(flag + '.release'):
    time.sleep(0.05)
"""
# ... the same, but deaf to SIGTERM and killing the process that started it: only the final check can stop it.
ORPHAN = """
import os, signal, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
open(flag + '.tmp', 'w').write(str(os.getpid())); os.replace(flag + '.tmp', flag)
while not os.path.exists(flag + '.release'):
    time.sleep(0.05)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != SOCKET_ENV}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _launcher(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen:
    """A stand-in for DVC: a Python process that runs ``python -m nbrun in.ipynb out.ipynb`` and waits for it."""
    command = [sys.executable, "-m", "nbrun", "in.ipynb", "out.ipynb", "-p", "flag", str(tmp_path / "flag")]
    code = (f"import subprocess, sys; sys.exit(subprocess.run({command!r}, stderr=open('nbrun.err', 'w'))"
            ".returncode)")
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env)


def _started(tmp_path: Path) -> int:
    flag = tmp_path / "flag"
    return int(_wait_for(lambda: flag.exists() and flag.read_text(), "the notebook to start"))


def _assert_nothing_written(tmp_path: Path) -> None:
    assert (tmp_path / "out.ipynb").read_text() == COMMITTED
    assert not list(tmp_path.glob(".*.tmp*")), "a temporary was left behind"


@pytest.fixture()
def committed(tmp_path):
    (tmp_path / "out.ipynb").write_text(COMMITTED)
    return tmp_path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_killing_the_launcher_stops_a_local_run(committed, sig):
    tmp_path = committed
    _notebook(tmp_path / "in.ipynb", WAITER)
    launcher = _launcher(tmp_path, _env())
    notebook = _started(tmp_path)  # the nbrun process itself (no server)
    launcher.send_signal(sig)
    launcher.wait(timeout=30)
    _wait_for(lambda: _gone(notebook), "the orphaned nbrun process to stop")
    _assert_nothing_written(tmp_path)
    # the parent-death signal is SIGTERM whatever killed the launcher; one line says what happened
    message = "nbrun: in.ipynb interrupted by signal 15; out.ipynb is left as it was"
    assert message in (tmp_path / "nbrun.err").read_text()


def test_an_orphaned_run_that_ignores_signals_does_not_write(committed):
    """SIGTERM blocked and the launcher killed from inside: the run ends, but its output is not replaced."""
    tmp_path = committed
    _notebook(tmp_path / "in.ipynb", ORPHAN, "import os; os.kill(os.getppid(), 9)")
    launcher = _launcher(tmp_path, _env())
    notebook = _started(tmp_path)
    (tmp_path / "flag.release").touch()
    launcher.wait(timeout=30)
    _wait_for(lambda: _gone(notebook), "the orphaned nbrun process to end")
    _assert_nothing_written(tmp_path)
    assert "has ended, so its stage has too; out.ipynb is left as it was" in (tmp_path / "nbrun.err").read_text()


class _Server:
    def __init__(self, directory: Path) -> None:
        self.socket = directory / "s.sock"
        command = [sys.executable, "-m", "nbrun", "serve", "--socket", str(self.socket), "--preload", "papermill"]
        self.proc = subprocess.Popen(command, env=_env(), stderr=subprocess.DEVNULL)
        _wait_for(lambda: self.socket.exists() or self.proc.poll() is not None, "the server socket")
        assert self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture()
def server(tmp_path):
    srv = _Server(tmp_path / "server")
    try:
        yield srv
    finally:
        srv.stop()


def test_killing_the_server_stops_its_child(committed, server):
    tmp_path = committed
    _notebook(tmp_path / "in.ipynb", WAITER)
    env = _env(**{SOCKET_ENV: str(server.socket)})
    client = subprocess.Popen([sys.executable, "-m", "nbrun", "in.ipynb", "out.ipynb", "-p", "flag",
                               str(tmp_path / "flag")], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    child = _started(tmp_path)
    assert child not in (client.pid, server.proc.pid)  # a forked child of the server runs it
    server.proc.kill()
    _wait_for(lambda: _gone(child), "the server's child to stop")
    _stdout, stderr = client.communicate(timeout=30)
    assert client.returncode != 0 and "lost the server" in stderr
    _assert_nothing_written(tmp_path)


def test_killing_the_launcher_of_a_client_stops_the_served_child(committed, server):
    tmp_path = committed
    _notebook(tmp_path / "in.ipynb", WAITER)
    launcher = _launcher(tmp_path, _env(**{SOCKET_ENV: str(server.socket)}))
    child = _started(tmp_path)
    launcher.kill()
    launcher.wait(timeout=30)
    _wait_for(lambda: _gone(child), "the server's child to stop")
    _assert_nothing_written(tmp_path)
    assert server.proc.poll() is None  # the server itself serves on


def test_a_served_child_whose_client_is_gone_does_not_write(committed, server):
    """The child ignores the server's SIGTERM (blocked) and goes on after its client was killed: no output."""
    tmp_path = committed
    _notebook(tmp_path / "in.ipynb", ORPHAN)
    env = _env(**{SOCKET_ENV: str(server.socket)})
    client = subprocess.Popen([sys.executable, "-m", "nbrun", "in.ipynb", "out.ipynb", "-p", "flag",
                               str(tmp_path / "flag")], cwd=tmp_path, env=env)
    child = _started(tmp_path)
    client.kill()
    client.wait(timeout=30)
    (tmp_path / "flag.release").touch()
    _wait_for(lambda: _gone(child), "the server's child to end")
    _assert_nothing_written(tmp_path)
