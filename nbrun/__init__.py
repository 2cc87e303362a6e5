"""Fast notebook stages: run papermill notebooks in-process, optionally through a pre-forking server.

Every DVC stage of the pipeline executes a papermill notebook.  On the 2-core CI machine each stage paid ~15 s of
fixed overhead before its first line of real work: ``import papermill`` (~4 s), starting a Jupyter kernel
(~1.5 s) and ``import torch, open_clip, timm, ...`` inside that kernel (~9 s).  This package removes it in two steps:

1. :mod:`nbrun.engine`: :class:`InProcessEngine` (papermill engine ``"inprocess"``) runs the cells in the current
   Python process, in one fresh ``__main__`` namespace; no kernel is started.
2. :mod:`nbrun.server`: ``python -m nbrun serve --socket PATH`` imports the heavy modules once, then forks one child
   per request; :mod:`nbrun.cli`: ``python -m nbrun IN.ipynb OUT.ipynb -p NAME VALUE ...`` is a tiny client when
   ``NBRUN_SOCKET`` (or ``--socket``) names a live server, and runs the notebook itself otherwise.

:mod:`nbrun.lifeline` makes every process of a stage die with the stage, and keeps an orphaned run from writing.
The papermill engine class needs ``papermill`` (a 4 s import), so it is built on first use -- on
``nbrun.InProcessEngine``, :func:`engine_class` or :func:`execute`; importing this package stays light.
"""

from __future__ import annotations

from typing import Any

from nbrun.cli import SOCKET_ENV, main
from nbrun.engine import ENGINE_NAME, engine_class, execute
from nbrun.server import DEFAULT_PRELOAD, serve

# InProcessEngine is exported too, built lazily by the module __getattr__ (F822 would flag it in __all__)
__all__ = ["DEFAULT_PRELOAD", "ENGINE_NAME", "SOCKET_ENV", "engine_class", "execute", "main", "serve"]


def __getattr__(name: str) -> Any:
    if name == "InProcessEngine":
        return engine_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
