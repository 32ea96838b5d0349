"""Reading structure files (pymatgen) into input records.

Inputs are files (CIF, POSCAR/CONTCAR/*.vasp, pymatgen JSON, extended XYZ) or
directories searched recursively. Every structure gets a stable id:

- a file given on the command line: its stem (the parent directory's name for the
  generic names POSCAR, CONTCAR and vasprun), with ``-<i>`` appended when the file
  holds several structures (``-0``, ``-1``, ...);
- a file found under a directory: its path relative to that directory, without the
  suffix (``subdir/mp-149``), with the same ``-<i>`` rule.

Imported band files (``*.npz``, ``vasprun*.xml``, our own ``*.h5`` stores) are
recognised here (`InputRecord.kind` = ``"bands"``) but read by the layers that know
band structures (sporep_hpc.pipeline); a vasprun.xml record carries its final
structure (written to /structures of the store with the imported bands).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .records import InputRecord, clean_id

log = logging.getLogger(__name__)


STRUCTURE_SUFFIXES = (".cif", ".json", ".vasp", ".poscar", ".xyz", ".extxyz")


STRUCTURE_PREFIXES = ("POSCAR", "CONTCAR")


BAND_SUFFIXES = (".npz", ".h5", ".hdf5")


GENERIC_STEMS = ("POSCAR", "CONTCAR", "vasprun")


def is_band_file(path: Path) -> bool:
    """True for files that hold band structures rather than structures."""
    name = path.name.lower()
    return path.suffix.lower() in BAND_SUFFIXES or (name.startswith("vasprun") and name.endswith(".xml"))


def is_structure_file(path: Path) -> bool:
    """True for file names that look like a structure format we read."""
    return path.suffix.lower() in STRUCTURE_SUFFIXES or path.name.upper().startswith(STRUCTURE_PREFIXES)


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
