"""Every module of mllmcl imports cleanly: the fast tier (`make test-fast`) touches the whole package, also the
modules whose behaviour only the slow tests exercise."""
from __future__ import annotations

import importlib
import pkgutil

import pytest

import mllmcl

MODULES = sorted(m.name for m in pkgutil.walk_packages(mllmcl.__path__, "mllmcl.") if m.name != "mllmcl.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    importlib.import_module(name)
