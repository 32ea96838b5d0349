"""Shared fixtures: a seeded random generator and the location of shared reference data."""

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
