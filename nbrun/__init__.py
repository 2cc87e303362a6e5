"""Fast notebook stages: run papermill notebooks in-process, optionally through a pre-forking server.

Every DVC stage of the pipeline executes a papermill notebook.  On the 2-core CI machine each stage paid ~15 s of
fixed overhead before its first line of real work: ``import papermill`` (~4 s), starting a Jupyter kernel
(~1.5 s) and ``import torch, open_clip, timm, ...`` inside that kernel (~9 s).  This module removes it in two steps:

1. :class:`InProcessEngine` (papermill engine ``"inprocess"``) runs the cells in the current Python process, in
   one fresh ``__main__`` namespace, capturing ``stdout``/``stderr`` and trailing expressions as notebook outputs.
   No kernel is started.
2. ``python -m nbrun serve --socket PATH`` imports the heavy modules once, then forks one child per
   request; ``python -m nbrun IN.ipynb OUT.ipynb -p NAME VALUE ...`` is a tiny client (argparse, json,
   socket) when ``NBRUN_SOCKET`` (or ``--socket``) names a live server, and runs the notebook itself
   otherwise.  The child gets the client's argv, working directory, environment and stdout/stderr descriptors
   (``SCM_RIGHTS``), so the stage behaves as if it had run in the client.

Differences from the Jupyter kernel (documented, deliberate): no IPython (no magics, no top-level ``await``),
``display()`` prints like ``print`` and trailing expressions give ``text/plain`` only (no HTML / images / inline
figures; matplotlib uses ``Agg``), and only writes through ``sys.stdout``/``sys.stderr`` are captured (output a C
extension or a subprocess writes straight to file descriptors 1/2 reaches the terminal, not the notebook).

The papermill engine class needs ``papermill`` (a 4 s import), so it is built on first use -- on
``nbrun.InProcessEngine``, :func:`engine_class` or :func:`execute` -- and registered as ``"inprocess"``
then; importing this module and the client path stay light.
"""

from __future__ import annotations
import __future__

import argparse
import ast
import contextlib
import functools
import io
import json
import linecache
import logging
import operator
import os
import platform
import re
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from nbformat import NotebookNode
    from papermill.engines import NotebookExecutionManager

# InProcessEngine is exported too, built lazily by the module __getattr__ (F822 would flag it in __all__)
__all__ = ["DEFAULT_PRELOAD", "ENGINE_NAME", "SOCKET_ENV", "engine_class", "execute", "main", "serve"]

ENGINE_NAME = "inprocess"
SOCKET_ENV = "NBRUN_SOCKET"
DEFAULT_PRELOAD = (
    "torch",
    "open_clip",
    "timm",
    "papermill",
    "mambapro.pipeline",
    "mambapro.engine",
    "mambapro.model",
    "mambapro.figures",
)
REQUEST_TIMEOUT_S = 5.0  # a connected client must deliver its request within this
POLL_S = 0.2  # server loop tick (reaping children, checking the stop flag)
KILL_GRACE_S = 5.0  # SIGTERM -> SIGKILL delay for children at server shutdown

log = logging.getLogger(__name__)

_FUTURE_FLAGS = functools.reduce(
    operator.or_, (getattr(__future__, name).compiler_flag for name in __future__.all_feature_names)
)  # `from __future__ import ...` in one cell applies to the later cells too, as in IPython
_CARRIAGE_RETURN = re.compile(r"[^\n]*\r(?=[^\n])")  # text a later '\r' on the same line overwrites (tqdm)
_ENGINE: type | None = None


# ----------------------------------------------------------------------------------------------------------------
# In-process execution
# ----------------------------------------------------------------------------------------------------------------


def _node(data: dict) -> NotebookNode:
    from nbformat import from_dict

    return from_dict(data)


class _Capture(io.TextIOBase):
    """Text stream that appends writes to the current cell's outputs as ``stream`` outputs named ``name``.

    Outside a cell (``outputs is None``) writes pass through to ``real``.  With ``echo`` they also go to ``real``
    as they come; ``extra`` (papermill's ``stdout_file``/``stderr_file``) gets a copy too.
    """

    def __init__(
        self, name: str, real: TextIO, echo: bool, extra: TextIO | None, on_write: Callable[[], Any]
    ) -> None:
        super().__init__()
        self.name = name
        self.outputs: list | None = None
        self._real, self._echo, self._extra, self._on_write = real, echo, extra, on_write
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._real, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._real, "errors", None)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._real.fileno()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        with self._lock:
            outputs = self.outputs
            if outputs is not None:
                if outputs and outputs[-1].get("output_type") == "stream" and outputs[-1].get("name") == self.name:
                    outputs[-1]["text"] += text
                else:
                    outputs.append(_node({"output_type": "stream", "name": self.name, "text": text}))
        if outputs is None or self._echo:
            self._real.write(text)
            self._real.flush()
        if outputs is not None and self._extra is not None:
            self._extra.write(text)
            self._extra.flush()
        if outputs is not None and threading.current_thread() is threading.main_thread():
            self._on_write()
        return len(text)

    def flush(self) -> None:
        self._real.flush()


class _Shell:
    """One notebook's interpreter state: the namespace, the ``__future__`` flags seen so far, the execution count."""

    def __init__(self, namespace: dict) -> None:
        self.namespace = namespace
        self.flags = 0
        self.count = 0

    def run(self, source: str) -> Any:
        """Execute ``source``; return the value of a trailing expression statement (IPython-style), else None."""
        filename = f"<cell In[{self.count}]>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        tree = ast.parse(source, filename)
        last = _pop_trailing_expression(tree, source)
        code = compile(tree, filename, "exec", self.flags, dont_inherit=True)
        self.flags |= code.co_flags & _FUTURE_FLAGS
        exec(code, self.namespace)
        if last is None:
            return None
        return eval(compile(last, filename, "eval", self.flags, dont_inherit=True), self.namespace)


def _pop_trailing_expression(tree: ast.Module, source: str) -> ast.Expression | None:
    """Remove and return the cell's last statement if it is a bare expression not silenced by a trailing ';'."""
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return None
    node = tree.body[-1]
    line = source.encode().split(b"\n")[node.end_lineno - 1]  # ast offsets are UTF-8 byte offsets
    if line[node.end_col_offset :].lstrip().startswith(b";"):
        return None
    tree.body.pop()
    return ast.Expression(node.value)


def _error_output(exc: BaseException) -> NotebookNode:
    """An nbformat ``error`` output; the traceback starts at the notebook's own frames."""
    if isinstance(exc, SyntaxError):
        lines = traceback.format_exception_only(type(exc), exc)
    else:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        lines = traceback.format_exception(type(exc), exc, tb)
    return _node(
        {
            "output_type": "error",
            "ename": type(exc).__name__,
            "evalue": str(exc),
            "traceback": "".join(lines).rstrip("\n").split("\n"),
        }
    )


def _coalesce_streams(outputs: list) -> None:
    """Drop text overwritten by carriage returns (progress bars), like nbconvert's ``coalesce_streams``."""
    for output in outputs:
        if output.get("output_type") == "stream" and "\r" in output["text"]:
            output["text"] = _CARRIAGE_RETURN.sub("", output["text"])


@contextlib.contextmanager
def _sandbox(argv0: str, stdout: _Capture, stderr: _Capture) -> Iterator[dict]:
    """Swap in the capturing streams, ``sys.argv``, a fresh ``__main__`` module and ``MPLBACKEND=Agg``; yield the
    module's namespace; restore everything (and the working directory) afterwards, also on errors."""
    saved_out, saved_err, saved_argv = sys.stdout, sys.stderr, sys.argv
    saved_main, cwd = sys.modules.get("__main__"), os.getcwd()
    set_backend = "MPLBACKEND" not in os.environ
    main_module = types.ModuleType("__main__")  # namespace {"__name__": "__main__", ...}; pickling finds it
    try:
        if set_backend:
            os.environ["MPLBACKEND"] = "Agg"
        sys.stdout, sys.stderr, sys.argv = stdout, stderr, [argv0]
        sys.modules["__main__"] = main_module
        yield main_module.__dict__
    finally:
        sys.stdout, sys.stderr, sys.argv = saved_out, saved_err, saved_argv
        if saved_main is None:
            sys.modules.pop("__main__", None)
        else:
            sys.modules["__main__"] = saved_main
        with contextlib.suppress(OSError):
            os.chdir(cwd)
        if set_backend:
            os.environ.pop("MPLBACKEND", None)


def _run_code_cell(cell: NotebookNode, shell: _Shell, captures: Sequence[_Capture]) -> BaseException | None:
    """Execute one code cell into its outputs; return the exception it raised (Exception or SystemExit), if any."""
    shell.count += 1
    cell.execution_count = shell.count
    for capture in captures:
        capture.outputs = cell.outputs
    try:
        value = shell.run(cell.source)
        if value is not None:
            cell.outputs.append(
                _node(
                    {
                        "output_type": "execute_result",
                        "execution_count": shell.count,
                        "data": {"text/plain": repr(value)},
                        "metadata": {},
                    }
                )
            )
    except (Exception, SystemExit) as exc:
        cell.outputs.append(_error_output(exc))
        return exc
    finally:
        for capture in captures:
            capture.outputs = None
        _coalesce_streams(cell.outputs)
    return None


def _execute_cells(
    nb_man: NotebookExecutionManager,
    argv0: str,
    log_output: bool,
    stdout_file: TextIO | None,
    stderr_file: TextIO | None,
) -> None:
    """The engine's loop, shaped like papermill's ``PapermillNotebookClient.papermill_execute_cells``: every cell
    gets ``cell_start``/``cell_complete``; the first failing cell gets ``cell_exception`` and stops the run."""
    out = _Capture("stdout", sys.stdout, log_output, stdout_file, nb_man.autosave_cell)
    err = _Capture("stderr", sys.stderr, log_output, stderr_file, nb_man.autosave_cell)
    with _sandbox(argv0, out, err) as namespace:
        shell = _Shell(namespace)
        for index, cell in enumerate(nb_man.nb.cells):
            error = None
            try:
                nb_man.cell_start(cell, cell_index=index)
                if cell.get("cell_type") == "code" and cell.source.strip():
                    error = _run_code_cell(cell, shell, (out, err))
                if error is not None:
                    nb_man.cell_exception(cell, cell_index=index, exception=error)
            finally:
                nb_man.cell_complete(cell, cell_index=index)
            if error is not None:
                break


def _define_engine() -> type:
    from papermill.engines import Engine

    class InProcessEngine(Engine):
        """Papermill engine that runs the notebook's code cells in this process (no Jupyter kernel).

        A failing cell gets an ``error`` output and stops the run; like papermill's kernel engine it does not raise
        itself: ``papermill.execute_notebook`` then marks the error in the output notebook, writes it and raises
        ``PapermillExecutionError``.  ``SystemExit(0)`` stops the notebook without an error, as in Jupyter.
        """

        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: NotebookExecutionManager,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: TextIO | None = None,
            stderr_file: TextIO | None = None,
            **kwargs: Any,
        ) -> NotebookNode:
            """Run the cells of ``nb_man.nb`` in order in one fresh namespace; ``kernel_name`` is ignored."""
            nb = nb_man.nb
            if kwargs.get("final_output_path"):  # see execute(): papermill only knows the temporary name
                nb.metadata.papermill["output_path"] = kwargs["final_output_path"]
            nb.metadata["language_info"] = {
                "name": "python",
                "version": platform.python_version(),
                "mimetype": "text/x-python",
                "file_extension": ".py",
            }
            _execute_cells(nb_man, str(kwargs.get("input_path") or ""), log_output, stdout_file, stderr_file)
            return nb

    InProcessEngine.__module__ = __name__
    return InProcessEngine


def engine_class() -> type:
    """The :class:`InProcessEngine` class, built (importing papermill) and registered as ``"inprocess"`` once."""
    global _ENGINE
    if _ENGINE is None:
        from papermill.engines import papermill_engines

        _ENGINE = _define_engine()
        papermill_engines.register(ENGINE_NAME, _ENGINE)
    return _ENGINE


def __getattr__(name: str) -> Any:
    if name == "InProcessEngine":
        return engine_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _temporary_path(output: str) -> str:
    folder, name = os.path.split(output)
    return os.path.join(folder, f".{name}.{os.getpid()}.tmp.ipynb")


def execute(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    parameters: dict | None = None,
    log_output: bool = True,
    cwd: str | os.PathLike | None = None,
    jupyter: bool = False,
) -> NotebookNode:
    """Execute a notebook with papermill's ``inprocess`` engine; return the executed notebook.

    Papermill saves the output progressively, to a hidden temporary file beside ``output_path``; only a notebook
    that ran to the end replaces ``output_path`` (``os.replace``).  A failing cell, an exception or an interrupt
    (SIGINT, SIGTERM) removes the temporary file and leaves ``output_path`` as it was -- a committed result is never
    overwritten by a failed run; the failure is reported on stderr.  ``jupyter``: run the cells in a Jupyter kernel
    (papermill's own engine) for rich outputs (images, Markdown) instead of in-process.  Raises papermill's
    ``PapermillExecutionError`` when a cell failed.
    """
    import papermill
    from papermill.parameterize import add_builtin_parameters, parameterize_path

    engine_class()
    parameters = dict(parameters or {})
    output = parameterize_path(str(output_path), add_builtin_parameters(parameters))
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    temporary = _temporary_path(output)
    try:
        with _sigterm_as_interrupt():
            notebook = papermill.execute_notebook(
                str(input_path),
                temporary,
                parameters=parameters,
                engine_name=None if jupyter else ENGINE_NAME,
                kernel_name="python3",
                progress_bar=False,
                log_output=log_output,
                cwd=None if cwd is None else str(cwd),
                final_output_path=output,
            )
        os.replace(temporary, output)
        return notebook
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (what DVC and schedulers send) raises KeyboardInterrupt, so clean-up code runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------------------------------------------
# Pre-forking server
# ----------------------------------------------------------------------------------------------------------------


def _preload(modules: Sequence[str]) -> list[str]:
    """Import ``modules``; log and skip those that fail.  Returns the imported names."""
    loaded = []
    for name in modules:
        start = time.perf_counter()
        try:
            __import__(name)
        except Exception as exc:  # a missing optional module must not stop the server
            log.warning("preload: cannot import %s (%s: %s); skipped", name, type(exc).__name__, exc)
            continue
        loaded.append(name)
        log.debug("preload: %s in %.2f s", name, time.perf_counter() - start)
    if "papermill" in sys.modules:
        _warm_up()
    return loaded


def _warm_up() -> None:
    """Build the engine and nbformat's schema validator (~0.1 s) once in the server rather than in every child."""
    import nbformat

    engine_class()
    nbformat.validate(nbformat.v4.new_notebook())


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal N -> 128 + N, as shells report it


def _kill_group(pid: int, sig: int) -> None:
    """Signal the child's process group (the child and e.g. its DataLoader workers), or the child alone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _send_json(sock: socket.socket, message: dict) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(json.dumps(message).encode() + b"\n")


def _read_line(sock: socket.socket, first: bytes = b"") -> bytes:
    """Read until a newline (the protocol's message terminator); raise ``ConnectionError`` on EOF before it."""
    buffer = bytearray(first)
    while not buffer.endswith(b"\n"):
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("connection closed in the middle of a message")
        buffer += chunk
    return bytes(buffer)


def _receive_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """One request: a JSON line (argv, cwd, env, prefix) whose first bytes carry the client's stdout/stderr fds."""
    data, fds, _flags, _address = socket.recv_fds(conn, 1 << 16, 2)
    try:
        if not data:
            raise ConnectionError("client closed the connection without a request")
        request = json.loads(_read_line(conn, data))
        if len(fds) != 2:
            raise ValueError(f"expected 2 file descriptors, got {len(fds)}")
        if not isinstance(request.get("argv"), list) or not isinstance(request.get("env"), dict):
            raise ValueError("malformed request")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


class _Server:
    """Single-threaded accept / fork / reap loop (no threads: forking a threaded process is unsafe)."""

    def __init__(self, socket_path: str) -> None:
        self.path = socket_path
        self.listener = _bind(socket_path)
        self.inode = os.stat(socket_path).st_ino
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.children: dict[int, socket.socket | None] = {}  # pid -> client connection (None once it hung up)
        self.stopping = False

    def run(self, preloaded: Sequence[str] = ()) -> None:
        """Serve until SIGTERM/SIGINT, then kill the running children and remove the socket file."""
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            log.info(
                "ready: listening on %s (pid %d; preloaded: %s)", self.path, os.getpid(), ", ".join(preloaded) or "-"
            )
            while not self.stopping:
                for key, _events in self.selector.select(POLL_S):
                    if key.fileobj is self.listener:
                        self._accept()
                    else:
                        self._client_readable(key.fileobj)
                self._reap()
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _request_stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def _accept(self) -> None:
        try:
            conn, _address = self.listener.accept()
        except OSError as exc:
            log.warning("accept failed: %s", exc)
            return
        conn.settimeout(REQUEST_TIMEOUT_S)
        try:
            request, fds = _receive_request(conn)
        except (OSError, ValueError) as exc:
            log.warning("rejected a request: %s", exc)
            conn.close()
            return
        try:
            if request.get("prefix") not in (None, sys.prefix):
                _send_json(conn, {"error": f"server runs in {sys.prefix}, client in {request['prefix']}"})
                conn.close()
                return
            pid = self._fork(conn, request, fds)
        finally:
            for fd in fds:
                os.close(fd)
        log.debug("pid %d: %s", pid, " ".join(request["argv"]))
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def _fork(self, conn: socket.socket, request: dict, fds: list[int]) -> int:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:  # child: never returns
            code = 1
            try:
                self._close_inherited(conn)
                code = _child_main(request, fds)
            except BaseException:  # report anything, then leave through os._exit
                with contextlib.suppress(Exception):
                    traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                os._exit(code)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done by the child; whichever runs first wins the race
        return pid

    def _close_inherited(self, conn: socket.socket) -> None:
        """In a fresh child: default signal handlers, own process group, no server sockets."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        self.selector.close()
        self.listener.close()
        for other in self.children.values():
            if other is not None:
                other.close()
        conn.close()

    def _client_readable(self, conn: socket.socket) -> None:
        """A client connection is readable: EOF means the client is gone (killed, Ctrl-C), so stop its child."""
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if data:
            return  # the protocol has nothing more to say; ignore
        pid = self.selector.get_key(conn).data
        log.debug("pid %d: client hung up; terminating", pid)
        _kill_group(pid, signal.SIGTERM)
        self._drop(pid)

    def _drop(self, pid: int) -> None:
        conn = self.children.get(pid)
        if conn is not None:
            self.selector.unregister(conn)
            conn.close()
            self.children[pid] = None

    def _reap(self) -> None:
        """Collect finished children; tell each one's client its exit code."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # our children are all gone (should not happen): forget them
                for pid in list(self.children):
                    self._drop(pid)
                self.children.clear()
                return
            if pid == 0:
                return
            code = _exit_code(status)
            conn = self.children.get(pid)
            log.debug("pid %d: exit %d", pid, code)
            if conn is not None:
                _send_json(conn, {"exit": code})
                self._drop(pid)
            self.children.pop(pid, None)

    def _shutdown(self) -> None:
        for pid in list(self.children):
            _kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_S
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in list(self.children):
            _kill_group(pid, signal.SIGKILL)
        while self.children:
            self._reap()
            time.sleep(0.01)
        self.selector.close()
        self.listener.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.inode:  # do not remove a newer server's socket
                os.unlink(self.path)
        log.debug("stopped")


def _bind(path: str) -> socket.socket:
    """Listen on a Unix socket at ``path`` (mode 0600).  A stale file is replaced; a live server is an error.

    The socket is bound under a temporary name and renamed once listening, so a client never sees a socket file
    that refuses connections."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if os.path.exists(path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)
            else:
                raise RuntimeError(f"a server is already listening on {path}")
    temporary = f"{path}.{os.getpid()}.tmp"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        listener.bind(temporary)
        os.chmod(temporary, 0o600)
        listener.listen(64)
        os.replace(temporary, path)
    except BaseException:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return listener


def _redirect_stdio(fds: list[int]) -> None:
    """Make the client's stdout/stderr our fds 1/2 (and ``sys.stdout``/``sys.stderr``); stdin from /dev/null."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in fds:
        os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = sys.__stdin__ = open(0, closefd=False)
    sys.stdout = sys.__stdout__ = _line_buffered(1)
    sys.stderr = sys.__stderr__ = _line_buffered(2)


def _line_buffered(fd: int) -> TextIO:
    return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)


def _child_main(request: dict, fds: list[int]) -> int:
    """Body of a forked child: adopt the client's stdio, cwd and environment, then run the CLI locally."""
    _redirect_stdio(fds)
    for handler in logging.root.handlers[:]:  # the server's handlers: _execute_command configures its own
        logging.root.removeHandler(handler)
    os.chdir(request.get("cwd") or "/")
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in request["env"].items()})
    if "mambapro.environment" in sys.modules:  # preloaded: its CPU-math pins were set in the server's environment,
        sys.modules["mambapro.environment"].pin_cpu_math()  # which the client's just replaced (none ran a kernel yet)
    if "numpy.random" in sys.modules:
        sys.modules["numpy.random"].seed()  # fresh entropy per child, as in a new process (`random` reseeds itself)
    if "torch" in sys.modules:
        try:
            threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
        except ValueError:
            threads = 1
        sys.modules["torch"].set_num_threads(max(threads, 1))
    try:
        return _execute_command([str(a) for a in request["argv"]])
    except SystemExit as exc:
        return _system_exit_code(exc)


def _system_exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def serve(socket_path: str | os.PathLike, preload: Sequence[str] = DEFAULT_PRELOAD) -> None:
    """Import ``preload`` (skipping failures), then serve notebook requests on the Unix socket ``socket_path`` until
    SIGTERM/SIGINT.  Each request runs in a forked child; the server process itself only imports (no torch work),
    so children start with an untouched OpenMP runtime.  Thread counts of OpenMP/BLAS are fixed when they load:
    start the server with the ``OMP_NUM_THREADS`` the stages should use (children call ``torch.set_num_threads``
    from their own environment)."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # matplotlib reads it at import, i.e. possibly during preload
    loaded = _preload(preload)
    _Server(os.fspath(socket_path)).run(loaded)


# ----------------------------------------------------------------------------------------------------------------
# Client and command line
# ----------------------------------------------------------------------------------------------------------------


def _delegate(socket_path: str, argv: list[str]) -> int | None:
    """Run ``argv`` through the server at ``socket_path``; return its exit code, or None if it cannot serve us."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError as exc:
        sock.close()
        print(f"nbrun: no server at {socket_path} ({exc.strerror}); running without it", file=sys.stderr)
        return None
    with sock:
        request = {"argv": ["--local", *argv], "cwd": os.getcwd(), "env": dict(os.environ), "prefix": sys.prefix}
        data = json.dumps(request).encode() + b"\n"
        try:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            sent = socket.send_fds(sock, [data], [1, 2])
            sock.sendall(data[sent:])
            reply = json.loads(_read_line(sock))
        except KeyboardInterrupt:
            return 130  # closing the socket makes the server terminate the child
        except (OSError, ValueError) as exc:
            print(f"nbrun: lost the server at {socket_path}: {exc}", file=sys.stderr)
            return 1
    if "error" in reply:
        print(f"nbrun: server refused ({reply['error']}); running without it", file=sys.stderr)
        return None
    return int(reply["exit"])


def _resolve_value(value: str) -> Any:
    """Papermill's own ``-p`` typing (True/False/None, int, float, else the string; papermill 2.7 is pinned)."""
    from papermill.cli import _resolve_type

    return _resolve_type(value)


def _parameters(args: argparse.Namespace) -> dict:
    """Merge parameters in papermill's order: ``-f`` files, ``-y`` YAML, ``-p`` typed values, ``-r`` raw strings."""
    parameters: dict = {}
    if args.parameters_file or args.parameters_yaml:
        import yaml

        for path in args.parameters_file:
            parameters.update(yaml.safe_load(Path(path).read_text()) or {})
        for text in args.parameters_yaml:
            parameters.update(yaml.safe_load(text) or {})
    parameters.update({name: _resolve_value(value) for name, value in args.parameters})
    parameters.update(dict(args.parameters_raw))
    return parameters


def _execute_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nbrun",
        description="Execute a notebook in-process (papermill engine 'inprocess'), through the preload server "
        f"named by --socket / ${SOCKET_ENV} when one is listening.  Also: 'python -m nbrun serve -h'.",
    )
    parser.add_argument("input", help="input notebook")
    parser.add_argument("output", help="output notebook (written atomically)")
    parser.add_argument("-p", "--parameters", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("-r", "--parameters_raw", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("-y", "--parameters_yaml", action="append", default=[], metavar="YAML")
    parser.add_argument("-f", "--parameters_file", action="append", default=[], metavar="FILE")
    parser.add_argument("--cwd", help="working directory of the notebook")
    parser.add_argument("--log-output", dest="log_output", action="store_true", default=True, help="(default)")
    parser.add_argument("--no-log-output", dest="log_output", action="store_false", help="do not echo cell output")
    parser.add_argument("-k", "--kernel", help="ignored (papermill compatibility)")
    parser.add_argument("--jupyter", action="store_true", help="run in a Jupyter kernel, for rich outputs")
    parser.add_argument("--progress-bar", "--no-progress-bar", dest="progress_bar", action="store_true",
                        help="ignored (papermill compatibility)")  # fmt: skip
    parser.add_argument("--socket", help=f"preload server socket (default: ${SOCKET_ENV})")
    parser.add_argument("--local", action="store_true", help="never use a server")
    return parser


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nbrun serve", description="Preload heavy modules and fork a child per notebook."
    )
    parser.add_argument("--socket", default=os.environ.get(SOCKET_ENV), help=f"socket path (default: ${SOCKET_ENV})")
    parser.add_argument(
        "--preload", default=",".join(DEFAULT_PRELOAD), help="comma-separated modules (default: %(default)s)"
    )
    return parser


def _execute_command(argv: list[str]) -> int:
    """``IN OUT [-p NAME VALUE]...``: delegate to a server if one is configured and live, else run here."""
    args = _execute_parser().parse_args(argv)
    socket_path = args.socket or os.environ.get(SOCKET_ENV)
    if socket_path and not args.local:
        code = _delegate(socket_path, argv)
        if code is not None:
            return code
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)  # as papermill's CLI
    parameters = _parameters(args)
    from papermill.exceptions import PapermillExecutionError

    try:
        execute(args.input, args.output, parameters, log_output=args.log_output, cwd=args.cwd, jupyter=args.jupyter)
    except PapermillExecutionError as exc:
        print(f"nbrun: {args.input} failed:{exc}", file=sys.stderr)
        return 1
    return 0


def _serve_command(argv: list[str]) -> int:
    parser = _serve_parser()
    args = parser.parse_args(argv)
    if not args.socket:
        parser.error(f"give --socket or set ${SOCKET_ENV}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s nbrun: %(message)s", stream=sys.stderr)
    serve(args.socket, [name.strip() for name in args.preload.split(",") if name.strip()])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``IN.ipynb OUT.ipynb [-p NAME VALUE]...`` or ``serve [--socket PATH] [--preload a,b]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return _serve_command(argv[1:])
    return _execute_command(argv)


if __name__ == "__main__":
    sys.exit(main())
