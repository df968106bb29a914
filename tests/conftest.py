"""Shared fixtures. Qt (if any test needs it) runs offscreen; Hypothesis has no deadline.

The PySide6 refcount guard (:mod:`implicit_viz.gui._refcount_guard`) starts here, before any
test makes a Qt object: the GUI tests and the CLI's ``--png`` tests (in process) use Qt, and
importing :mod:`implicit_viz.gui` no longer starts it.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from hypothesis import settings

from implicit_viz.gui._refcount_guard import guard_singletons

guard_singletons()

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
