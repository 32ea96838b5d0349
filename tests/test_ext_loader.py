"""The one kernel loader, sporep_hpc._ext.load: every kernel loads; missing or stale builds name the fix."""

from __future__ import annotations

import types

import pytest

import sporep_hpc._ext as ext
from sporep_hpc.errors import SporepError


@pytest.fixture
def fresh_cache():
    ext.load.cache_clear()
    yield
    ext.load.cache_clear()


@pytest.mark.parametrize("name", ext.KERNELS)
def test_every_kernel_loads_with_the_current_interface(name):
    module = ext.load(name)
    assert module.__name__ == f"sporep_hpc._ext.{name}"
    assert module.ABI == ext.ABI
    assert ext.load(name) is module  # imported once


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="kernel must be one of distances, eigensolve, integrals, smearing"):
        ext.load("x")


def test_missing_build_names_kernel_and_rebuild_command(monkeypatch, fresh_cache):
    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(ext.importlib, "import_module", missing)
    with pytest.raises(ext.KernelImportError) as info:
        ext.load("smearing")
    message = str(info.value)
    assert "sporep_hpc._ext.smearing is not built" in message
    assert "SPOREP_EXT=smearing .venv/bin/python setup.py build_ext --inplace" in message
    assert "make install" in message and "make build" not in message
    assert isinstance(info.value, SporepError) and isinstance(info.value, ImportError)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


@pytest.mark.parametrize("abi", [None, ext.ABI - 1])
def test_stale_build_is_refused(monkeypatch, fresh_cache, abi):
    stale = types.ModuleType("sporep_hpc._ext.integrals")
    if abi is not None:
        stale.ABI = abi
    monkeypatch.setattr(ext.importlib, "import_module", lambda name: stale)
    with pytest.raises(ext.KernelImportError) as info:
        ext.load("integrals")
    message = str(info.value)
    assert f"integrals is stale (interface {abi}, this package needs {ext.ABI})" in message
    assert "SPOREP_EXT=integrals .venv/bin/python setup.py build_ext --inplace" in message
