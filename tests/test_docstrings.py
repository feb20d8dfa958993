"""Every docstring example that is not marked ``+SKIP`` runs and prints what it shows."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import qianyi

MODULES = [m.name for m in pkgutil.walk_packages(qianyi.__path__, "qianyi.") if not m.name.endswith("__main__")]


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run_as_shown(name):
    result = doctest.testmod(importlib.import_module(name), report=True,
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples failed (above)"


def test_the_examples_are_found():
    """(The test above passes vacuously if no example is collected.)"""
    attempted = sum(doctest.testmod(importlib.import_module(n), report=False).attempted for n in MODULES)
    assert attempted >= 50
