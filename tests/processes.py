"""Waiting on processes in the tests of nbrun and .ci/repro (signals, orphans, servers)."""

from __future__ import annotations

import time
from pathlib import Path


def wait_for(predicate, what: str = "condition", timeout: float = 60.0):
    """Poll ``predicate`` until it returns a true value (returned); fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    """True once ``pid`` has exited: no such process, or a zombie (it runs no code, only waits to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")
