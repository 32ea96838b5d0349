"""Shared fixtures: a seeded random generator, the location of shared reference data, the environment of
a `sporep-hpc` subprocess, and a writer of minimal stores."""

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
QE_BANDS = SHARED / "reference" / "qe-bands"


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator: random inputs are reproducible."""
    return np.random.default_rng(20241126)


@pytest.fixture
def qe_bands_dir() -> Path:
    """The Quantum ESPRESSO reference bands, or skip when ../shared is absent."""
    if not QE_BANDS.is_dir():
        pytest.skip("shared/reference/qe-bands not available")
    return QE_BANDS


QE_XML = SHARED / "reference" / "qe-xml"


@pytest.fixture
def qe_xml_dir() -> Path:
    """Real Quantum ESPRESSO XML outputs (data-file-schema.xml), or skip when ../shared is absent."""
    if not QE_XML.is_dir():
        pytest.skip("shared/reference/qe-xml not available")
    return QE_XML


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """The environment for a `sporep-hpc` subprocess: this one without the variables of an enclosing MPI
    job (PMI_, PMIX_, HYDRA_, MPIR_: a child would take them as its own rank), one OpenMP thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "HYDRA_", "MPIR_"))}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture
def make_store():
    """A writer of minimal stores with one fingerprint, for the analysis commands:
    ``make_store(path, values, energies, ids=None, failed=(), attrs=None, name="kinetic") -> path``
    (rows in `failed` are failed structures; ids default to s0, s1, ...)."""
    from sporep_hpc.store import FingerprintMeta, StoreHeader, StructureResult, failed_result, write_store

    def write(path, values, energies, ids=None, failed=(), attrs=None, name="kinetic"):
        ids = ids or [f"s{i}" for i in range(len(values))]
        rows = []
        for i, (sid, vec) in enumerate(zip(ids, values, strict=True)):
            if i in failed:
                rows.append(failed_result(i, sid, "synthetic failure"))
            else:
                rows.append(StructureResult(index=i, id=sid, status=1, fingerprints={name: np.asarray(vec)}))
        header = StoreHeader(parameters_json="{}", created="2026-01-01T00:00:00+00:00", n_ranks=1,
                             version="test")
        meta = {name: FingerprintMeta(np.asarray(energies, dtype=float), attrs or {"reference": "vbm"})}
        write_store(path, rows, 0, len(rows), header, meta)
        return path

    return write
