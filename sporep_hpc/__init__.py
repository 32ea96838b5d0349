"""sporep-hpc: spectral operator representations (SOREP) of crystals at database scale.

Public API (DESIGN.md §5b): `read_structures`, `operator_spectrum`, `BandStructure`,
`fingerprint`, and the modules `kpoints`, `smearing`, `store`. Attributes are
imported lazily so that `import sporep_hpc` stays cheap and free of MPI.
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "read_structures": "structures",
    "operator_spectrum": "operators",
    "BandStructure": "bands",
    "fingerprint": "fingerprints",
}

__all__ = ["BandStructure", "__version__", "fingerprint", "operator_spectrum", "read_structures"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sporep_hpc' has no attribute {name!r}")
