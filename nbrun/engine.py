"""The in-process papermill engine: run a notebook's code cells in this Python process (no Jupyter kernel).

Every DVC stage of the pipeline executes a papermill notebook.  Starting a Jupyter kernel (~1.5 s) and importing
torch & co. inside it (~9 s) cost more than many stages' real work; :class:`InProcessEngine` (papermill engine
``"inprocess"``) instead runs the cells in the current process, in one fresh ``__main__`` namespace, capturing
``stdout``/``stderr`` and trailing expressions as notebook outputs.

Differences from the Jupyter kernel (documented, deliberate): no IPython (no magics, no top-level ``await``),
``display()`` prints like ``print`` and trailing expressions give ``text/plain`` only (no HTML / images / inline
figures; matplotlib uses ``Agg``), and only writes through ``sys.stdout``/``sys.stderr`` are captured (output a C
extension or a subprocess writes straight to file descriptors 1/2 reaches the terminal, not the notebook).

The engine class needs ``papermill`` (a 4 s import), so it is built on first use -- :func:`engine_class` or
:func:`execute` -- and registered as ``"inprocess"`` then; importing this module stays light.
"""

from __future__ import annotations
import __future__

import ast
import contextlib
import functools
import io
import linecache
import logging
import operator
import os
import platform
import re
import signal
import sys
import threading
import traceback
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from nbrun import lifeline

if TYPE_CHECKING:
    from nbformat import NotebookNode
    from papermill.engines import NotebookExecutionManager

ENGINE_NAME = "inprocess"

log = logging.getLogger(__name__)

_FUTURE_FLAGS = functools.reduce(
    operator.or_, (getattr(__future__, name).compiler_flag for name in __future__.all_feature_names)
)  # `from __future__ import ...` in one cell applies to the later cells too, as in IPython
_CARRIAGE_RETURN = re.compile(r"[^\n]*\r(?=[^\n])")  # text a later '\r' on the same line overwrites (tqdm)
# A temporary output of nbrun (`.NAME.PID.tmp.ipynb`) or of mambapro.results (`.NAME.PID.XXXXXXXX.tmp`): its writer's
# pid tells whether it is stale.  .dvcignore keeps both out of DVC's view.
_TEMPORARY = re.compile(r"^\.(?P<name>.+?)\.(?P<pid>\d+)\.(?:\w+\.)?tmp(?:\.ipynb)?$")
_ENGINE: type | None = None


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

    InProcessEngine.__module__ = "nbrun"  # exported as nbrun.InProcessEngine
    return InProcessEngine


def engine_class() -> type:
    """The :class:`InProcessEngine` class, built (importing papermill) and registered as ``"inprocess"`` once."""
    global _ENGINE
    if _ENGINE is None:
        from papermill.engines import papermill_engines

        _ENGINE = _define_engine()
        papermill_engines.register(ENGINE_NAME, _ENGINE)
    return _ENGINE


def _temporary_path(output: str) -> str:
    folder, name = os.path.split(output)
    return os.path.join(folder, f".{name}.{os.getpid()}.tmp.ipynb")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary outputs in ``folder`` whose writer (the pid in the name) is gone -- left by a run killed
    with SIGKILL -- and return them.  A live writer's temporary is kept."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            match = _TEMPORARY.match(entry.name)
            if match and entry.is_file(follow_symlinks=False) and not lifeline.pid_alive(int(match["pid"])):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
                    log.info("nbrun: removed %s, a stale temporary of a run that was killed", entry.path)
    return removed


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
    overwritten by a failed run; the failure is reported on stderr.  Nor by an orphaned one: when the process that
    started this run is gone (:mod:`nbrun.lifeline`), the output is not replaced and ``OrphanedError`` is raised.
    Stale temporaries of killed runs beside ``output_path`` are removed first.  ``jupyter``: run the cells in a
    Jupyter kernel (papermill's own engine) for rich outputs (images, Markdown) instead of in-process.  Raises
    papermill's ``PapermillExecutionError`` when a cell failed.
    """
    import papermill
    from papermill.parameterize import add_builtin_parameters, parameterize_path

    engine_class()
    parameters = dict(parameters or {})
    output = parameterize_path(str(output_path), add_builtin_parameters(parameters))
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    remove_stale_temporaries(os.path.dirname(output) or ".")
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
            lifeline.ensure_owned(output)  # (inside: a SIGTERM from here on still stops the rename)
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
