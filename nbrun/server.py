"""The preload server: ``python -m nbrun serve --socket PATH`` imports the heavy modules once, then forks one child
per notebook request, so that a stage does not pay ~12 s of imports (torch, open_clip, timm, papermill, ...).

The client (:mod:`nbrun.cli`) sends its argv, working directory, environment and stdout/stderr descriptors
(``SCM_RIGHTS``) over a Unix socket; the child adopts them and runs the command line locally, so the stage behaves
as if it had run in the client.  The client's exit code comes back as a JSON line.

Lifetimes (issue 19): the server dies with the process that started it, each child with the server
(:func:`nbrun.lifeline.die_with_parent`); a client that hangs up has its child terminated, and a child whose
client or server is gone does not write its output (:func:`nbrun.lifeline.ensure_owned`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from nbrun import lifeline
from nbrun.engine import engine_class

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
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

log = logging.getLogger("nbrun")


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
        previous = {sig: signal.signal(sig, self._request_stop) for sig in STOP_SIGNALS}
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
        # Stop signals are held across the fork: one that reached the fresh child before it had reset the server's
        # handlers would run ``_request_stop`` there -- swallowed -- and the child would go on until SIGKILL.  Held,
        # it stays pending and lands once the child has its own (default) handlers.
        unheld = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, unheld)
            raise
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, unheld)
        else:  # child: never returns
            code = 1
            try:
                self._close_inherited(conn)
                signal.pthread_sigmask(signal.SIG_SETMASK, unheld)
                lifeline.reset()
                lifeline.die_with_parent()  # the server: a child outlives neither it
                lifeline.register("the client of this request", lifeline.connection_open(conn))  # nor its client
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
        """In a fresh child: default signal handlers, own process group, no server sockets but its client's (kept
        open to see whether the client is still there before writing the output)."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        self.selector.close()
        self.listener.close()
        for other in self.children.values():
            if other is not None and other is not conn:
                other.close()

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
    from nbrun.cli import _execute_command

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
