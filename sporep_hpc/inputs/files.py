"""Reading structure and band files, and calculation folders, into input records.

Readers, by file:

- pymatgen: CIF, POSCAR/CONTCAR/``*.vasp``/``*.poscar``, pymatgen ``Structure`` JSON (one object or a list);
- ASE (``ase.io.read``) for every other structure format it knows: extended XYZ (every frame; ``info``
  keys and the calculator's scalar results such as ``energy`` become properties), ASE trajectories
  (``.traj``), pw.x inputs (``.pwi`` or any name ASE recognises as ``espresso-in``, e.g. ``.in``) and
  outputs (``.pwo``, ``espresso-out``; in directories ``.in``/``.out`` files are looked into), ``.xsf``,
  ASE databases (``.db``: one structure per row, properties from its key-value pairs), and any other file
  given by name whose content ASE recognises;
- band files (`InputRecord.kind` ``"bands"``, read by sporep_hpc.pipeline through sporep_hpc.bandfiles):
  ``*.npz``, ``vasprun*.xml``, Quantum ESPRESSO XML (``data-file-schema.xml`` or any ``.xml`` whose root
  is ``<espresso>``), pymatgen ``BandStructure`` JSON and our own ``*.h5`` stores. A vasprun.xml, QE XML or
  BandStructure JSON record carries its structure (written to /structures of the store with the bands).

Multi-image files: trajectories (``.traj``, pw.x and VASP outputs, XDATCAR, animated XSF) give their last
image, or with ``images="all"`` every image, ids ``<stem>@<i>``; extended XYZ files are collections of
structures and give every frame, ids ``<stem>-<i>``; an ASE database gives one structure per row, id its
``name`` key or ``<stem>@<row id>`` (ASE reserves the key ``id`` for the row number).

Not structures: a Wannier90 Hamiltonian (``*_hr.dat``) given by name is a failed row naming it; in
directories it is not looked at (directories are searched by name for the formats above only).

Calculation folders are one input each (`calculation`): a folder holding ``vasprun.xml``, ``CONTCAR``,
``POSCAR`` or ``OUTCAR`` (VASP), or ``data-file-schema.xml``, ``*.save/data-file-schema.xml`` or one pw.x
output (Quantum ESPRESSO) gives DFT bands (vasprun.xml; QE XML) when present, else its final structure
(CONTCAR, then POSCAR, then the last image of OUTCAR; the last image of the pw.x output). The choice is
logged at debug level and kept in `InputRecord.note`. The calculation claims those files (and its pw.x
inputs and ``.save`` folder); any other input file in the folder stays an input of its own, as does each
pw.x file of a folder without QE XML and with no or several pw.x outputs (a pw.x input alone is a
structure file, not a calculation). A directory of calculation folders (a database of calculations) gives
one input per folder.

Ids:

- a file given on the command line: its stem (the parent directory's name for the generic names POSCAR,
  CONTCAR, OUTCAR, vasprun and data-file-schema, without ``.save``), with ``-<i>`` / ``@<i>`` appended as
  above when the file holds several structures;
- a file found under a directory: its path relative to that directory, without the suffix
  (``subdir/mp-149``), with the same suffix rules;
- a calculation folder: its path relative to the directory given (its own name when it is the directory
  given).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..bandfiles import is_pymatgen_bands, is_qe_xml, qe_xml_structure
from ..config import IMAGES
from ..errors import InputError
from .records import InputRecord, clean_id

log = logging.getLogger(__name__)


#: Suffixes read by pymatgen (as before ASE was added: their stores stay bit-identical).
PYMATGEN_SUFFIXES = (".cif", ".json", ".vasp", ".poscar")
#: Suffixes read by ASE that directories are searched for (any other name ASE knows is read when given).
ASE_SUFFIXES = (".xyz", ".extxyz", ".traj", ".db", ".pwi", ".pwo", ".xsf")
STRUCTURE_SUFFIXES = PYMATGEN_SUFFIXES + ASE_SUFFIXES
STRUCTURE_PREFIXES = ("POSCAR", "CONTCAR")
BAND_SUFFIXES = (".npz", ".h5", ".hdf5")
GENERIC_STEMS = ("POSCAR", "CONTCAR", "OUTCAR", "vasprun", "data-file-schema")
#: ASE formats whose images are the steps of one calculation: the `images` option applies.
TRAJECTORY_FORMATS = ("traj", "espresso-out", "vasp-out", "vasp-xdatcar", "xsf")
#: Files of a VASP calculation folder, in the order they are preferred.
VASP_FILES = ("vasprun.xml", "CONTCAR", "POSCAR", "OUTCAR")
QE_XML = "data-file-schema.xml"
#: Names of pw.x files recognised without looking inside; ``.in``/``.out`` are recognised by content.
_PW_SUFFIXES = {".pwi": "espresso-in", ".pwo": "espresso-out"}
_PW_SNIFFED = (".in", ".out")
_PW_SNIFF_BYTES = 1 << 16  # pw.x writes its name in the first lines; an input's cards fit in 64 kB
#: ASE calculator results with one value per atom (not structure properties).
_PER_ATOM_RESULTS = ("forces", "stresses", "charges", "magmoms", "energies")


class InputUnit(NamedTuple):
    """One independent unit of a run's inputs (cheap to list; `sporep_hpc.inputs.resolve.expand_unit`
    reads it).

    kind is ``"examples"`` (a built-in set spec), ``"file"`` (one file) or ``"calculation"`` (the file
    chosen in a calculation folder, `note` saying which and why); `base` is the (base) id.
    """

    kind: str
    source: str
    base: str
    note: str = ""


def is_wannier_hamiltonian(path: Path) -> bool:
    """True for a Wannier90 tight-binding Hamiltonian (``<seedname>_hr.dat``): not a structure."""
    return path.name.lower().endswith("_hr.dat")


def is_vasprun(path: Path) -> bool:
    """True for ``vasprun*.xml`` (a VASP run: band structure and structure)."""
    name = path.name.lower()
    return name.startswith("vasprun") and name.endswith(".xml")


def is_band_file(path: Path) -> bool:
    """True for files that hold band structures rather than structures (by name; a ``.xml`` that is not a
    vasprun is looked into: QE XML). pymatgen BandStructure JSON is recognised when read."""
    suffix = path.suffix.lower()
    return suffix in BAND_SUFFIXES or is_vasprun(path) or (suffix == ".xml" and is_qe_xml(path))


def is_structure_file(path: Path) -> bool:
    """True for file names that look like a structure format searched for in directories."""
    return path.suffix.lower() in STRUCTURE_SUFFIXES or path.name.upper().startswith(STRUCTURE_PREFIXES)


def _folder_name(folder: Path) -> str:
    name = folder.name or folder.resolve().name
    return clean_id(name.removesuffix(".save") if name.endswith(".save") and len(name) > 5 else name)


def _stem(path: Path) -> str:
    stem = path.name.split(".")[0] if path.name.upper().startswith(STRUCTURE_PREFIXES) else path.stem
    if stem.startswith(GENERIC_STEMS) and path.parent.name:
        return _folder_name(path.parent)
    return clean_id(stem)


def _relative_id(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    if path.name.upper().startswith(STRUCTURE_PREFIXES) or path.name.startswith("vasprun"):
        return clean_id(rel.parent.as_posix()) if rel.parent.as_posix() != "." else _stem(path)
    return clean_id(rel.with_suffix("").as_posix())


# ---------------------------------------------------------------------------- calculation folders
def _pw_format(path: Path) -> str | None:
    """``"espresso-in"``/``"espresso-out"`` for a pw.x input/output: by suffix (``.pwi``, ``.pwo``), or for
    ``.in``/``.out`` by content (a ``&control`` namelist and ``ATOMIC_POSITIONS``; ``Program PWSCF``), as
    ASE takes any ``.out`` for a pw.x output and ``.in`` for several formats."""
    suffix = path.suffix.lower()
    if suffix in _PW_SUFFIXES:
        return _PW_SUFFIXES[suffix]
    if suffix not in _PW_SNIFFED:
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(_PW_SNIFF_BYTES).lower()
    except OSError:
        return None
    if suffix == ".in" and b"&control" in head and b"atomic_positions" in head:
        return "espresso-in"
    if suffix == ".out" and b"program pwscf" in head:
        return "espresso-out"
    return None


def calculation(folder: str | Path) -> tuple[Path, str] | None:
    """The file a calculation folder is read from, and a note saying which and why; None for a folder
    that holds no VASP or Quantum ESPRESSO calculation (module docstring for the rules)."""
    found = _calculation(Path(folder))
    return None if found is None else found[:2]


def _calculation(folder: Path) -> tuple[Path, str, frozenset[Path]] | None:
    """`calculation` and the files the calculation claims (the other files of the folder stay inputs of
    their own)."""
    try:
        files = {f.name: f for f in sorted(folder.iterdir()) if f.is_file()}
    except OSError as exc:
        log.warning("%s: cannot list (%s)", folder, exc.strerror)
        return None
    vasp = [name for name in VASP_FILES if name in files]
    if vasp:
        chosen = vasp[0]
        what = "DFT bands from" if chosen == "vasprun.xml" else (
            "final structure (last image) from" if chosen == "OUTCAR" else "final structure from")
        others = f" (also {', '.join(vasp[1:])})" if len(vasp) > 1 else ""
        return files[chosen], f"VASP folder: {what} {chosen}{others}", frozenset(files[n] for n in vasp)
    xml = [files[QE_XML]] if QE_XML in files else sorted(folder.glob(f"*.save/{QE_XML}"))
    pw = {f: fmt for f in files.values() if (fmt := _pw_format(f)) is not None}
    outputs = [f for f, fmt in pw.items() if fmt == "espresso-out"]
    claimed = frozenset([*pw, *xml])
    if xml:
        rel = xml[0].relative_to(folder).as_posix()
        others = f" ({len(xml) - 1} more QE XML files ignored)" if len(xml) > 1 else ""
        return xml[0], f"QE folder: DFT bands from {rel}{others}", claimed
    if len(outputs) == 1:  # several outputs without an XML: no one calculation, each file is an input
        return outputs[0], f"QE folder: last image of the pw.x output {outputs[0].name} (no QE XML)", claimed
    return None


def _walk(root: Path) -> list[InputUnit]:
    """The units under directory `root`: one per calculation folder, one per other input file; sorted by
    path (a calculation folder sorts as the file it is read from)."""
    found: list[tuple[Path, InputUnit]] = []

    def visit(folder: Path) -> None:
        calc = _calculation(folder)
        claimed: frozenset[Path] = frozenset()
        if calc is not None:
            chosen, note, claimed = calc
            rel = folder.relative_to(root).as_posix()
            base = _folder_name(root) if rel == "." else clean_id(rel)
            log.debug("%s: %s", folder, note)
            found.append((chosen, InputUnit("calculation", str(chosen), base, note)))
        try:
            entries = sorted(folder.iterdir())
        except OSError as exc:
            log.warning("%s: cannot list (%s)", folder, exc.strerror)
            return
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                if calc is None or not (entry.name.endswith(".save") and (entry / QE_XML).is_file()):
                    visit(entry)
            elif entry.is_file() and entry not in claimed and _is_input_file(entry):
                found.append((entry, InputUnit("file", str(entry), _relative_id(entry, root))))

    visit(root)
    return [unit for _, unit in sorted(found, key=lambda item: item[0])]


def _is_input_file(path: Path) -> bool:
    """A file searched for in directories: a structure or band file by name, or a pw.x input/output."""
    return is_structure_file(path) or is_band_file(path) or _pw_format(path) is not None


def list_units(paths: Iterable[str | Path]) -> list[InputUnit]:
    """The units of files and directories, in input order (directories searched recursively, sorted).

    Only names (and the first bytes of ``.xml``, ``.in`` and ``.out`` files) are looked at; a path that
    does not exist raises InputError.
    """
    out: list[InputUnit] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            units = _walk(path)
            if not units:
                log.warning("%s: no structure, band files or calculation folders found", path)
            out.extend(units)
        elif path.is_file():
            out.append(InputUnit("file", str(path), _stem(path)))
        else:
            raise InputError(f"{path}: no such file or directory")
    return out


def list_input_files(paths: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """(file, base id) of every input file, in input order (a calculation folder: the file chosen)."""
    return [(Path(u.source), u.base) for u in list_units(paths)]


# ---------------------------------------------------------------------------- reading
def _plain(value: Any) -> Any:
    """A JSON-ready value of an ASE info entry (numpy scalars and arrays as Python numbers and lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return value
    return str(value)


def _ase_properties(atoms: Any) -> dict[str, Any] | None:
    """``info`` of an ASE Atoms and its calculator's per-structure results (energy, stress, ...; per-atom
    arrays such as forces are left out)."""
    props = {key: _plain(value) for key, value in atoms.info.items()}
    calc = getattr(atoms, "calc", None)
    for key, value in (getattr(calc, "results", None) or {}).items():
        if key not in _PER_ATOM_RESULTS:
            props.setdefault(key, _plain(value))
    return props or None


def _from_ase(path: Path, where: str, atoms: Any) -> Any:
    """pymatgen Structure of an ASE Atoms (Cartesian positions and cell in Å, pbc kept: a slab fails the
    3-D check later with its reason)."""
    from pymatgen.core import Lattice, Structure

    cell = np.asarray(atoms.cell.array, dtype=float)
    pbc = tuple(bool(x) for x in atoms.pbc)
    if not any(pbc) or np.linalg.matrix_rank(cell) < 3:
        raise InputError(
            f"{path}: {where}not periodic (no cell{'' if any(pbc) else ', pbc false'}); a periodic crystal "
            'needs a 3-D cell (extended XYZ: Lattice="..." with a capital L)'
        )
    return Structure(Lattice(cell, pbc=pbc), atoms.get_chemical_symbols(), atoms.positions,
                     coords_are_cartesian=True, properties=_ase_properties(atoms))


# (kind, value) of one structure's id: ("base", "") the base id; ("suffix", "-0"/"@3") appended to it;
# ("name", text) an id of its own (ASE database rows with a name key)
_Item = tuple[tuple[str, str], Any]


def _read_ase_db(path: Path) -> list[_Item]:
    """The rows of an ASE SQLite database, opened read-only: ASE's own ``connect`` creates its tables in
    any file it opens (an empty file, another program's database), and an input is never written."""
    import sqlite3

    from ase.db.sqlite import SQLite3Database

    class ReadOnly(SQLite3Database):
        def _connect(self):
            return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=20)

    items = []
    try:
        with ReadOnly(str(path), create_indices=False, serial=True) as db:
            rows = list(db.select())
    except sqlite3.Error as exc:  # the tables ASE would have created, or not SQLite at all
        raise InputError(f"{path}: not an ASE database ({exc})") from exc
    for row in rows:
        structure = _from_ase(path, f"row {row.id}: ", row.toatoms(add_additional_information=False))
        props = {key: _plain(value) for key, value in row.key_value_pairs.items()} or None
        structure.properties = props or {}
        name = row.key_value_pairs.get("name")
        key = ("name", clean_id(str(name))) if name not in (None, "") else ("suffix", f"@{row.id}")
        items.append((key, structure))
    return items


def _read_ase(path: Path, images: str) -> list[_Item]:
    import ase.io
    from ase.io.formats import UnknownFileTypeError, filetype

    if path.suffix.lower() == ".db":
        return _read_ase_db(path)
    try:
        fmt = filetype(str(path), guess=False)
    except UnknownFileTypeError as exc:
        raise InputError(f"{path}: unrecognised format (not a structure or band file ASE or pymatgen "
                         "reads)") from exc
    # parallel=False: ASE would otherwise read on rank 0 of its own COMM_WORLD and broadcast (a hidden
    # collective; each rank reads different files here)
    frames = ase.io.read(str(path), index=":", format=fmt, parallel=False)
    if not frames:
        raise InputError(f"{path}: no structure found")
    if fmt in TRAJECTORY_FORMATS:
        if images == "last" or len(frames) == 1:
            return [(("base", ""), _from_ase(path, f"image {len(frames) - 1}: ", frames[-1]))]
        return [(("suffix", f"@{i}"), _from_ase(path, f"image {i}: ", a)) for i, a in enumerate(frames)]
    if len(frames) == 1:
        return [(("base", ""), _from_ase(path, "", frames[0]))]
    return [(("suffix", f"-{i}"), _from_ase(path, f"frame {i}: ", a)) for i, a in enumerate(frames)]


def _read_pymatgen(path: Path, data: Any = None) -> list[Any]:
    from pymatgen.core import Structure

    suffix = path.suffix.lower()
    if suffix == ".cif":
        from pymatgen.io.cif import CifParser

        parser = CifParser(path)
        parse = getattr(parser, "parse_structures", None)
        return list(parse(primitive=False) if parse else parser.get_structures(primitive=False))
    if suffix == ".json":
        data = json.loads(path.read_text()) if data is None else data
        items = data if isinstance(data, list) else [data]
        return [Structure.from_dict(d) for d in items]
    return [Structure.from_file(path)]


def _uses_pymatgen(path: Path) -> bool:
    return path.suffix.lower() in PYMATGEN_SUFFIXES or path.name.upper().startswith(STRUCTURE_PREFIXES)


def _read_items(path: Path, images: str = "last", data: Any = None) -> list[_Item]:
    """The structures of one file with their id parts (`_Item`); InputError naming the file."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if is_wannier_hamiltonian(path):
        raise InputError(f"{path}: a Wannier90 Hamiltonian (hopping matrix), not a structure or band file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if _uses_pymatgen(path):
                structures = _read_pymatgen(path, data)
                if len(structures) == 1:
                    items = [(("base", ""), structures[0])]
                else:
                    items = [(("suffix", f"-{i}"), s) for i, s in enumerate(structures)]
            else:
                items = _read_ase(path, images)
        for w in caught:
            log.debug("%s: %s", path, w.message)
    except InputError:
        raise
    except Exception as exc:  # pymatgen and ASE raise many types (ValueError, KeyError, IndexError, ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: unreadable ({reason})") from exc
    if not items:
        raise InputError(f"{path}: no structure found")
    return items


def read_file(path: str | Path, images: str = "last") -> list[Any]:
    """All structures in one file, as pymatgen Structures.

    Parameters
    ----------
    path : str or Path
    images : {"last", "all"}
        Trajectories: the last image or every image.

    Raises
    ------
    InputError
        When the file is missing or cannot be parsed (the message names the file).
    """
    IMAGES.check(images)
    return [s for _, s in _read_items(Path(path), images)]


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


def _band_structure_of(path: Path, data: Any = None) -> Any:
    """The structure of a band file (vasprun.xml, QE XML, pymatgen BandStructure JSON), or None (the band
    reader then reports the file's problem)."""
    if is_vasprun(path):
        return vasprun_structure(path)
    try:
        if data is not None:
            from pymatgen.core import Structure

            return Structure.from_dict(data["structure"]) if data.get("structure") else None
        if path.suffix.lower() == ".xml":
            return qe_xml_structure(path)
    except Exception as exc:  # InputError or pymatgen's many types: the band reader reports it
        log.debug("%s: no structure read (%s)", path, exc)
    return None


def _json_data(path: Path) -> Any:
    """The decoded JSON of a file, or None when it is not JSON (the structure reader then says why)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def _records_from_file(path: Path, base_id: str, images: str = "last") -> list[InputRecord]:
    data = _json_data(path) if path.suffix.lower() == ".json" and path.is_file() else None
    if is_band_file(path) or is_pymatgen_bands(data):
        return [InputRecord(id=base_id, source=str(path), kind="bands",
                            structure=_band_structure_of(path, data if is_pymatgen_bands(data) else None))]
    try:
        items = _read_items(path, images, data)
    except InputError as exc:
        return [InputRecord(id=base_id, source=str(path), kind="failed", error=str(exc))]

    def record(key, s):
        kind, value = key
        id = base_id if kind == "base" else (base_id + value if kind == "suffix" else value)
        try:  # extxyz info, ASE database key-value pairs, pymatgen JSON properties
            props = dict(getattr(s, "properties", None) or {}) or None
        except (TypeError, ValueError):
            props = {"properties": str(s.properties)}
        return InputRecord(id=id, source=str(path), kind="structure", structure=s, properties=props)

    return [record(key, s) for key, s in items]


def unit_records(unit: InputUnit, images: str = "last") -> list[InputRecord]:
    """The input records of a "file" or "calculation" unit (a calculation folder is one input: its last
    image, with the unit's note)."""
    if unit.kind == "calculation":
        records = _records_from_file(Path(unit.source), unit.base, "last")
        return [replace(r, note=unit.note) for r in records]
    return _records_from_file(Path(unit.source), unit.base, images)


def records_from_file(path: str | Path, base_id: str, images: str = "last") -> list[InputRecord]:
    """The input records of one file (one per structure; one "failed" record if unreadable)."""
    IMAGES.check(images)
    return _records_from_file(Path(path), base_id, images)


def collect_inputs(paths: Iterable[str | Path], images: str = "last") -> list[InputRecord]:
    """Input records for files and directories (searched recursively, sorted; calculation folders one
    record each).

    Unreadable files become records of kind ``"failed"``; a path that does not exist raises InputError
    (nothing can be said about it). Ids are not checked for uniqueness here: see `check_unique_ids`.
    """
    IMAGES.check(images)
    return [r for unit in list_units(paths) for r in unit_records(unit, images)]


def read_structures(path_or_paths: str | Path | Iterable[str | Path], images: str = "last") -> list[Any]:
    """All structures in the given files and directories (public API, DESIGN §5b).

    Parameters
    ----------
    path_or_paths : path or iterable of paths
        Files (CIF, POSCAR/CONTCAR, pymatgen JSON, anything ASE reads) or directories.
    images : {"last", "all"}
        Trajectories: the last image or every image.

    Returns
    -------
    list of pymatgen Structure, in input order (directories sorted by path); band files (and calculation
    folders read from one) are left out.

    Raises
    ------
    InputError
        For the first unreadable file.
    """
    paths = [path_or_paths] if isinstance(path_or_paths, (str, Path)) else list(path_or_paths)
    out = []
    for record in collect_inputs(paths, images):
        if record.kind == "failed":
            raise InputError(record.error)
        if record.kind == "structure":
            out.append(record.structure)
    return out
