"""Shared fixtures.  ``model_*``: the model engineer's (paper-scale tower built once per session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def model_paper_tower():
    """The paper-scale CLIP visual tower (ViT-B-16-quickgelu at 256x128, random weights), built once (~1 s) and
    shared: pass it as ``tower=`` to :class:`mambapro.backbone.Backbone` / ``build_model``."""
    from mambapro.complexity import paper_tower

    return paper_tower()
