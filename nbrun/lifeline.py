"""A stage's processes die with the stage, and write nothing once it has ended (issue 19, item 2).

A DVC stage (or a ``.ci/repro`` run) starts ``python -m nbrun``; that process may hand the notebook to a child of
the preload server.  Killing only the process that started the stage (``kill -TERM <dvc pid>``, or ``-KILL``) used
to leave the notebook running; a minute later it replaced the committed output of a stage DVC no longer knew about.
Two mechanisms close that:

* :func:`die_with_parent`: the kernel sends ``SIGTERM`` to this process when its parent exits (Linux
  ``prctl(PR_SET_PDEATHSIG)``; elsewhere a daemon thread polls ``os.getppid()``).  In a notebook run ``SIGTERM``
  raises ``KeyboardInterrupt`` (:func:`nbrun.engine.execute`), which removes the temporary output.
* :func:`ensure_owned`: before its final rename a run checks every registered owner (the parent it started under,
  the server, the client whose request it serves) is still there, and refuses to write otherwise -- the case where
  the signal was blocked or arrived too late.

The parent-death signal fires when the *thread* that started the process exits: a launcher must start nbrun from
a thread that outlives it (DVC, ``bash`` and ``subprocess.run`` from any thread that waits all do).  To run a stage
detached, detach its launcher (``nohup dvc repro ... &``), not ``python -m nbrun`` behind a launcher that exits.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_S = 0.5  # polling period of the watchdog thread (platforms without PR_SET_PDEATHSIG)

_owners: list[tuple[str, Callable[[], bool]]] = []  # (what, is it still there?)


class OrphanedError(RuntimeError):
    """The stage that started this run has ended: its output must not be written."""


def die_with_parent(sig: int = signal.SIGTERM) -> int:
    """Have ``sig`` sent to this process when its parent exits; register the parent as an owner.

    Returns the parent's pid.  If the parent is already gone (it exited before the request took effect: this
    process was re-parented), ``sig`` is sent at once."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watch_parent, args=(parent, sig), name="nbrun-lifeline", daemon=True).start()
    register(f"the process that started this run (pid {parent})", lambda: os.getppid() == parent)
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return parent


def _watch_parent(parent: int, sig: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_S)
    os.kill(os.getpid(), sig)


def register(what: str, alive: Callable[[], bool]) -> None:
    """Add an owner: ``alive()`` must stay true for this process's outputs to be written."""
    _owners.append((what, alive))


def reset() -> None:
    """Forget the registered owners (a forked child starts its own list)."""
    _owners.clear()


def lost_owner() -> str | None:
    """The first registered owner that is gone, or None."""
    for what, alive in _owners:
        try:
            if not alive():
                return what
        except OSError:
            return what
    return None


def ensure_owned(output: str | os.PathLike) -> None:
    """Raise :class:`OrphanedError` naming ``output`` when an owner of this process is gone."""
    gone = lost_owner()
    if gone is not None:
        raise OrphanedError(
            f"nbrun: {gone} has ended, so its stage has too; {os.fspath(output)} is left as it "
            "was (run the stage again to produce it)"
        )


def connection_open(sock) -> Callable[[], bool]:
    """A check that the peer of the stream socket ``sock`` has not hung up (it never sends after its request)."""
    import socket

    sock.settimeout(None)  # blocking mode: MSG_DONTWAIT answers at once (with a timeout, recv would wait first)

    def alive() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    return alive


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one we may not signal counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
