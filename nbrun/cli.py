"""The command line: ``python -m nbrun IN.ipynb OUT.ipynb [-p NAME VALUE]...`` or ``python -m nbrun serve ...``.

The execute command is a tiny client (argparse, json, socket) when ``NBRUN_SOCKET`` (or ``--socket``) names a live
preload server (:mod:`nbrun.server`), and runs the notebook itself (:func:`nbrun.engine.execute`) otherwise;
papermill's own options (``-p``, ``-r``, ``-y``, ``-f``) keep papermill's meaning.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nbrun.engine import execute
from nbrun.lifeline import OrphanedError
from nbrun.server import DEFAULT_PRELOAD, _read_line, serve

SOCKET_ENV = "NBRUN_SOCKET"


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
    except OrphanedError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM (engine._sigterm_as_interrupt): say so in one line
        signal_number = 15 if str(exc) == "signal 15" else 2
        print(
            f"nbrun: {args.input} interrupted by signal {signal_number}; {args.output} is left as it was",
            file=sys.stderr,
        )
        return 128 + signal_number
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
