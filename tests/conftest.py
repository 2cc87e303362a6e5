"""Shared fixtures.  ``model_*``: the model engineer's (paper-scale tower built once per session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def model_paper_tower():
    """The paper-scale CLIP visual tower (ViT-B-16-quickgelu at 256x128, random weights), built once (~1 s) and
    shared: pass it as ``tower=`` to :class:`mambapro.backbone.Backbone` / ``build_model``."""
    from mambapro.complexity import paper_tower

    return paper_tower()


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """The tiny synthetic benchmark (``mambapro.data.synthetic``, seed 0), generated once and only read by tests."""
    from mambapro.data.synthetic import generate

    root = tmp_path_factory.mktemp("tiny") / "synthetic"
    generate(root, seed=0, size="tiny")
    return root


@pytest.fixture()
def stand_in_commands(tmp_path):
    """``stand_in_commands(name=script, ...)`` -> an environment whose PATH puts these shell scripts first and whose
    ``$LOG`` names a file they may append to (returned as ``env["LOG"]``)."""
    import os

    def make(**scripts: str) -> dict[str, str]:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for name, text in scripts.items():
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(tmp_path / "log")}

    return make


def load_script(path):
    """A script (``benchmarks/*.py``, ``.ci/*.py``) imported as a module, for testing its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
