"""Shared fixtures. Qt (if any test needs it) runs offscreen; Hypothesis has no deadline."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from hypothesis import settings

settings.register_profile("implicit_viz", deadline=None, max_examples=300)
settings.load_profile("implicit_viz")


@pytest.fixture(scope="session")
def tanh_spec():
    from implicit_viz.core.spec import load_spec

    return load_spec("tanh_layer")


@pytest.fixture(scope="session")
def tanh_map(tanh_spec):
    from implicit_viz.core.compiled_map import compile_spec

    return compile_spec(tanh_spec)


@pytest.fixture(scope="session")
def logistic_map():
    from implicit_viz.core.compiled_map import compile_spec
    from implicit_viz.core.spec import load_spec

    return compile_spec(load_spec("logistic"))


@pytest.fixture(scope="session")
def cosine_map():
    from implicit_viz.core.compiled_map import compile_spec
    from implicit_viz.core.spec import load_spec

    return compile_spec(load_spec("cosine"))


@pytest.fixture(scope="session")
def gd_map():
    from implicit_viz.core.compiled_map import compile_spec
    from implicit_viz.core.spec import load_spec

    return compile_spec(load_spec("gradient_descent"))
