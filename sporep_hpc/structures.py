"""Reading crystal structures (pymatgen) and validating one structure.

Lowest layer of the package: no MPI, no HDF5, no numerics beyond geometry.

Inputs are files (CIF, POSCAR/CONTCAR/*.vasp, pymatgen JSON, extended XYZ) or
directories searched recursively. Every structure gets a stable id:

- a file given on the command line: its stem (the parent directory's name for the
  generic names POSCAR, CONTCAR and vasprun), with ``-<i>`` appended when the file
  holds several structures (``-0``, ``-1``, ...);
- a file found under a directory: its path relative to that directory, without the
  suffix (``subdir/mp-149``), with the same ``-<i>`` rule.

Imported band files (``*.npz``, ``vasprun*.xml``, our own ``*.h5`` stores) are
recognised here (`InputRecord.kind` = ``"bands"``) but read by the layers that know
band structures (sporep_hpc.parallel.tasks); a vasprun.xml record carries its final
structure (written to /structures of the store with the imported bands).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import check_interval
from .errors import InputError

log = logging.getLogger(__name__)

#: Closest allowed distance between two atoms (periodic images included), Å.
MIN_DISTANCE = 0.5
#: Smallest allowed cell volume relative to the product of the lattice vector lengths.
MIN_CELL_FLATNESS = 1e-3
#: Shortest allowed lattice vector, Å (shorter ones put an atom's images closer than any bond).
MIN_LATTICE_LENGTH = 1e-3
#: Longest allowed lattice vector, Å (1 mm): beyond it the lattice sums and k-grids mean nothing.
MAX_LATTICE_LENGTH = 1e7
#: Largest allowed |fractional coordinate|: atoms far outside the cell (unwrapped trajectories,
#: corrupted files) would make the lattice sums enumerate that many more translations.
MAX_FRACTIONAL = 10.0

STRUCTURE_SUFFIXES = (".cif", ".json", ".vasp", ".poscar", ".xyz", ".extxyz")
STRUCTURE_PREFIXES = ("POSCAR", "CONTCAR")
BAND_SUFFIXES = (".npz", ".h5", ".hdf5")
GENERIC_STEMS = ("POSCAR", "CONTCAR", "vasprun")


@dataclass(frozen=True)
class InputRecord:
    """One input item before any computation.

    Attributes
    ----------
    id : str
        Stable identifier, unique in a run (at most 64 bytes of UTF-8).
    source : str
        File the item came from (or ``examples:<spec>``).
    kind : str
        ``"structure"`` (computed from the structure), ``"bands"`` (imported band file:
        `source` is read by the band readers) or ``"failed"`` (unreadable: see `error`).
    structure : pymatgen Structure, CompactStructure or None
        The structure (None for unreadable inputs and for band files without one; vasprun.xml
        and our stores have one); `as_structure` gives the pymatgen object in either case.
    error : str
        One-line reason when `kind` is ``"failed"``, else empty.
    properties : dict or None
        Extra per-structure properties (built-in sets; ``info`` of extended XYZ frames; the
        ``properties`` of pymatgen JSON structures), stored as JSON in /structures/properties.
    """

    id: str
    source: str
    kind: str
    structure: Any = None
    error: str = ""
    properties: Any = None


@dataclass(frozen=True, eq=False)
class CompactStructure:
    """An ordered structure as plain arrays: what the MPI driver keeps for every input on every rank.

    A pymatgen Structure of 56 atoms holds about 47 kB of Python objects; this holds about 2 kB, so
    10^5 inputs fit on each rank. `to_structure` rebuilds the identical Structure (same lattice and
    fractional coordinates, species with their oxidation states); site properties are dropped.

    Attributes
    ----------
    lattice : ndarray of shape (3, 3), float64, Å
        Lattice vectors as rows.
    species : tuple of str
        One species string per site (e.g. "Ba", "Ba2+").
    frac_coords : ndarray of shape (n_atoms, 3), float64
    pbc : tuple of 3 bool
    """

    lattice: np.ndarray
    species: tuple
    frac_coords: np.ndarray
    pbc: tuple = (True, True, True)

    def __len__(self) -> int:
        return len(self.species)

    @classmethod
    def from_structure(cls, structure: Any) -> Any:
        """The compact form of an ordered pymatgen Structure (a disordered one is returned unchanged)."""
        if not structure.is_ordered:
            return structure
        return cls(
            np.array(structure.lattice.matrix, dtype=np.float64),
            tuple(str(site.specie) for site in structure),
            np.array(structure.frac_coords, dtype=np.float64).reshape(-1, 3),
            tuple(bool(p) for p in getattr(structure.lattice, "pbc", (True, True, True))),
        )

    def to_structure(self) -> Any:
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice, pbc=self.pbc), list(self.species), self.frac_coords)


def _json_default(value: Any) -> Any:
    """JSON form of numpy scalars/arrays (and, as a last resort, str) for `properties_json`."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def properties_json(properties: Any) -> str:
    """Canonical JSON text (sorted keys, compact) of a record's properties; "" for none/empty."""
    if not properties:
        return ""
    return json.dumps(properties, sort_keys=True, separators=(",", ":"), default=_json_default)


def as_structure(obj: Any) -> Any:
    """A pymatgen Structure from a CompactStructure (anything else is returned unchanged)."""
    return obj.to_structure() if isinstance(obj, CompactStructure) else obj


def compact_record(record: InputRecord) -> InputRecord:
    """`record` with its structure in compact form (see CompactStructure); a structure pymatgen cannot
    take apart is kept as it is (validation then fails it with its reason)."""
    if record.structure is None or isinstance(record.structure, CompactStructure):
        return record
    try:
        compact = CompactStructure.from_structure(record.structure)
    except Exception as exc:  # pymatgen raises many types on a broken structure
        log.debug("%s: kept as a pymatgen structure (%s: %s)", record.id, type(exc).__name__, exc)
        return record
    return replace(record, structure=compact)


def is_band_file(path: Path) -> bool:
    """True for files that hold band structures rather than structures."""
    name = path.name.lower()
    return path.suffix.lower() in BAND_SUFFIXES or (name.startswith("vasprun") and name.endswith(".xml"))


def is_structure_file(path: Path) -> bool:
    """True for file names that look like a structure format we read."""
    return path.suffix.lower() in STRUCTURE_SUFFIXES or path.name.upper().startswith(STRUCTURE_PREFIXES)


def _is_control(char: str) -> bool:
    """True for control characters (Cc) and lone surrogates (Cs: undecodable bytes of a file name)."""
    return unicodedata.category(char) in ("Cc", "Cs")


def clean_id(text: str) -> str:
    """`text` with every control character (newline, tab, NUL, U+001F, ...) and every byte of a
    file name that is not UTF-8 (a lone surrogate) replaced by ``_``.

    Ids never hold control characters: they are printed on one line, and the journal marks
    k-point chunks with one (`sporep_hpc.parallel.tasks.chunk_id`), so no structure id can
    look like a chunk of another.
    """
    return "".join("_" if _is_control(c) else c for c in text)


def _stem(path: Path) -> str:
    stem = path.name.split(".")[0] if path.name.upper().startswith(STRUCTURE_PREFIXES) else path.stem
    if stem.startswith(GENERIC_STEMS) and path.parent.name:
        return clean_id(path.parent.name)
    return clean_id(stem)


def _relative_id(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    if path.name.upper().startswith(STRUCTURE_PREFIXES) or path.name.startswith("vasprun"):
        return clean_id(rel.parent.as_posix()) if rel.parent.as_posix() != "." else _stem(path)
    return clean_id(rel.with_suffix("").as_posix())


#: Keys of an extended XYZ comment line that describe the frame layout, not the structure.
_EXTXYZ_LAYOUT_KEYS = ("lattice", "properties", "pbc")


def _extxyz_value(text: str) -> Any:
    """An extended XYZ info value: bool (T/F/True/False), int, float, list of numbers, or the string."""
    if text in ("T", "True", "true"):
        return True
    if text in ("F", "False", "false"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    parts = text.split()
    if len(parts) > 1:
        try:
            return [float(v) for v in parts]
        except ValueError:
            pass
    return text


def _extxyz_info(comment: str) -> dict[str, Any]:
    """The ``key=value`` pairs of an extended XYZ comment line, except the layout keys (Lattice, ...)."""
    try:
        tokens = shlex.split(comment)
    except ValueError:  # unbalanced quotes: no info rather than no structure
        return {}
    info = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if sep and key and key.lower() not in _EXTXYZ_LAYOUT_KEYS:
            info[key] = _extxyz_value(value)
    return info


_EXTXYZ_PBC = re.compile(r'(?:^|\s)pbc="([^"]*)"', re.IGNORECASE)


def _extxyz_pbc(comment: str) -> tuple[bool, bool, bool] | None:
    """The ``pbc="T T F"`` of an extended XYZ comment line: periodic in 3-D when absent, None when
    it is not three flags (T/F, True/False, 1/0)."""
    m = _EXTXYZ_PBC.search(comment)
    if m is None:
        return (True, True, True)
    flags = m.group(1).upper().split()
    if len(flags) != 3 or any(f not in ("T", "F", "TRUE", "FALSE", "1", "0") for f in flags):
        return None
    return tuple(f in ("T", "TRUE", "1") for f in flags)  # type: ignore[return-value]


def _read_extxyz(path: Path) -> list[Any]:
    """Frames of an extended XYZ file (``Lattice="..."`` and a ``species:S:1:pos:R:3`` prefix)."""
    from pymatgen.core import Lattice, Structure

    lines = path.read_text().splitlines()
    frames, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        n = int(lines[i].split()[0])
        comment = lines[i + 1]
        if 'Lattice="' not in comment:
            raise InputError(f"{path}: frame {len(frames)} has no Lattice=\"...\" (not periodic)")
        lattice = np.array(comment.split('Lattice="')[1].split('"')[0].split(), dtype=float).reshape(3, 3)
        species, coords = [], []
        for line in lines[i + 2 : i + 2 + n]:
            parts = line.split()
            species.append(parts[0])
            coords.append([float(v) for v in parts[1:4]])
        if len(species) != n:
            raise InputError(f"{path}: frame {len(frames)} has {len(species)} atoms, header says {n}")
        pbc = _extxyz_pbc(comment)
        if pbc is None:
            raise InputError(f"{path}: frame {len(frames)}: pbc must be three of T/F")
        lat, info = Lattice(lattice, pbc=pbc), _extxyz_info(comment)
        frames.append(Structure(lat, species, coords, coords_are_cartesian=True, properties=info))
        i += 2 + n
    if not frames:
        raise InputError(f"{path}: no frames")
    return frames


def read_file(path: str | Path) -> list[Any]:
    """All structures in one file, as pymatgen Structures.

    Raises
    ------
    InputError
        When the file is missing or cannot be parsed (the message names the file).
    """
    from pymatgen.core import Structure

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if suffix in (".xyz", ".extxyz"):
                structures = _read_extxyz(path)
            elif suffix == ".cif":
                from pymatgen.io.cif import CifParser

                parser = CifParser(path)
                parse = getattr(parser, "parse_structures", None)
                structures = parse(primitive=False) if parse else parser.get_structures(primitive=False)
            elif suffix == ".json":
                import json

                data = json.loads(path.read_text())
                items = data if isinstance(data, list) else [data]
                structures = [Structure.from_dict(d) for d in items]
            else:
                structures = [Structure.from_file(path)]
        for w in caught:
            log.debug("%s: %s", path, w.message)
    except InputError:
        raise
    except Exception as exc:  # pymatgen raises many types (ValueError, KeyError, IndexError, ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: unreadable ({reason})") from exc
    if not structures:
        raise InputError(f"{path}: no structure found")
    return list(structures)


def is_vasprun(path: Path) -> bool:
    """True for ``vasprun*.xml`` (a VASP run: band structure and structure)."""
    name = path.name.lower()
    return name.startswith("vasprun") and name.endswith(".xml")


def vasprun_structure(path: str | Path) -> Any:
    """The final structure of a vasprun.xml (pymatgen ``Vasprun.final_structure``), or None when it
    cannot be read: the band reader then reports the file's problem as the structure's failure.

    Only the structures are parsed (no eigenvalues, DOS or projections; no POTCAR lookup).
    """
    try:
        from pymatgen.io.vasp.outputs import Vasprun

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about unconverged or truncated runs
            run = Vasprun(
                str(path), parse_dos=False, parse_eigen=False, parse_projected_eigen=False,
                parse_potcar_file=False,
            )
        structure = run.final_structure
    except Exception as exc:  # pymatgen raises many types on a damaged file
        log.debug("%s: no structure read (%s)", path, exc)
        return None
    return structure if len(structure) else None


def _records_from_file(path: Path, base_id: str) -> list[InputRecord]:
    if is_band_file(path):
        structure = vasprun_structure(path) if is_vasprun(path) else None
        return [InputRecord(id=base_id, source=str(path), kind="bands", structure=structure)]
    try:
        structures = read_file(path)
    except InputError as exc:
        return [InputRecord(id=base_id, source=str(path), kind="failed", error=str(exc))]

    def record(id, s):
        try:  # extxyz info, pymatgen JSON properties
            props = dict(getattr(s, "properties", None) or {}) or None
        except (TypeError, ValueError):
            props = {"properties": str(s.properties)}
        return InputRecord(id=id, source=str(path), kind="structure", structure=s, properties=props)

    if len(structures) == 1:
        return [record(base_id, structures[0])]
    return [record(f"{base_id}-{i}", s) for i, s in enumerate(structures)]


def list_input_files(paths: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """(file, base id) of every input file, in input order (directories searched recursively, sorted).

    Only names are looked at (cheap); a path that does not exist raises InputError.
    """
    out: list[tuple[Path, str]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files = sorted(
                f for f in path.rglob("*") if f.is_file() and (is_structure_file(f) or is_band_file(f))
            )
            if not files:
                log.warning("%s: no structure or band files found", path)
            out.extend((f, _relative_id(f, path)) for f in files)
        elif path.is_file():
            out.append((path, _stem(path)))
        else:
            raise InputError(f"{path}: no such file or directory")
    return out


def records_from_file(path: str | Path, base_id: str) -> list[InputRecord]:
    """The input records of one file (one per structure; one "failed" record if unreadable)."""
    return _records_from_file(Path(path), base_id)


def collect_inputs(paths: Iterable[str | Path]) -> list[InputRecord]:
    """Input records for files and directories (searched recursively, sorted).

    Unreadable files become records of kind ``"failed"``; a path that does not exist
    raises InputError (nothing can be said about it). Ids are not checked for
    uniqueness here: see `check_unique_ids`.
    """
    return [r for path, base in list_input_files(paths) for r in _records_from_file(path, base)]


def check_unique_ids(records: Sequence[InputRecord], max_bytes: int = 64) -> None:
    """Raise InputError if two records share an id, or an id is empty, longer than `max_bytes`
    or holds a control character (ids made from file names never do: see `clean_id`)."""
    seen: dict[str, str] = {}
    for r in records:
        if not r.id or len(r.id.encode()) > max_bytes:
            raise InputError(f"id {r.id!r} from {r.source} must be 1 to {max_bytes} bytes long")
        if any(_is_control(c) for c in r.id):
            raise InputError(f"id {r.id!r} from {r.source} must not contain control characters")
        if r.id in seen:
            raise InputError(f"duplicate id {r.id!r}: from {seen[r.id]} and from {r.source}")
        seen[r.id] = r.source


def read_structures(path_or_paths: str | Path | Iterable[str | Path]) -> list[Any]:
    """All structures in the given files and directories (public API, DESIGN §5b).

    Parameters
    ----------
    path_or_paths : path or iterable of paths
        Files (CIF, POSCAR/CONTCAR, pymatgen JSON, extended XYZ) or directories.

    Returns
    -------
    list of pymatgen Structure, in input order (directories sorted by path).

    Raises
    ------
    InputError
        For the first unreadable file.
    """
    paths = [path_or_paths] if isinstance(path_or_paths, (str, Path)) else list(path_or_paths)
    out = []
    for record in collect_inputs(paths):
        if record.kind == "failed":
            raise InputError(record.error)
        if record.kind == "structure":
            out.append(record.structure)
    return out


def check_structure(
    structure: Any, name: str, *, max_atoms: int | None = None, min_distance: float = MIN_DISTANCE
) -> None:
    """Raise InputError (naming the structure) unless `structure` can be computed.

    Checks, in this order: at least one atom; ordered sites (no partial occupancy); real elements
    (no dummy species); a periodic 3-D cell; a finite lattice with vectors of MIN_LATTICE_LENGTH to
    MAX_LATTICE_LENGTH Å and a volume of at least MIN_CELL_FLATNESS times the product of their
    lengths (not flat); finite fractional coordinates within ±MAX_FRACTIONAL; at most `max_atoms`
    atoms; no two atoms (periodic images included) closer than `min_distance` Å. After these, the
    kernels see clean input. The basis check (element without basis functions) is done where the
    basis is known, the k-point count where the grid is made (sporep_hpc.kpoints).
    """
    if max_atoms is not None:
        check_interval("max_atoms", max_atoms, 1, None, closed="left", integer=True)
    check_interval("min_distance", min_distance, 0.0, None, closed="left", unit="Å")
    prefix = f"structure {name!r}"
    n_atoms = len(structure)
    if n_atoms == 0:
        raise InputError(f"{prefix}: no atoms")
    if not structure.is_ordered:
        raise InputError(f"{prefix}: partial occupancy (disordered sites) is not supported")
    from pymatgen.core import Element

    symbols = {str(site.specie): getattr(site.specie, "symbol", "") for site in structure}
    dummies = sorted(name for name, symbol in symbols.items() if not Element.is_valid_symbol(symbol))
    if dummies:
        raise InputError(f"{prefix}: unknown element(s) {', '.join(dummies)} (not in the periodic table)")
    lattice = structure.lattice
    pbc = getattr(lattice, "pbc", (True, True, True))
    if not all(pbc):
        raise InputError(f"{prefix}: cell is not periodic in 3 dimensions (pbc={tuple(pbc)})")
    matrix = np.asarray(lattice.matrix, dtype=np.float64)
    if not np.all(np.isfinite(matrix)):
        raise InputError(f"{prefix}: lattice has non-finite entries ({matrix.tolist()})")
    lengths = np.linalg.norm(matrix, axis=1)
    if np.any(lengths < MIN_LATTICE_LENGTH) or np.any(lengths > MAX_LATTICE_LENGTH):
        shown = [float(f"{x:.4g}") for x in lengths]
        raise InputError(
            f"{prefix}: lattice vector lengths {shown} Å outside [{MIN_LATTICE_LENGTH:g}, "
            f"{MAX_LATTICE_LENGTH:g}] Å"
        )
    volume = abs(float(np.linalg.det(matrix)))
    if volume < MIN_CELL_FLATNESS * float(np.prod(lengths)):
        raise InputError(f"{prefix}: degenerate (flat) cell, volume {volume:.4g} Å^3")
    frac = np.asarray(structure.frac_coords, dtype=np.float64)
    if not np.all(np.isfinite(frac)):
        raise InputError(f"{prefix}: non-finite atomic coordinates")
    worst = float(np.max(np.abs(frac)))
    if worst > MAX_FRACTIONAL:
        raise InputError(
            f"{prefix}: fractional coordinate {worst:.4g} outside [-{MAX_FRACTIONAL:g}, {MAX_FRACTIONAL:g}] "
            "(wrap the atoms into the cell)"
        )
    if max_atoms is not None and n_atoms > max_atoms:
        raise InputError(f"{prefix}: {n_atoms} atoms, more than max_atoms={max_atoms}")
    if min_distance > 0:
        d = closest_distance(structure, min_distance)
        if d < min_distance:
            raise InputError(f"{prefix}: atoms {d:.3f} Å apart, closer than {min_distance} Å")


def closest_distance(structure: Any, cutoff: float) -> float:
    """Shortest distance between two atoms, periodic images included, if below `cutoff` (else inf), Å."""
    _, _, _, dist = structure.get_neighbor_list(r=cutoff, exclude_self=True)
    return float(np.min(dist)) if len(dist) else float("inf")
