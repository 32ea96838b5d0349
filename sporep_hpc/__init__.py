"""sporep-hpc: spectral operator representations (SOREP) of crystals at database scale.

Public API (DESIGN.md §5b), listed in `__all__`: `read_structures`, `operator_spectrum`,
`BandStructure`, `fingerprint`, `SorepFeaturizer`, the modules `kpoints` and `smearing`, and the
exceptions `SporepError`, `InputError`, `ParameterError`, `StoreError`. Each is imported on first
use, so that ``import sporep_hpc`` stays cheap and free of MPI (and of scikit-learn until
`SorepFeaturizer` is used).
"""

from importlib import import_module as _import_module

__version__ = "0.1.0"

#: Public name -> module (relative to this package) that defines it; names equal to their module's
#: last component are the modules themselves.
_LAZY = {
    "read_structures": "inputs.files",
    "operator_spectrum": "operators",
    "BandStructure": "bands",
    "fingerprint": "fingerprints",
    "SorepFeaturizer": "featurizer",
    "kpoints": "kpoints",
    "smearing": "smearing",
    "SporepError": "errors",
    "InputError": "errors",
    "ParameterError": "errors",
    "StoreError": "errors",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'sporep_hpc' has no attribute {name!r}")
    module = _import_module(f".{_LAZY[name]}", __name__)
    return module if name == _LAZY[name] else getattr(module, name)


def __dir__() -> list[str]:
    return list(__all__)
