"""The compiled kernels of ext/*.pyx, loaded in one place.

Every Python module gets its kernels from `load` (``load("eigensolve").eig_batch(...)``); nothing else
imports ``sporep_hpc._ext.<name>``. A kernel that is not built, or was built from an older interface
(its ``ABI`` differs from `ABI`), raises `KernelImportError` naming the kernel and the rebuild command.

The kernels take typed memoryviews (labelled IN/OUT in ext/*.pyx), run without the GIL and return an
int status; their Python callers check the inputs before and raise after (STYLE.md §2.3-2.4):

- ``integrals``: lattice_blocks, bloch_phase (caller: sporep_hpc.operators)
- ``eigensolve``: eig_batch, real_form (sporep_hpc.operators)
- ``smearing``: delta_array, theta_array, dos, electron_count (sporep_hpc.smearing, sporep_hpc.bands)
- ``distances``: dot_metric_block, wasserstein_block, topk_block (sporep_hpc.analysis.similarity,
  sporep_hpc.analysis.neighbours)
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType

from ..errors import SporepError

__all__ = ["ABI", "KERNELS", "KernelImportError", "load"]

#: Interface version every kernel module must declare (``ABI = ...`` in each ext/*.pyx).
ABI = 2
KERNELS = ("distances", "eigensolve", "integrals", "smearing")


class KernelImportError(SporepError, ImportError):
    """A compiled kernel that is missing or stale (an installation problem: exit code 1)."""


def _rebuild(name: str) -> str:
    return (f"run `make install`, or `SPOREP_EXT={name} .venv/bin/python setup.py build_ext --inplace` "
            "in the source tree")


@cache
def load(name: str) -> ModuleType:
    """The compiled kernel module `name` (one of `KERNELS`), imported once.

    Raises
    ------
    KernelImportError
        The module is not built, cannot be loaded, or was built from another interface version.
    """
    if name not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ImportError as exc:
        raise KernelImportError(
            f"kernel sporep_hpc._ext.{name} is not built ({exc}); {_rebuild(name)}"
        ) from exc
    found = getattr(module, "ABI", None)
    if found != ABI:
        raise KernelImportError(
            f"kernel sporep_hpc._ext.{name} is stale (interface {found}, this package needs {ABI}); "
            f"{_rebuild(name)}"
        )
    return module
