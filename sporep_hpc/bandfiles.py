"""Band-structure import from files: ``.npz`` archives, VASP ``vasprun.xml`` (through pymatgen), Quantum
ESPRESSO's ``data-file-schema.xml`` and pymatgen ``BandStructure`` JSON (as the Materials Project API
returns).

The store's own HDF5 layout is read by `sporep_hpc.store`, not here. `read_bands` picks the reader from the
file (suffix, then the root element of an ``.xml``); each format has one reader.

``.npz`` keys: ``bands`` (eV; (n_k, n_bands) or (n_spin, n_k, n_bands)), ``weights`` (n_k,), optional
``kpoints`` (n_k, 3) fractional, ``occupations`` (shape of ``bands``; electrons per band as DFT codes report
them: ≤ 2 with one spin channel, ≤ 1 with two), ``n_electrons`` (scalar) and ``fermi_energy`` (scalar, eV).

Weights of any positive scale (Quantum ESPRESSO's sum to 2 with one spin channel) are normalised to 1.
The number of electrons is taken, in this order, from the `n_electrons` argument, the file
(``n_electrons`` key, VASP's NELECT or QE's ``nelec``), or the reported occupations (Σ_k w_k Σ_n f, rounded
to the nearest integer when within 1e-3 of it). The DFT code's Fermi energy is only kept with
``keep_fermi_energy=True``: by default the Fermi level is recomputed by `BandStructure` (mid-gap rule for
insulators, DESIGN.md §3).

Quantum ESPRESSO XML (DESIGN.md §8.2; `read_qe_xml`). Hartree atomic units in the file; energies are
converted with `HARTREE_EV` and lengths with `BOHR_ANGSTROM` (sporep_hpc.operators, CODATA 2018).

- Structure: ``output/atomic_structure`` (the last, relaxed one): cell ``a1..a3`` and Cartesian
  ``atomic_positions`` in Bohr; the element of a species label is read as QE does (``Fe1``, ``FE_up`` → Fe).
- k-points: ``ks_energies/k_point`` are Cartesian in units of 2π/alat (alat the ``alat`` attribute of
  that structure), converted to fractional f_j = a_j · k / alat; when ``starting_k_points`` holds a
  Monkhorst-Pack grid every k-point must lie on it (|n_j f_j − s_j/2 − integer| ≤ 1e-6), else the file is
  refused (a wrong alat or cell would give wrong fractional k-points).
- Spin: without ``lsda`` or ``noncolin`` one channel, ``occupations`` (in [0, 1] per state) ×2 electrons.
  LSDA (``lsda`` true): each k-point's ``eigenvalues`` hold the ``nbnd_up`` spin-up values then the
  ``nbnd_dw`` spin-down ones (NaN-padded when the two differ). Noncollinear (``noncolin`` true): states are
  singly occupied; `BandStructure` has degeneracy 2 for one channel and 1 for two, so the states of each
  k-point, sorted, are dealt alternately into two channels of degeneracy 1 (the second NaN-padded for an
  odd count). The electron count, Fermi level, DOS and band edges only sum over states and are exact; only
  ``n_spin`` (2) does not mean "spin-polarised" for such a file.
- Occupations: ``occupations_kind`` (smearing, fixed, tetrahedra, ...); with smearing, ``smearing`` names
  the kind (QE's gaussian/gauss, mp/m-p/methfessel-paxton (order 1), mv/m-v/cold/marzari-vanderbilt,
  fd/f-d/fermi-dirac → the names of sporep_hpc.smearing) and its ``degauss`` attribute the width (Ha).
- The file's Fermi energies (`DFTBands.fermi_energies`, eV): ``two_fermi_energies`` (up, down) with a fixed
  total magnetisation, else ``fermi_energy``, else ``highestOccupiedLevel``; with fixed occupations
  ``highestOccupiedLevel`` comes first. A fixed magnetisation has no single Fermi level:
  `BandStructure.fermi_level` gives the one common level for the total ``nelec``; per-channel levels need one
  single-channel band structure per spin with its own electron count.
- ``output/convergence_info/scf_conv/convergence_achieved`` false: refused ("SCF not converged") unless
  ``allow_unconverged=True``. Files without it (non-self-consistent runs) are accepted.

pymatgen ``BandStructure`` JSON (`read_pymatgen_bands`): ``BandStructure.from_dict`` of the file's object.
Only a uniform k-mesh is a band input: a line-mode band structure (``BandStructureSymmLine``, k-points along
lines, no weights) is refused with that reason. The JSON holds no weights: k-points forming a full
Monkhorst-Pack mesh get equal weights; k-points forming the irreducible part of such a mesh (what
``Vasprun.get_band_structure(line_mode=False)`` gives) get the size of their star under the structure's
symmetry with time reversal (spglib's ``get_ir_reciprocal_mesh``); anything else is refused. The JSON holds
no occupations or electron count either: the number of electrons is the weighted count of states below the
file's ``efermi``, rounded to the nearest integer (exact for an insulator whose ``efermi`` lies in the gap);
pass `n_electrons` when it is known.

Why the standard library's ``xml.etree.ElementTree`` and not ``qeschema``: the reader needs about twenty
elements whose meaning is fixed by DESIGN.md §8.2; ``qeschema`` would add two dependencies (``qeschema``,
``xmlschema``) and validate against QE's XSD for each schema version (a file from a QE newer than the
installed ``qeschema`` would be refused for no reason of ours), while every check we need (presence, count,
finiteness, consistency with the Monkhorst-Pack grid) is done here with messages naming the element.
ElementTree (expat) never resolves external entities; in addition the reader refuses any ``<!DOCTYPE`` or
``<!ENTITY`` declaration (a QE file has none), so no entity is expanded at all.
"""

from __future__ import annotations

import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bands import BandStructure
from .errors import InputError
from .operators import BOHR_ANGSTROM, HARTREE_EV
from .params import Param
from .smearing import Smearing

__all__ = [
    "ALLOW_UNCONVERGED",
    "DFTBands",
    "is_pymatgen_bands",
    "is_qe_xml",
    "qe_xml_structure",
    "read_bands",
    "read_pymatgen_bands",
    "read_qe_xml",
]

log = logging.getLogger(__name__)

_ELECTRON_ROUNDING = 1e-3
#: QE's smearing names (input and XML spellings, lower case) -> (kind in sporep_hpc.smearing, order)
_QE_SMEARING = {
    **dict.fromkeys(("gaussian", "gauss"), ("gaussian", 1)),
    **dict.fromkeys(("mp", "m-p", "methfessel-paxton"), ("methfessel-paxton", 1)),
    **dict.fromkeys(("mv", "m-v", "cold", "marzari-vanderbilt"), ("cold", 1)),
    **dict.fromkeys(("fd", "f-d", "fermi-dirac"), ("fermi-dirac", 1)),
}
_QE_NAME = "data-file-schema.xml"
#: the root start tag of a QE XML file after the XML declaration and comments
_QE_ROOT = re.compile(rb"\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*)*<(?:[\w.-]+:)?espresso[\s/>]", re.DOTALL)
_QE_SNIFF_BYTES = 4096
_MP_TOLERANCE = 1e-6  # fractional k-points are written to ~1e-15; a wrong alat or cell misses by ≫ 1e-6
#: pymatgen band-structure classes (``@class`` of their JSON): uniform, and the line-mode ones refused
_PMG_UNIFORM = ("BandStructure",)
_PMG_LINE_MODE = ("BandStructureSymmLine", "LobsterBandStructureSymmLine")
_PMG_GRID_MAX = 100  # largest mesh division inferred from a pymatgen k-point list

#: Run parameter: use the bands of a QE XML file whose SCF did not converge.
ALLOW_UNCONVERGED = Param("allow_unconverged", False, "use the bands of a Quantum ESPRESSO XML file whose "
                          "SCF did not converge (default: a failed row \"SCF not converged\")", kind=bool)


def read_bands(path: str | os.PathLike, n_electrons: float | None = None,
               keep_fermi_energy: bool = False, allow_unconverged: bool = False) -> BandStructure:
    """Read a band structure from a ``.npz`` archive, a VASP ``vasprun.xml`` or a QE XML file.

    Parameters
    ----------
    path : str or path-like
        ``*.npz``; ``*.xml``: Quantum ESPRESSO's ``data-file-schema.xml`` (recognised by its name or its
        root element ``espresso``, see `is_qe_xml`), otherwise a vasprun; ``*.json``: a pymatgen
        ``BandStructure`` (`read_pymatgen_bands`).
    n_electrons : float, optional
        Electrons per cell; overrides what the file says.
    keep_fermi_energy : bool
        Keep the file's Fermi energy as `BandStructure.fermi_energy` instead of recomputing it.
    allow_unconverged : bool
        QE XML only: accept a file whose SCF did not converge (see `read_qe_xml`).

    Returns
    -------
    BandStructure
        eigenvalues (n_spin, n_k, n_bands) eV, weights (n_k,) summing to 1, kpoints (n_k, 3) fractional.
        `read_qe_xml` also gives the structure and the code's metadata.

    Raises
    ------
    InputError
        Missing or unreadable file, unknown format, missing keys or inconsistent shapes, unconverged SCF.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"band file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        fields = _read_npz(p)
    elif suffix == ".xml" and is_qe_xml(p):
        return read_qe_xml(p, n_electrons, keep_fermi_energy, allow_unconverged).bands
    elif suffix == ".xml":
        fields = _read_vasprun(p)
    elif suffix == ".json":
        return read_pymatgen_bands(p, n_electrons, keep_fermi_energy).bands
    elif suffix in (".h5", ".hdf5"):
        raise InputError(f"{str(p)!r}: HDF5 stores are read with sporep_hpc.store.open_store, not read_bands")
    else:
        raise InputError(
            f"{str(p)!r}: unknown band file format {suffix!r}; expected .npz, vasprun .xml, QE "
            f"{_QE_NAME} or pymatgen BandStructure .json"
        )
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


# ---------------------------------------------------------------------- Quantum ESPRESSO XML
@dataclass(frozen=True, eq=False)
class DFTBands:
    """A band structure read from a DFT code's output, with what the store needs besides the bands.

    Attributes
    ----------
    bands : BandStructure
        eigenvalues (n_spin, n_k, n_bands) eV, weights (n_k,) summing to 1, kpoints (n_k, 3) fractional in
        the cell of `structure`, n_electrons; fermi_energy only with ``keep_fermi_energy=True``.
    structure : pymatgen Structure
        The calculation's (final) structure, Å.
    occupations : ndarray of shape (n_spin, n_k, n_bands), float64
        The code's occupations in electrons per state slot (≤ 2 with one channel of degeneracy 2, ≤ 1
        otherwise), in the order of ``bands.eigenvalues``; NaN for padded bands.
    source : str
        ``dft:<code>:<file>`` (DESIGN.md §8.2).
    code_version : str
        Version of the program that wrote the file ("" when the file does not say).
    occupations_kind : str
        The code's occupation scheme (QE: ``smearing``, ``fixed``, ``tetrahedra``, ``tetrahedra_opt``, ...).
    smearing : Smearing or None
        The code's smearing (width in eV) when `occupations_kind` is ``smearing``, else None.
    fermi_energies : tuple of float, eV
        The file's Fermi level: (up, down) with a fixed total magnetisation, the highest occupied level with
        fixed occupations, () when the file has none.
    spin : str
        ``"none"`` (one channel, degeneracy 2), ``"lsda"`` (up, down) or ``"noncollinear"`` (states dealt
        into two channels of degeneracy 1, see the module docstring).
    scf_converged : bool or None
        Whether the SCF converged; None when the file does not say (non-self-consistent runs).
    kpoint_grid : tuple of 6 int or None
        Monkhorst-Pack grid (n1, n2, n3, s1, s2, s3) the k-points were checked against, None without one.
    """

    bands: BandStructure
    structure: Any
    occupations: np.ndarray
    source: str
    code_version: str
    occupations_kind: str
    smearing: Smearing | None
    fermi_energies: tuple[float, ...]
    spin: str
    scf_converged: bool | None
    kpoint_grid: tuple[int, ...] | None

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description of the calculation (everything but the arrays and the structure)."""
        return {
            "source": self.source, "code_version": self.code_version,
            "occupations_kind": self.occupations_kind,
            "smearing": None if self.smearing is None else self.smearing.to_dict(),
            "fermi_energies": list(self.fermi_energies), "spin": self.spin,
            "scf_converged": self.scf_converged,
            "kpoint_grid": None if self.kpoint_grid is None else list(self.kpoint_grid),
        }


def is_qe_xml(path: str | os.PathLike) -> bool:
    """True for Quantum ESPRESSO XML output: named ``data-file-schema.xml`` or with root element ``espresso``.

    Only the first 4 kB are read; an unreadable file gives False (the reader then reports it).
    """
    p = Path(path)
    if p.name == _QE_NAME:
        return True
    try:
        with open(p, "rb") as fh:
            head = fh.read(_QE_SNIFF_BYTES)
    except OSError:
        return False
    return _QE_ROOT.match(head.removeprefix(b"\xef\xbb\xbf")) is not None


def read_qe_xml(path: str | os.PathLike, n_electrons: float | None = None, keep_fermi_energy: bool = False,
                allow_unconverged: bool = False) -> DFTBands:
    """Read Quantum ESPRESSO's XML output (``data-file-schema.xml``): bands, structure and occupations.

    Parameters
    ----------
    path : str or path-like
        The XML file (``<outdir>/<prefix>.save/data-file-schema.xml`` or a copy under any name).
    n_electrons : float, optional
        Electrons per cell; overrides the file's ``nelec``.
    keep_fermi_energy : bool
        Keep the file's Fermi energy as `BandStructure.fermi_energy` (refused with a fixed total
        magnetisation, which has two).
    allow_unconverged : bool
        Accept a file whose ``scf_conv/convergence_achieved`` is false.

    Returns
    -------
    DFTBands
        ``bands`` in eV with fractional k-points, ``structure`` in Å, the file's occupations, smearing and
        Fermi energies (module docstring for the conventions).

    Raises
    ------
    InputError
        Missing file, malformed XML, DOCTYPE or entity declarations, a missing element or attribute,
        non-numeric or non-finite values, inconsistent counts, k-points off the file's Monkhorst-Pack grid,
        an unknown smearing, or "SCF not converged" (unless `allow_unconverged`). The message names the
        file and the element.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"band file {str(p)!r} does not exist")
    root = _parse_qe_xml(p)
    out = _find(p, root, "output")
    converged = _scf_converged(p, out)
    if converged is False and not allow_unconverged:
        raise InputError(
            f"{str(p)!r}: SCF not converged (<output/convergence_info/scf_conv/convergence_achieved> is "
            "false); pass allow_unconverged=True (--allow-unconverged) to use its bands anyway"
        )
    structure, cell, alat = _qe_structure(p, out)
    bs = _find(p, out, "band_structure")
    spin, fields = _qe_bands(p, bs)
    fields["kpoints"] = fields["kpoints"] @ cell.T / alat  # f_j = a_j · k / alat (k in 2π/alat units)
    grid = _qe_check_grid(p, bs, fields["kpoints"])
    kind, smearing, fermi = _qe_occupations(p, bs)
    if len(fermi) == 1:
        fields["fermi_energy"] = fermi[0]
    elif keep_fermi_energy and len(fermi) == 2:
        raise InputError(
            f"{str(p)!r}: a fixed total magnetisation has two Fermi energies (<two_fermi_energies>) and a "
            "BandStructure holds one; read it without keep_fermi_energy"
        )
    creator = root.find("general_info/creator")
    return DFTBands(
        bands=_build(p, fields, n_electrons, keep_fermi_energy), structure=structure,
        occupations=_unsorted_guard(fields), source=f"dft:qe:{p}",
        code_version="" if creator is None else creator.get("VERSION", ""), occupations_kind=kind,
        smearing=smearing, fermi_energies=fermi, spin=spin, scf_converged=converged, kpoint_grid=grid,
    )


class _DoctypeRefused(Exception):
    """Raised from inside the XML parser on a DOCTYPE declaration (turned into an InputError)."""


class _NoDoctypeBuilder(ET.TreeBuilder):
    """ElementTree builder that stops at a DOCTYPE, before any entity of its internal subset is declared."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise _DoctypeRefused(name)


def _parse_qe_xml(p: Path) -> ET.Element:
    parser = ET.XMLParser(target=_NoDoctypeBuilder())
    try:
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 20):
                parser.feed(chunk)
        root = parser.close()
    except _DoctypeRefused as exc:
        raise InputError(
            f"{str(p)!r}: <!DOCTYPE {exc}> refused: QE XML has no DOCTYPE or entity declarations"
        ) from exc
    except ET.ParseError as exc:
        raise InputError(f"{str(p)!r}: malformed XML: {exc}") from exc
    except OSError as exc:
        raise InputError(f"{str(p)!r}: cannot read: {exc}") from exc
    if root.tag.rpartition("}")[2] != "espresso":
        raise InputError(
            f"{str(p)!r}: root element must be <espresso> (Quantum ESPRESSO XML); got <{root.tag}>"
        )
    units = root.get("Units")
    if units is not None and "hartree" not in units.lower():
        raise InputError(f"{str(p)!r}: Units must be Hartree atomic units; got {units!r}")
    return root


def _find(p: Path, parent: ET.Element, where: str, path: str | None = None) -> ET.Element:
    """Child `path` (default `where`) of `parent`; `where` is its path from the root, named in errors."""
    element = parent.find(where if path is None else path)
    if element is None:
        raise InputError(f"{str(p)!r}: element <{where}> missing")
    return element


def _numbers(p: Path, element: ET.Element, where: str, size: int | None = None) -> np.ndarray:
    """The whitespace-separated numbers of `element`'s text: finite, `size` of them when given."""
    text = element.text or ""
    try:
        values = np.array([float(t) for t in text.split()], dtype=np.float64)
    except ValueError as exc:
        raise InputError(f"{str(p)!r}: <{where}> must hold numbers; got {text.strip()[:60]!r}") from exc
    if size is not None and values.size != size:
        raise InputError(f"{str(p)!r}: <{where}> must hold {size} values; got {values.size}")
    if not np.all(np.isfinite(values)):
        raise InputError(f"{str(p)!r}: <{where}> must be finite; got {text.strip()[:60]!r}")
    return values


def _number(p: Path, parent: ET.Element, where: str, path: str) -> float:
    return float(_numbers(p, _find(p, parent, where, path), where, 1)[0])


def _count(p: Path, parent: ET.Element, where: str, path: str) -> int:
    """A positive whole number (a count of bands or k-points)."""
    value = _number(p, parent, where, path)
    if value < 1 or value != int(value):
        raise InputError(f"{str(p)!r}: <{where}> must be a whole number ≥ 1; got {value:g}")
    return int(value)


def _attribute(p: Path, element: ET.Element, where: str, name: str, kind: type = float) -> Any:
    """Attribute `name` of `element` converted with `kind` (float: finite; int: whole number)."""
    text = element.get(name)
    if text is None:
        raise InputError(f"{str(p)!r}: attribute {name} of <{where}> missing")
    try:
        value = kind(text.strip())
    except ValueError as exc:
        raise InputError(
            f"{str(p)!r}: attribute {name} of <{where}> must be {kind.__name__}; got {text!r}"
        ) from exc
    if kind is float and not math.isfinite(value):
        raise InputError(f"{str(p)!r}: attribute {name} of <{where}> must be finite; got {text!r}")
    return value


def _flag(p: Path, parent: ET.Element, where: str, path: str) -> bool:
    text = (_find(p, parent, where, path).text or "").strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise InputError(f"{str(p)!r}: <{where}> must be true or false; got {text!r}")
    return text in ("true", "1")


def _scf_converged(p: Path, out: ET.Element) -> bool | None:
    where = "output/convergence_info/scf_conv/convergence_achieved"
    if out.find("convergence_info/scf_conv") is None:
        log.debug("%s: no <output/convergence_info/scf_conv> (non-self-consistent run)", p)
        return None
    return _flag(p, out, where, "convergence_info/scf_conv/convergence_achieved")


def _element_symbol(p: Path, label: str) -> str:
    """Element of a QE species label, as pw.x reads it: two leading letters if they name one, else one."""
    from pymatgen.core.periodic_table import Element

    letters = re.match(r"[A-Za-z]*", label.strip()).group()  # type: ignore[union-attr]
    for n in (2, 1):
        symbol = letters[:n].capitalize()
        if len(symbol) == n and Element.is_valid_symbol(symbol):
            return symbol
    raise InputError(f"{str(p)!r}: species label {label!r} of <output/atomic_structure> names no element")


def _qe_structure(p: Path, out: ET.Element) -> tuple[Any, np.ndarray, float]:
    """pymatgen Structure (Å), cell vectors as rows (Bohr) and alat (Bohr) of ``output/atomic_structure``."""
    from pymatgen.core import Lattice, Structure

    where = "output/atomic_structure"
    structure = _find(p, out, where, "atomic_structure")
    alat = _attribute(p, structure, where, "alat")
    if alat <= 0:
        raise InputError(f"{str(p)!r}: attribute alat of <{where}> must be > 0 Bohr; got {alat}")
    cell = np.array([_numbers(p, _find(p, structure, f"{where}/cell/{a}", f"cell/{a}"), f"{where}/cell/{a}",
                              3) for a in ("a1", "a2", "a3")])
    atoms = _find(p, structure, f"{where}/atomic_positions", "atomic_positions").findall("atom")
    if not atoms:
        raise InputError(f"{str(p)!r}: element <{where}/atomic_positions/atom> missing")
    labels = [atom.get("name", "") for atom in atoms]
    positions = np.array([_numbers(p, atom, f"{where}/atomic_positions/atom[{i + 1}]", 3)
                          for i, atom in enumerate(atoms)])
    species = [_element_symbol(p, label) for label in labels]
    try:
        lattice = Lattice(cell * BOHR_ANGSTROM)
        return (Structure(lattice, species, positions * BOHR_ANGSTROM, coords_are_cartesian=True,
                          labels=labels), cell, alat)
    except ValueError as exc:  # e.g. a singular cell
        raise InputError(f"{str(p)!r}: <{where}> is not a valid structure: {exc}") from exc


def _qe_bands(p: Path, bs: ET.Element) -> tuple[str, dict[str, Any]]:
    """Spin layout and the fields of `_build` (eigenvalues eV, weights, Cartesian k in 2π/alat, ...)."""
    where = "output/band_structure"
    lsda = _flag(p, bs, f"{where}/lsda", "lsda")
    noncolin = _flag(p, bs, f"{where}/noncolin", "noncolin")
    if lsda and noncolin:
        raise InputError(f"{str(p)!r}: <{where}> has both lsda and noncolin true")
    if lsda:
        counts = [_count(p, bs, f"{where}/{tag}", tag) for tag in ("nbnd_up", "nbnd_dw")]
    else:
        counts = [_count(p, bs, f"{where}/nbnd", "nbnd")]
    entries = bs.findall("ks_energies")
    if not entries:
        raise InputError(f"{str(p)!r}: element <{where}/ks_energies> missing")
    if bs.find("nks") is not None and (nks := _count(p, bs, f"{where}/nks", "nks")) != len(entries):
        raise InputError(f"{str(p)!r}: <{where}/nks> = {nks} but {len(entries)} <ks_energies>")
    kpoints, weights, eig, occ = [], [], [], []
    for i, entry in enumerate(entries):
        at = f"{where}/ks_energies[{i + 1}]"
        k = _find(p, entry, f"{at}/k_point", "k_point")
        kpoints.append(_numbers(p, k, f"{at}/k_point", 3))
        weights.append(_attribute(p, k, f"{at}/k_point", "weight"))
        eig.append(_numbers(p, _find(p, entry, f"{at}/eigenvalues", "eigenvalues"), f"{at}/eigenvalues",
                            sum(counts)))
        occ.append(_numbers(p, _find(p, entry, f"{at}/occupations", "occupations"), f"{at}/occupations",
                            sum(counts)))
    eig_k, occ_k = np.array(eig) * HARTREE_EV, np.array(occ)
    if lsda:
        spin = "lsda"
        up = counts[0]
        channels = [(eig_k[:, :up], occ_k[:, :up]), (eig_k[:, up:], occ_k[:, up:])]
    elif noncolin:
        spin = "noncollinear"
        order = np.argsort(eig_k, axis=1, kind="stable")
        eig_k, occ_k = np.take_along_axis(eig_k, order, 1), np.take_along_axis(occ_k, order, 1)
        channels = [(eig_k[:, 0::2], occ_k[:, 0::2]), (eig_k[:, 1::2], occ_k[:, 1::2])]
    else:
        spin = "none"
        channels = [(eig_k, 2.0 * occ_k)]  # QE writes occupations per state in [0, 1]; a band holds 2
    width = max(e.shape[1] for e, _ in channels)

    def padded(i: int) -> np.ndarray:  # eigenvalues (i = 0) or occupations (i = 1), NaN-padded to `width`
        return np.stack([np.pad(c[i], ((0, 0), (0, width - c[i].shape[1])), constant_values=np.nan)
                         for c in channels])

    fields = {
        "bands": padded(0), "occupations": padded(1),
        "weights": np.array(weights), "kpoints": np.array(kpoints),
        "n_electrons": _number(p, bs, f"{where}/nelec", "nelec"),
    }
    return spin, fields


def _qe_check_grid(p: Path, bs: ET.Element, fractional: np.ndarray) -> tuple[int, ...] | None:
    """The Monkhorst-Pack grid of ``starting_k_points`` after checking that every k-point lies on it."""
    where = "output/band_structure/starting_k_points/monkhorst_pack"
    mp = bs.find("starting_k_points/monkhorst_pack")
    if mp is None:
        return None
    grid = tuple(_attribute(p, mp, where, name, int) for name in ("nk1", "nk2", "nk3", "k1", "k2", "k3"))
    if min(grid[:3]) < 1:
        raise InputError(f"{str(p)!r}: <{where}> nk1..nk3 must be ≥ 1; got {grid[:3]}")
    steps = fractional * np.array(grid[:3]) - 0.5 * np.array(grid[3:])
    miss = float(np.max(np.abs(steps - np.round(steps))))
    if miss > _MP_TOLERANCE:
        raise InputError(
            f"{str(p)!r}: k-points converted to fractional (a_j · k / alat) miss the file's "
            f"{grid[0]}×{grid[1]}×{grid[2]} Monkhorst-Pack grid by {miss:.2e} (> {_MP_TOLERANCE:g}); "
            "inconsistent alat, cell or k-points"
        )
    return grid


def _qe_occupations(p: Path, bs: ET.Element) -> tuple[str, Smearing | None, tuple[float, ...]]:
    """Occupation kind, smearing (eV) and the file's Fermi energies (eV)."""
    where = "output/band_structure"
    kind = (_find(p, bs, f"{where}/occupations_kind", "occupations_kind").text or "").strip()
    smearing = None
    if kind == "smearing":
        element = _find(p, bs, f"{where}/smearing", "smearing")
        name = (element.text or "").strip()
        if name.lower() not in _QE_SMEARING:
            known = ", ".join(sorted(_QE_SMEARING))
            raise InputError(f"{str(p)!r}: <{where}/smearing> must be one of {known}; got {name!r}")
        degauss = _attribute(p, element, f"{where}/smearing", "degauss")
        if degauss <= 0:
            raise InputError(f"{str(p)!r}: degauss of <{where}/smearing> must be > 0 Ha; got {degauss}")
        ours, order = _QE_SMEARING[name.lower()]
        smearing = Smearing(ours, degauss * HARTREE_EV, order)
    tags = ["two_fermi_energies", "fermi_energy", "highestOccupiedLevel"]
    if kind == "fixed":
        tags = ["highestOccupiedLevel", "two_fermi_energies", "fermi_energy"]
    for tag in tags:
        element = bs.find(tag)
        if element is not None:
            size = 2 if tag == "two_fermi_energies" else 1
            fermi = _numbers(p, element, f"{where}/{tag}", size) * HARTREE_EV
            return kind, smearing, tuple(float(e) for e in fermi)
    return kind, smearing, ()


# ---------------------------------------------------------------------- pymatgen BandStructure JSON
def is_pymatgen_bands(data: Any) -> bool:
    """True for the decoded JSON of a pymatgen band structure (``@class`` a BandStructure class; uniform or
    line mode: `read_pymatgen_bands` refuses the latter with its reason)."""
    return isinstance(data, dict) and data.get("@class") in _PMG_UNIFORM + _PMG_LINE_MODE


def read_pymatgen_bands(path: str | os.PathLike, n_electrons: float | None = None,
                        keep_fermi_energy: bool = False) -> DFTBands:
    """Read a pymatgen ``BandStructure`` JSON file on a uniform k-mesh (module docstring).

    Parameters
    ----------
    path : str or path-like
        JSON of ``BandStructure.as_dict()`` (e.g. from the Materials Project API).
    n_electrons : float, optional
        Electrons per cell; default: the states below the file's ``efermi``, rounded to an integer.
    keep_fermi_energy : bool
        Keep the file's ``efermi`` as `BandStructure.fermi_energy`.

    Returns
    -------
    DFTBands
        ``bands`` in eV with fractional k-points and weights from the mesh, ``structure`` (None when the file
        has none), occupations NaN (the file has none), ``fermi_energies`` = (efermi,).

    Raises
    ------
    InputError
        Missing or malformed file, not a band structure, a line-mode band structure, k-points that are not a
        uniform mesh or its irreducible part.
    """
    import json

    p = Path(path)
    if not p.is_file():
        raise InputError(f"band file {str(p)!r} does not exist")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{str(p)!r}: not JSON: {exc}") from exc
    if not is_pymatgen_bands(data):
        raise InputError(f"{str(p)!r}: not a pymatgen BandStructure (@class must be BandStructure)")
    if data["@class"] in _PMG_LINE_MODE or data.get("branches"):
        raise InputError(
            f"{str(p)!r}: a line-mode band structure ({data['@class']}: k-points along lines, no weights) is "
            "not a DOS input; use a uniform k-mesh band structure (line_mode=False)"
        )
    try:
        from pymatgen.electronic_structure.bandstructure import BandStructure as PmgBands
        from pymatgen.electronic_structure.core import Spin

        bs = PmgBands.from_dict(data)
        spins = [s for s in (Spin.up, Spin.down) if s in bs.bands]
        eig = np.stack([np.asarray(bs.bands[s], dtype=float).T for s in spins])  # (n_spin, n_k, n_bands)
        frac = np.array([k.frac_coords for k in bs.kpoints], dtype=float).reshape(-1, 3)
    except Exception as exc:  # pymatgen raises many types (KeyError, ValueError, TypeError, ...)
        raise InputError(f"{str(p)!r}: cannot read the BandStructure: {type(exc).__name__}: {exc}") from exc
    weights, grid = _pymatgen_weights(p, frac, bs.structure)
    efermi = None if bs.efermi is None else float(bs.efermi)
    fields: dict[str, Any] = {"bands": eig, "weights": weights, "kpoints": frac}
    if efermi is not None and math.isfinite(efermi):
        fields["fermi_energy"] = efermi
        if n_electrons is None:
            degeneracy = 2.0 if eig.shape[0] == 1 else 1.0
            count = degeneracy * float(np.einsum("skn,k->", (eig <= efermi).astype(float), weights))
            n_electrons = float(round(count))
            log.debug("%s: %g electrons from the states below efermi (count %.6f)", p, n_electrons, count)
    return DFTBands(
        bands=_build(p, fields, n_electrons, keep_fermi_energy), structure=bs.structure,
        occupations=np.full(eig.shape, np.nan), source=f"dft:pymatgen:{p}", code_version="",
        occupations_kind="", smearing=None, fermi_energies=() if "fermi_energy" not in fields else (efermi,),
        spin="lsda" if len(spins) == 2 else "none", scf_converged=None, kpoint_grid=grid,
    )


def _pymatgen_weights(p: Path, frac: np.ndarray, structure: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """Weights (n_k,) of k-points forming a full Monkhorst-Pack mesh or its irreducible part, and the mesh."""
    from fractions import Fraction

    mesh, shift = [], []
    for j in range(3):
        values = [Fraction(float(v)).limit_denominator(2 * _PMG_GRID_MAX) for v in frac[:, j]]
        n = math.lcm(*(v.denominator for v in values))
        s = 0
        if n % 2 == 0 and all((v * n).numerator % 2 for v in values):
            n, s = n // 2, 1  # every coordinate an odd multiple of 1/n: a mesh shifted by half a step
        if n > _PMG_GRID_MAX:
            raise InputError(f"{str(p)!r}: k-points are not on a uniform mesh (axis {j + 1})")
        mesh.append(n)
        shift.append(s)
    grid = (*mesh, *shift)
    total = mesh[0] * mesh[1] * mesh[2]
    steps = frac * np.array(mesh) - 0.5 * np.array(shift)
    if np.max(np.abs(steps - np.round(steps))) > _MP_TOLERANCE:
        raise InputError(f"{str(p)!r}: k-points are not on a uniform mesh")
    index = np.mod(np.round(steps).astype(np.int64), mesh)
    flat = (index[:, 0] * mesh[1] + index[:, 1]) * mesh[2] + index[:, 2]
    if len(np.unique(flat)) != len(flat):
        raise InputError(f"{str(p)!r}: k-points repeat a point of the {mesh[0]}×{mesh[1]}×{mesh[2]} mesh")
    if len(flat) == total:
        return np.full(len(flat), 1.0 / total), grid
    if structure is None:
        raise InputError(
            f"{str(p)!r}: k-points are part of a mesh and the file has no structure to weight them"
        )
    import spglib

    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    mapping, points = spglib.get_ir_reciprocal_mesh(mesh, cell, is_shift=shift, is_time_reversal=True)
    # spglib numbers grid point (a, b, c) as a + b·n1 + c·n1·n2 (a, b, c in (-n/2, n/2])
    address = np.mod(np.asarray(points), mesh)
    order = {(int(a), int(b), int(c)): i for i, (a, b, c) in enumerate(address)}
    orbits = np.array([mapping[order[tuple(int(x) for x in row)]] for row in index])
    stars = np.bincount(np.asarray(mapping))
    if len(np.unique(orbits)) != len(orbits) or len(orbits) != np.count_nonzero(stars):
        raise InputError(
            f"{str(p)!r}: {len(orbits)} k-points are neither the full {mesh[0]}×{mesh[1]}×{mesh[2]} mesh "
            f"({total}) nor its irreducible part ({np.count_nonzero(stars)} points)"
        )
    return stars[orbits] / float(total), grid


def qe_xml_structure(path: str | os.PathLike) -> Any:
    """The final structure (``output/atomic_structure``, Å) of a QE XML file, without reading its bands.

    Raises
    ------
    InputError
        As `read_qe_xml` for the file and the structure elements.
    """
    p = Path(path)
    return _qe_structure(p, _find(p, _parse_qe_xml(p), "output"))[0]
