"""nbrun: the in-process papermill engine, the pre-forking server and its client (~15 s, no torch)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from processes import gone as _gone
from processes import wait_for

import nbrun as runner
from nbrun.cli import _resolve_value

# nbformat and papermill (a 4 s import, mostly nbformat's jsonschema) are imported by the fixture below, once the
# module's server has been started, so that both imports run at the same time.

PARAMETERS = "a = 1\nname = 'x'"
GREETING = (
    "import sys\nprint('hello', a, name)\nprint('careful', file=sys.stderr)\n"
    "sys.stderr.write('10%\\r100%\\n');"  # a progress bar; ';' silences write()'s return value
)
SLEEPER = "import time\ntime.sleep(60)"


def _notebook(path: Path, *sources: str) -> Path:
    """A notebook: a ``parameters`` cell, then one cell per source (``md:...`` gives a markdown cell)."""
    import nbformat

    cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})]
    for source in sources:
        new = nbformat.v4.new_markdown_cell if source.startswith("md:") else nbformat.v4.new_code_cell
        cells.append(new(source.removeprefix("md:")))
    metadata = {
        "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"},
        "language_info": {"name": "python"},
    }
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=metadata), path)
    return path


def _read(path: Path):
    import nbformat

    return nbformat.read(path, 4)


def _content(nb) -> list[tuple]:
    """What must not depend on where a notebook ran: cell types, sources, execution counts, outputs."""
    return [(c.cell_type, c.source, c.get("execution_count"), c.get("outputs")) for c in nb.cells]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != runner.SOCKET_ENV}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _client(*args: str, cwd: Path, env: dict[str, str], python_flags: tuple[str, ...] = ()) -> subprocess.Popen:
    command = [sys.executable, *python_flags, "-m", "nbrun", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if not path.exists():
        pytest.skip("needs /proc/PID/task/PID/children")
    return [int(child) for child in path.read_text().split()]


class Server:
    """``python -m nbrun serve`` in a subprocess, with a short preload."""

    def __init__(self, directory: Path, preload: str, **env: str) -> None:
        self.socket = directory / "run" / "s.sock"
        self.log = directory / "server.log"
        command = [sys.executable, "-m", "nbrun", "serve", "--socket", str(self.socket)]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([*command, "--preload", preload], env=_env(**env), stdout=log, stderr=log)

    def ready(self) -> Server:
        wait_for(lambda: self.socket.exists() or self.proc.poll() is not None, what="the server socket")
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def env(self, **extra: str) -> dict[str, str]:
        return _env(**{runner.SOCKET_ENV: str(self.socket), **extra})

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture(scope="module", autouse=True)
def _module_server(request, tmp_path_factory):
    """Start the module's server (papermill preloaded, so children start fast) if a selected test uses it, then
    import papermill here meanwhile.  At the end: stop the server and check it removed its socket."""
    items = [item for item in request.session.items if getattr(item, "module", None) is request.module]
    wanted = any("server" in item.fixturenames for item in items)
    srv = Server(tmp_path_factory.mktemp("server"), preload="json,papermill") if wanted else None
    try:
        pytest.importorskip("papermill")
        yield srv
    finally:
        if srv is not None:
            assert srv.stop() == 0, srv.log.read_text()
            assert not srv.socket.exists()


@pytest.fixture
def server(_module_server) -> Server:
    return _module_server.ready()


# ---------------------------------------------------------------------------------------------------------------
# In-process engine
# ---------------------------------------------------------------------------------------------------------------


def test_execute_in_process(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)
    source = _notebook(
        tmp_path / "in.ipynb",
        GREETING,
        "md:# notes",
        "a * 10",
        "",
        "a;  # silenced",
        "def f():\n    return __name__\nimport pickle\npickle.loads(pickle.dumps(f))()",
        "import os\nos.environ['MPLBACKEND']",
    )
    saved = sys.stdout, sys.stderr, sys.argv, sys.modules["__main__"], os.getcwd()
    output = tmp_path / "out.ipynb"

    nb = runner.execute(source, output, {"a": 3, "name": "y"})

    assert (sys.stdout, sys.stderr, sys.argv, sys.modules["__main__"], os.getcwd()) == saved
    from papermill.engines import Engine, papermill_engines

    assert papermill_engines.get_engine("inprocess") is runner.InProcessEngine
    assert issubclass(runner.InProcessEngine, Engine)
    assert "MPLBACKEND" not in os.environ
    assert capsys.readouterr().out == "hello 3 y\n"  # log_output echoes the cells' stdout
    assert _content(_read(output)) == _content(nb)
    assert not list(tmp_path.glob(".*.tmp.ipynb"))
    assert nb.metadata.papermill.parameters == {"a": 3, "name": "y"}
    assert nb.metadata.papermill.output_path == str(output)
    assert nb.metadata.papermill.exception is None
    cells = nb.cells
    assert cells[1].metadata.tags == ["injected-parameters"] and "a = 3" in cells[1].source
    assert cells[2].outputs == [
        {"output_type": "stream", "name": "stdout", "text": "hello 3 y\n"},
        {"output_type": "stream", "name": "stderr", "text": "careful\n100%\n"},
    ]
    assert cells[3].cell_type == "markdown"
    assert [(o.output_type, o.execution_count, o.data) for o in cells[4].outputs] == [
        ("execute_result", 4, {"text/plain": "30"})
    ]
    assert cells[5].execution_count is None and cells[5].outputs == []  # empty cells are not executed
    assert cells[6].outputs == []
    assert cells[7].outputs[0].data == {"text/plain": "'__main__'"}
    assert cells[8].outputs[0].data == {"text/plain": "'Agg'"}
    assert [c.get("execution_count") for c in cells] == [1, 2, 3, None, 4, None, 5, 6, 7]
    assert all(c.metadata.papermill.status == "completed" for c in cells)


def test_failing_cell(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = _notebook(
        tmp_path / "in.ipynb",
        f"import os\nos.chdir({str(elsewhere)!r})\nprint('before')",
        "def boom():\n    return 1 / 0\n\nboom()",
        "print('after')",
    )
    saved = sys.stdout, os.getcwd()
    output = tmp_path / "out.ipynb"
    output.write_text("the committed result")

    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as info:
        runner.execute(source, output, {}, log_output=False)

    assert (sys.stdout, os.getcwd()) == saved
    assert info.value.ename == "ZeroDivisionError" and info.value.exec_count == 3
    assert output.read_text() == "the committed result"  # a failed run never replaces the previous output
    assert not list(tmp_path.glob(".*.tmp.ipynb"))
    traceback = "\n".join(info.value.traceback)  # what the stage's log shows
    assert "boom()" in traceback and "return 1 / 0" in traceback and "nbrun" not in traceback


def test_syntax_error_and_system_exit(tmp_path):
    from papermill.exceptions import PapermillExecutionError

    source = _notebook(tmp_path / "bad.ipynb", "x = (")
    with pytest.raises(PapermillExecutionError) as info:
        runner.execute(source, tmp_path / "bad_out.ipynb", log_output=False)
    assert info.value.ename == "SyntaxError"

    source = _notebook(tmp_path / "exit.ipynb", "raise SystemExit(0)", "print('after')")
    nb = runner.execute(source, tmp_path / "exit_out.ipynb", log_output=False)  # like Jupyter: a clean stop
    assert nb.cells[-1].execution_count is None and nb.cells[-1].outputs == []


# ---------------------------------------------------------------------------------------------------------------
# Server and client
# ---------------------------------------------------------------------------------------------------------------

ROUND_TRIP = (
    GREETING,
    "import os\nprint(os.environ['RUNNER_TEST'], os.path.exists('in.ipynb'))",
    "a * 10",
    "import os\nprint('pids', os.getpid(), os.getppid())",  # last: differs between runs
)


def test_server_round_trip(server, tmp_path, monkeypatch):
    _notebook(tmp_path / "in.ipynb", *ROUND_TRIP)
    client = _client(
        "in.ipynb", "out.ipynb", "-p", "a", "5",
        cwd=tmp_path, env=server.env(RUNNER_TEST="from-client"), python_flags=("-X", "importtime"),
    )  # fmt: skip
    stdout, stderr = client.communicate(timeout=60)
    assert client.returncode == 0, stderr

    assert "hello 5 x\n" in stdout and "from-client True\n" in stdout  # the child wrote to the client's stdout
    imported = set(re.findall(r"^import time:.*\|\s+(\S+)$", stderr, re.M))
    assert "socket" in imported and not imported & {"papermill", "torch", "nbformat"}  # the client stays light
    served = _read(tmp_path / "out.ipynb")
    pid, ppid = map(int, served.cells[-1].outputs[0].text.split()[1:])
    assert pid not in (client.pid, server.proc.pid) and ppid == server.proc.pid  # a forked child ran it

    monkeypatch.setenv("RUNNER_TEST", "from-client")
    monkeypatch.chdir(tmp_path)
    local = runner.execute("in.ipynb", "local.ipynb", {"a": 5}, log_output=False)
    assert _content(served)[:-1] == _content(local)[:-1]
    assert served.metadata.papermill.output_path == "out.ipynb"


def test_served_child_keeps_the_cpu_math_pins(tmp_path):
    """A child adopts the client's environment; the pins that ``import mambapro`` set in the server (before any
    kernel ran) must survive that, or the stage runs the CPU's own code path (issue 13)."""
    from mambapro.environment import PINS

    srv = Server(tmp_path, preload="mambapro.environment").ready()
    try:
        _notebook(tmp_path / "in.ipynb", f"import os\nprint(*(os.environ.get(k) for k in {list(PINS)!r}))")
        env = {k: v for k, v in srv.env().items() if k not in PINS}  # a client that never imported mambapro
        client = _client("in.ipynb", "out.ipynb", cwd=tmp_path, env=env)
        stdout, stderr = client.communicate(timeout=60)
        assert client.returncode == 0, stderr
        assert " ".join(PINS.values()) + "\n" in stdout  # avx2 COMPATIBLE AVX2
    finally:
        assert srv.stop() == 0, srv.log.read_text()


def test_server_failing_notebook(server, tmp_path):
    _notebook(tmp_path / "in.ipynb", "print('before')", "1 / 0")
    client = _client("in.ipynb", "out.ipynb", cwd=tmp_path, env=server.env())
    _stdout, stderr = client.communicate(timeout=60)
    assert client.returncode == 1
    assert "ZeroDivisionError" in stderr
    assert not (tmp_path / "out.ipynb").exists() and not list(tmp_path.glob(".*.tmp.ipynb"))


def test_server_concurrent_clients(server, tmp_path):
    sources = ("import time\nstart = time.time()\ntime.sleep(0.8)\nprint(start, time.time())",)
    _notebook(tmp_path / "in.ipynb", *sources)
    clients = [_client("in.ipynb", f"out{i}.ipynb", cwd=tmp_path, env=server.env()) for i in range(2)]
    for client in clients:
        client.communicate(timeout=60)
        assert client.returncode == 0
    spans = [
        tuple(map(float, _read(tmp_path / f"out{i}.ipynb").cells[-1].outputs[0].text.split()))
        for i in range(2)
    ]
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # they ran at the same time


def test_killed_client_stops_its_child(server, tmp_path):
    _notebook(tmp_path / "in.ipynb", SLEEPER)
    before = set(_children(server.proc.pid))
    client = _client("in.ipynb", "out.ipynb", cwd=tmp_path, env=server.env())
    (child,) = wait_for(lambda: set(_children(server.proc.pid)) - before, what="the forked child")
    client.kill()
    client.wait(timeout=10)
    wait_for(lambda: _gone(child), timeout=10, what="the child to be terminated")


# Preloaded into a server: its children wait a second after the fork before taking their own signal handlers.
SLOW_FORK = """
import time
from nbrun import server

_close_inherited = server._Server._close_inherited
server._Server._close_inherited = lambda self, conn: (time.sleep(1.0), _close_inherited(self, conn))[1]
"""


@pytest.mark.parametrize("slow_fork", [False, True], ids=["plain", "signal-right-after-fork"])
def test_server_shutdown_kills_children_and_removes_socket(tmp_path, slow_fork):
    """A SIGTERM that reaches a child before it has its own handlers is held, not swallowed by the server's (the
    child then ran on until SIGKILL: exit 137, seen once in CI)."""
    (tmp_path / "slow_fork.py").write_text(SLOW_FORK)
    preload = "json,slow_fork" if slow_fork else "json"
    srv = Server(tmp_path, preload=preload, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    srv.ready()
    wait_for(lambda: "preloaded: " in srv.log.read_text(), what="the server's ready line")
    assert ("slow_fork" in srv.log.read_text()) == slow_fork
    try:
        _notebook(tmp_path / "in.ipynb", SLEEPER)
        client = _client("in.ipynb", "out.ipynb", cwd=tmp_path, env=srv.env())
        (child,) = wait_for(lambda: _children(srv.proc.pid), what="the forked child")
        assert srv.stop() == 0
        assert client.wait(timeout=10) == 128 + signal.SIGTERM  # the child was terminated; the client says so
        assert _gone(child) and not srv.socket.exists()
    finally:
        srv.stop()


def test_client_falls_back_to_local(tmp_path, monkeypatch, capsys):
    """The CLI entry point, in this process (a subprocess would spend 4 s importing papermill)."""
    _notebook(tmp_path / "in.ipynb", GREETING)
    monkeypatch.setenv(runner.SOCKET_ENV, str(tmp_path / "missing.sock"))
    monkeypatch.chdir(tmp_path)
    assert runner.main(["in.ipynb", "out.ipynb", "-p", "name", "local"]) == 0
    stdout, stderr = capsys.readouterr()
    assert "running without it" in stderr and "hello 1 local\n" in stdout
    assert _read(tmp_path / "out.ipynb").cells[2].outputs[0].text == "hello 1 local\n"


def test_parameter_values_like_papermill():
    values = ["3", "2.5", "True", "None", "abc", "1e3"]
    assert [_resolve_value(v) for v in values] == [3, 2.5, True, None, "abc", 1000.0]
