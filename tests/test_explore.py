"""``notebooks/explore.ipynb`` as JupyterLab runs it (README: ``jupyter lab notebooks/explore.ipynb``).

A real Jupyter server (``python -m jupyterlab``, token auth, no browser, a free port, root = the project) opens a
session on the notebook through its REST API, as the JupyterLab front end does: the kernel's working directory is
then ``notebooks/``, not the project root.  Every code cell runs through the kernel's websocket channel; no cell may
raise, and the outputs must show numbers from the committed ``results/default``.  Offline: nothing but localhost.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest
import websocket  # websocket-client, a dependency of jupyter_server

from mambapro.results import load_metrics

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "notebooks/explore.ipynb"
START_TIMEOUT = 120  # seconds for the server to answer (a cold CI machine)
CELL_TIMEOUT = 180  # seconds for one cell (the first imports torch)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _isolated_env(tmp: Path) -> dict[str, str]:
    """The test's environment without the user's Jupyter / IPython configuration, and a ``python3`` kernelspec
    (first on ``JUPYTER_PATH``) running this interpreter, so a system-wide ``python3`` spec cannot take over.
    ``MAMBAPRO_ROOT`` is unset: the notebook must find the project from its kernel's working directory."""
    env = {k: v for k, v in os.environ.items() if k != "MAMBAPRO_ROOT"}
    spec = tmp / "jupyter_path" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    env.update(JUPYTER_PATH=str(tmp / "jupyter_path"), JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTER_DATA_DIR=str(tmp / "data"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               IPYTHONDIR=str(tmp / "ipython"), JUPYTER_PLATFORM_DIRS="1", MPLBACKEND="Agg")
    return env


class Server:
    """A ``jupyter lab`` server process and its REST API."""

    def __init__(self, tmp: Path):
        self.port, self.token = _free_port(), uuid.uuid4().hex
        self.log = tmp / "server.log"
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", "--allow-root", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={ROOT}"]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(cmd, cwd=tmp, env=_isolated_env(tmp), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(self.url(path), method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read()
        return json.loads(text) if text else {}

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"jupyter server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                self.api("GET", "api/status")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        pytest.fail(f"jupyter server did not answer within {START_TIMEOUT} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # the server shuts its kernels down on SIGTERM
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class KernelChannel:
    """The kernel's websocket (``/api/kernels/<id>/channels``, JSON messages with a ``channel`` key)."""

    def __init__(self, server: Server, kernel_id: str):
        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            server.url(f"api/kernels/{kernel_id}/channels?session_id={self.session}", "ws"),
            header={"Authorization": f"token {server.token}"}, timeout=CELL_TIMEOUT)

    def execute(self, code: str) -> tuple[list[dict], dict]:
        """Run ``code``; its iopub outputs (stream, display_data, execute_result, error) and the execute_reply."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": self.session,
                       "date": datetime.now(UTC).isoformat(), "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        outputs, reply, idle = [], None, False
        deadline = time.monotonic() + CELL_TIMEOUT
        while reply is None or not idle:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reply within {CELL_TIMEOUT} s to:\n{code}")
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if msg["channel"] == "shell" and kind == "execute_reply":
                reply = msg["content"]
            elif kind == "status":
                idle = msg["content"]["execution_state"] == "idle"
            elif kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append({"output_type": kind, **msg["content"]})
        return outputs, reply

    def close(self) -> None:
        self.ws.close()


def _text(outputs: list[dict]) -> str:
    parts = []
    for out in outputs:
        parts.append(out.get("text", ""))
        parts += [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


def test_explore_notebook_in_jupyter_server(tmp_path):
    metrics = load_metrics(ROOT / "results" / "default", "F")
    map_mean = f"{metrics['summary']['last/mAP/mean']:.2f}"  # the notebook's summary shows 2 decimals
    cells = [c.source for c in nbformat.read(ROOT / NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    server = Server(tmp_path)
    channel = session = None
    try:
        server.wait_ready()
        session = server.api("POST", "api/sessions", {"path": NOTEBOOK, "type": "notebook", "name": "explore.ipynb",
                                                      "kernel": {"name": "python3"}})
        channel = KernelChannel(server, session["kernel"]["id"])
        outputs, _ = channel.execute("import os; print(os.getcwd())")
        assert Path(_text(outputs).strip()) == ROOT / "notebooks"  # where JupyterLab starts the kernel

        everything = []
        for source in cells:
            outputs, reply = channel.execute(source)
            errors = [o for o in outputs if o["output_type"] == "error"]
            assert not errors and reply["status"] == "ok", (
                f"cell failed:\n{source}\n" + "\n".join(f"{e['ename']}: {e['evalue']}" for e in errors))
            everything += outputs
    finally:
        try:
            if channel is not None:
                channel.close()
            if session is not None and server.proc.poll() is None:
                server.api("DELETE", f"api/sessions/{session['id']}")  # shuts its kernel down
        finally:
            server.stop()

    text = _text(everything)
    assert "'presets': 'A B C D E F G" in text  # the profile's presets, from params.yaml's active profile
    assert f"{map_mean} ± " in text  # the summary of preset F, mean ± std over seeds
    assert any("image/png" in o.get("data", {}) for o in everything)  # the training curves
    assert "Missing modalities (preset F)" in text  # the evaluation, present for F
    assert "last_mAP_mean" in text and "paper_mAP" in text  # Table 3


def _fake_runs(root: Path, namespace: str, preset: str = "F") -> None:
    path = root / "results" / namespace / "runs" / preset / "seed0" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")


def test_every_profile_name_finds_its_runs(tmp_path):
    """The notebook's ``profile`` → the namespace holding its runs: a vehicle profile trained as a person profile's
    vehicle runs lives under ``<person profile>/vehicle`` (``default-vehicle`` used to look in
    ``results/default-vehicle`` and fail)."""
    from mambapro.config import ConfigError
    from mambapro.pipeline import results_namespace
    from mambapro.results import MissingResultError

    _fake_runs(tmp_path, "default")
    _fake_runs(tmp_path, "default/vehicle")
    _fake_runs(tmp_path, "rgbnt100")
    assert results_namespace("default", tmp_path) == "default"
    assert results_namespace("default-vehicle", tmp_path) == "default/vehicle"
    assert results_namespace("default/vehicle", tmp_path) == "default/vehicle"
    assert results_namespace("rgbnt100", tmp_path) == "rgbnt100"  # its own runs come first
    with pytest.raises(MissingResultError, match=r"'rgbnt201' has no runs: no metrics.json under "
                                                 r"results/rgbnt201/runs"):
        results_namespace("rgbnt201", tmp_path)
    with pytest.raises(MissingResultError, match=r"results/msvr310/runs; train them first"):
        results_namespace("msvr310", tmp_path)
    with pytest.raises(ConfigError, match="unknown profile 'nope'.*valid profiles: default, default-vehicle"):
        results_namespace("nope", tmp_path)


def test_table3_file_follows_the_object_of_the_runs():
    """Table 3's rows of a namespace's runs: Table 12 on vehicles (a person profile's vehicle runs or a vehicle
    profile's own, :func:`mambapro.config.object_kind`), Table 3 on persons."""
    from mambapro.pipeline import table3_file

    assert table3_file("default") == Path("results/default/tables/table3.csv")
    assert table3_file("default/vehicle") == Path("results/default/vehicle/tables/table12.csv")
    assert table3_file("rgbnt100", "/r") == Path("/r/results/rgbnt100/tables/table12.csv")
    assert table3_file("rgbnt201").name == "table3.csv"


def _run_cell(source: str, scope: dict):
    """Run a cell as IPython does: its statements, then its last expression's value (what Jupyter displays)."""
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<cell>", "exec"), scope)
    return None if last is None else eval(compile(ast.Expression(last.value), "<cell>", "eval"), scope)


@pytest.mark.parametrize("profile", ["default-vehicle", "default/vehicle"])
def test_explore_cells_for_a_vehicle_profile(profile, monkeypatch):
    """Every code cell of the notebook, run in this process with ``profile`` set as the README names it, on the
    committed vehicle runs of the default profile (the old notebook stopped: MissingResultError, then NameError)."""
    import pandas as pd

    metrics = load_metrics(ROOT / "results" / "default" / "vehicle", "F")
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("MAMBAPRO_ROOT", raising=False)
    cells = [c.source for c in nbformat.read(ROOT / NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    scope: dict = {}
    _run_cell(cells[0], scope)  # the parameters cell, then the value papermill or the user would set
    scope["profile"] = profile
    shown = [_run_cell(source, scope) for source in cells[1:]]
    assert scope["namespace"] == "default/vehicle" and scope["folder"] == Path("results/default/vehicle")
    assert shown[1] == {"presets": "A B C D E F G", "vehicle presets": ""}
    assert scope["metrics"]["summary"]["last/mAP/mean"] == metrics["summary"]["last/mAP/mean"]
    assert scope["table3"] == Path("results/default/vehicle/tables/table12.csv")
    assert isinstance(shown[-1], pd.DataFrame) and "F" in shown[-1].columns
