"""Band-structure import from files: ``.npz`` archives and VASP ``vasprun.xml`` (through pymatgen).

The store's own HDF5 layout is read by `sporep_hpc.store`, not here.

``.npz`` keys: ``bands`` (eV; (n_k, n_bands) or (n_spin, n_k, n_bands)), ``weights`` (n_k,), optional
``kpoints`` (n_k, 3) fractional, ``occupations`` (shape of ``bands``; electrons per band as DFT codes report
them: ≤ 2 with one spin channel, ≤ 1 with two), ``n_electrons`` (scalar) and ``fermi_energy`` (scalar, eV).

Weights of any positive scale (Quantum ESPRESSO's sum to 2 with one spin channel) are normalised to 1.
The number of electrons is taken, in this order, from the `n_electrons` argument, the file
(``n_electrons`` key or VASP's NELECT), or the reported occupations (Σ_k w_k Σ_n f, rounded to the nearest
integer when within 1e-3 of it). The DFT code's Fermi energy is only kept with ``keep_fermi_energy=True``:
by default the Fermi level is recomputed by `BandStructure` (mid-gap rule for insulators, DESIGN.md §3).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .bands import BandStructure
from .errors import InputError

__all__ = ["read_bands"]

_ELECTRON_ROUNDING = 1e-3


def read_bands(path: str | os.PathLike, n_electrons: float | None = None,
               keep_fermi_energy: bool = False) -> BandStructure:
    """Read a band structure from a ``.npz`` archive or a VASP ``vasprun.xml``.

    Parameters
    ----------
    path : str or path-like
        ``*.npz`` or ``*.xml`` (vasprun).
    n_electrons : float, optional
        Electrons per cell; overrides what the file says.
    keep_fermi_energy : bool
        Keep the file's Fermi energy as `BandStructure.fermi_energy` instead of recomputing it.

    Returns
    -------
    BandStructure
        eigenvalues (n_spin, n_k, n_bands) eV, weights (n_k,) summing to 1, kpoints (n_k, 3) fractional.

    Raises
    ------
    InputError
        Missing or unreadable file, unknown format, missing keys or inconsistent shapes.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"band file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        fields = _read_npz(p)
    elif suffix == ".xml":
        fields = _read_vasprun(p)
    elif suffix in (".h5", ".hdf5"):
        raise InputError(f"{str(p)!r}: HDF5 stores are read with sporep_hpc.store.open_store, not read_bands")
    else:
        raise InputError(f"{str(p)!r}: unknown band file format {suffix!r}; expected .npz or vasprun .xml")
    return _build(p, fields, n_electrons, keep_fermi_energy)


def _read_npz(p: Path) -> dict[str, Any]:
    try:
        with np.load(p, allow_pickle=False) as data:
            fields = {key: np.array(data[key]) for key in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{str(p)!r}: cannot read .npz archive: {exc}") from exc
    missing = [key for key in ("bands", "weights") if key not in fields]
    if missing:
        have = ", ".join(sorted(fields))
        raise InputError(f"{str(p)!r}: missing key(s) {', '.join(missing)} (have {have})")
    for key in ("n_electrons", "fermi_energy"):
        if key in fields:
            fields[key] = float(fields[key])
    return fields


def _read_vasprun(p: Path) -> dict[str, Any]:
    try:
        from pymatgen.electronic_structure.core import Spin
        from pymatgen.io.vasp.outputs import Vasprun
    except ImportError as exc:  # pragma: no cover - pymatgen is a dependency
        raise InputError("reading vasprun.xml needs pymatgen") from exc
    try:
        # parse_dos=True only because pymatgen reads the Fermi energy from the DOS block
        run = Vasprun(str(p), parse_dos=True, parse_eigen=True, parse_projected_eigen=False,
                      parse_potcar_file=False, exception_on_bad_xml=True)
    except Exception as exc:  # pymatgen raises many types (ParseError, KeyError, ValueError, ...)
        raise InputError(f"{str(p)!r}: cannot parse vasprun.xml: {type(exc).__name__}: {exc}") from exc
    if not run.eigenvalues:
        raise InputError(f"{str(p)!r}: vasprun.xml holds no eigenvalues")
    spins = [s for s in (Spin.up, Spin.down) if s in run.eigenvalues]
    eig = np.stack([np.asarray(run.eigenvalues[s])[..., 0] for s in spins])
    occ = np.stack([np.asarray(run.eigenvalues[s])[..., 1] for s in spins])
    if len(spins) == 1:
        occ = 2.0 * occ  # VASP reports fractional occupations in [0, 1]; with one channel a band holds 2
    fields: dict[str, Any] = {
        "bands": eig, "weights": np.asarray(run.actual_kpoints_weights, dtype=float),
        "kpoints": np.asarray(run.actual_kpoints, dtype=float), "occupations": occ,
    }
    nelect = run.parameters.get("NELECT") if run.parameters else None
    if nelect is not None:
        fields["n_electrons"] = float(nelect)
    if run.efermi is not None:
        fields["fermi_energy"] = float(run.efermi)
    return fields


def _electrons_from_occupations(bands: BandStructure, occupations: Any, p: Path) -> float:
    occ = np.asarray(occupations, dtype=float)
    if occ.ndim == 2:
        occ = occ[None]
    if occ.shape != bands.eigenvalues.shape:
        raise InputError(
            f"{str(p)!r}: occupations shape {occ.shape} differs from bands {bands.eigenvalues.shape}"
        )
    total = float(np.einsum("skn,k->", np.nan_to_num(occ), bands.weights))
    nearest = round(total)
    return float(nearest) if abs(total - nearest) <= _ELECTRON_ROUNDING else total


def _build(
    p: Path, fields: dict[str, Any], n_electrons: float | None, keep_fermi_energy: bool
) -> BandStructure:
    try:
        bare = BandStructure(fields["bands"], fields["weights"], kpoints=fields.get("kpoints"))
    except InputError as exc:
        raise InputError(f"{str(p)!r}: {exc}") from exc
    if n_electrons is None:
        n_electrons = fields.get("n_electrons")
    if n_electrons is None and "occupations" in fields:
        n_electrons = _electrons_from_occupations(bare, _unsorted_guard(fields), p)
    fermi = fields.get("fermi_energy") if keep_fermi_energy else None
    if fermi is not None and not math.isfinite(fermi):
        fermi = None
    try:
        return BandStructure(bare.eigenvalues, bare.weights, n_electrons, fermi, bare.kpoints)
    except InputError as exc:
        raise InputError(f"{str(p)!r}: {exc}") from exc


def _unsorted_guard(fields: dict[str, Any]) -> np.ndarray:
    """Occupations reordered like the eigenvalues (BandStructure sorts every (spin, k) spectrum)."""
    bands = np.asarray(fields["bands"], dtype=float)
    occ = np.asarray(fields["occupations"], dtype=float)
    if bands.ndim == 2:
        bands = bands[None]
    if occ.ndim == 2:
        occ = occ[None]
    if occ.shape != bands.shape:
        return occ
    order = np.argsort(bands, axis=2, kind="stable")
    return np.take_along_axis(occ, order, axis=2)
