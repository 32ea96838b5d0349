"""`SorepFeaturizer`: SOREP fingerprints as a scikit-learn transformer and a matminer-style featurizer.

Every structure goes through `sporep_hpc.pipeline.compute_record`, after the validation of
`sporep_hpc.parallel.plan.plan_record`: the per-structure code of ``sporep-hpc run``, so a row equals
the store's row for the same structure and parameters. Band objects (`sporep_hpc.BandStructure`, as
`sporep_hpc.bandfiles.read_bands` returns them) are fingerprinted by `sporep_hpc.fingerprint`, the
function the pipeline applies to imported band files.

Parallelism is over structures only: ``n_jobs`` worker processes (spawned, so a script using
``n_jobs > 1`` needs the usual ``if __name__ == "__main__":`` guard), each running its kernels with one
thread, on fixed contiguous chunks of the input; rows come back in input order and are bitwise identical
for every ``n_jobs``.

matminer is not imported: its `BaseFeaturizer` interface is duck-typed (``featurize``,
``feature_labels``, ``citations``, ``implementors``, plus ``featurize_wrapper``, ``set_n_jobs`` and the
column labels that `matminer.featurizers.base.MultipleFeaturizer` calls).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from typing import Any

import numpy as np
from pymatgen.core import IStructure
from sklearn.base import BaseEstimator, TransformerMixin

from ._validation import check_choice
from .bands import BandStructure
from .config import RunParameters
from .errors import InputError, ParameterError
from .fingerprints import FingerprintSpec, fingerprint, get_spec
from .inputs.records import InputRecord, compact_record
from .parallel.plan import plan_record
from .pipeline import FingerprintSet, _reason, compute_record
from .store.schema import STATUS_DONE

__all__ = ["CITATION", "ON_ERROR", "RUN_PARAMETERS", "SorepFeaturizer", "feature_labels"]

log = logging.getLogger(__name__)

#: Constructor arguments passed to `sporep_hpc.config.RunParameters` (every field but ``fingerprints``,
#: which the featurizer's ``preset`` replaces); None leaves RunParameters' default.
RUN_PARAMETERS = (
    "operator", "basis", "kdensity", "kgrid_rounding", "vacuum_kpoints", "exp_to_discard", "precision",
    "lindep", "max_atoms", "min_distance", "huckel_k", "huckel_weighted", "keep_cell",
)

#: What a structure that cannot be computed gives: an InputError naming it, or a row of NaN.
ON_ERROR = ("raise", "nan")

#: Zadoks, Marrazzo & Marzari, npj Comput. Mater. (2024), the method's reference.
CITATION = """@article{zadoks2024sorep,
  title = {Spectral operator representations},
  author = {Zadoks, Austin and Marrazzo, Antimo and Marzari, Nicola},
  journal = {npj Computational Materials},
  volume = {10},
  year = {2024},
  publisher = {Nature Portfolio},
  doi = {10.1038/s41524-024-01446-9}
}"""

#: Most decimals of the energy in a feature label (see `feature_labels`).
MAX_LABEL_DECIMALS = 6


def feature_labels(spec: FingerprintSpec) -> list[str]:
    """Unique labels of the features of `spec`: ``"<spec name>:<reference>@<energy>eV"``.

    ``<energy>`` is the sample energy relative to the window's reference, eV, with its sign and d
    decimals: the smallest d in 2..MAX_LABEL_DECIMALS that makes every label of the spec unique (e.g.
    ``"kinetic:zero@+0.49eV"``, ``"vbm_cbm:cbm@-0.150eV"``). If no d does (overlapping windows with
    the same reference), every label gets its feature index as a prefix: ``"17:custom:vbm@+0.500000eV"``.
    """
    energies = spec.energies + 0.0  # no "-0.00" from a negative zero
    for d in range(2, MAX_LABEL_DECIMALS + 1):
        labels = [f"{spec.name}:{r}@{e:+.{d}f}eV" for r, e in zip(spec.references, energies, strict=True)]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i}:{label}" for i, label in enumerate(labels)]


def _n_processes(n_jobs: Any) -> int:
    """Worker processes for `n_jobs` (None: 1; -1: every core this process may use)."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, (int, np.integer)) and not isinstance(n_jobs, bool):
        if n_jobs == -1:
            return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if n_jobs >= 1:
            return int(n_jobs)
    raise ParameterError(f"n_jobs must be a positive integer, -1 (every core) or None (1); got {n_jobs!r}")


def _is_atoms(obj: Any) -> bool:
    """True for an ASE Atoms (ase is not imported: an Atoms exists only once ase has been)."""
    ase = sys.modules.get("ase")
    return ase is not None and isinstance(obj, ase.Atoms)


def _as_input(obj: Any, id: str) -> tuple[InputRecord | BandStructure | None, str]:
    """One input as the pipeline takes it: (InputRecord of a compact structure, or BandStructure, "").

    Accepts a pymatgen Structure (or IStructure), an ASE Atoms (converted by pymatgen's
    AseAtomsAdaptor) or a `sporep_hpc.BandStructure`. An Atoms that cannot be converted (no cell) gives
    (None, reason naming `id`): that input's failure. Anything else raises InputError naming `id`.
    """
    if isinstance(obj, BandStructure):
        return obj, ""
    if _is_atoms(obj):
        from pymatgen.io.ase import AseAtomsAdaptor

        try:
            obj = AseAtomsAdaptor.get_structure(obj)
        except Exception as exc:  # ase/pymatgen raise several types on a cell they cannot convert
            return None, (
                f"structure {id!r}: ASE Atoms cannot be converted to a pymatgen Structure "
                f"({type(exc).__name__}: {exc})"
            )
    if isinstance(obj, IStructure):
        return compact_record(InputRecord(id=id, source="python", kind="structure", structure=obj)), ""
    raise InputError(
        f"structure {id!r} must be a pymatgen Structure, an ASE Atoms or a sporep_hpc.BandStructure; got "
        f"{type(obj).__module__}.{type(obj).__qualname__} (files: read them with sporep_hpc.read_structures "
        "or sporep_hpc.bandfiles.read_bands)"
    )


def _run_now(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    """`fn(*args, **kwargs)` called now, as a finished Future (the serial twin of ``pool.submit``)."""
    future: Future = Future()
    try:
        future.set_result(fn(*args, **kwargs))
    except Exception as exc:  # kept in the future, as a worker process would
        future.set_exception(exc)
    return future


@contextmanager
def _submitter(n_processes: int) -> Iterator[Callable[..., Future]]:
    """``submit(fn, *args)``: in this process (n_processes <= 1) or in a pool of spawned processes."""
    if n_processes <= 1:
        yield _run_now
        return
    with ProcessPoolExecutor(n_processes, mp_context=get_context("spawn")) as pool:
        yield pool.submit


def _outcomes(inputs: Sequence[tuple[int, Any, str, str]], params: RunParameters,
              fingerprints: FingerprintSet, submit: Callable[..., Future]) -> list[tuple[Any, str]]:
    """(vector or None, error text) of every (index, item, error, id) input, in input order.

    Structures are validated (`plan_record`), then computed (`compute_record`); band objects are
    fingerprinted (`fingerprint`). Every call gets one thread; none depends on where it runs. The
    submitted functions never raise for a structure's problem (they return failed entries); an
    exception of `fingerprint` is that band object's failure, reported like the pipeline's.
    """
    (name, spec), = fingerprints.specs.items()
    records = {i: item for i, item, _, _ in inputs if isinstance(item, InputRecord)}
    plans = {i: submit(plan_record, i, record, params) for i, record in records.items()}
    bands = {
        i: submit(fingerprint, item, spec, n_threads=1)
        for i, item, _, _ in inputs if isinstance(item, BandStructure)
    }
    runs = {  # each submitted as soon as its plan is back
        i: submit(compute_record, i, records[i], params, fingerprints, 1)
        for i, plan in plans.items() if plan.result().kind != "failed"
    }
    out = []
    for i, item, error, id in inputs:
        if item is None:
            out.append((None, error))
        elif i in bands:
            exc = bands[i].exception()
            if isinstance(exc, BrokenExecutor):  # a worker died: not this input's fault
                raise exc
            out.append((None, _reason(id, exc)) if exc else (bands[i].result(), ""))
        elif i not in runs:
            out.append((None, plans[i].result().error))
        else:
            result, _ = runs[i].result()
            done = result.status == STATUS_DONE
            out.append((result.fingerprints[name], "") if done else (None, result.error))
    return out


class SorepFeaturizer(TransformerMixin, BaseEstimator):
    """SOREP fingerprints of crystals: a scikit-learn transformer and a matminer-style featurizer.

    Each input (pymatgen Structure, ASE Atoms or `sporep_hpc.BandStructure`) becomes one row: the
    fingerprint ``sporep-hpc run`` stores for it with the same parameters (the same code computes it).
    One exception: a BandStructure gets the preset asked for whatever its kind (the featurizer cannot
    tell an operator spectrum from DFT bands), where a run leaves DFT bands NaN in ``kinetic``
    (absolute energies; `sporep_hpc.fingerprints.spec_kinds`). Stateless: `fit` only validates the
    parameters and records the energy axis; `transform` works without it.

    Parameters
    ----------
    preset : str or FingerprintSpec, default "kinetic"
        Fingerprint: a preset name of `sporep_hpc.fingerprints.PRESETS` (``"kinetic"``, ``"fermi"``,
        ``"vbm"``, ``"cbm"``, ``"vbm_cbm"``, ``"vbm_fermi_cbm"``), a FingerprintSpec, its JSON, a Window
        or a sequence of Windows (`sporep_hpc.fingerprints.get_spec`).
    operator, basis, kdensity, kgrid_rounding, vacuum_kpoints, exp_to_discard, precision, lindep, \
max_atoms, min_distance, huckel_k, huckel_weighted, keep_cell : optional
        Run parameters, passed unchanged to `sporep_hpc.config.RunParameters` (meaning, units, valid
        ranges and defaults there); None keeps RunParameters' default, the default of
        ``sporep-hpc run``: a structure is computed in its standardized primitive cell, so any cell of
        one crystal gives one row (``keep_cell=True``: the cell given). Not used for band objects,
        whose spectrum (and cell) is given.
    n_jobs : int or None, default 1
        Worker processes (-1: every core; None: 1). Each runs its kernels with one thread; the rows
        do not depend on n_jobs (bitwise). A worker first pays its start (imports, basis, kernels: a
        few seconds), so processes pay off for inputs that take longer than that to compute.
    on_error : {"raise", "nan"}, default "raise"
        A structure that cannot be computed (invalid, too close atoms, element not in the basis, ...)
        raises InputError naming it (``"structure 'X[3]': ..."``, its position in X) or, with ``"nan"``,
        gives a row of NaN (logged as a warning) so that a pipeline with an imputer goes on.

    Attributes
    ----------
    energies_ : ndarray of shape (n_features,), float64, eV
        Sample energy of each feature, relative to its window's reference (`references_`).
    references_ : ndarray of shape (n_features,), str
        Reference of each feature: ``"fermi"``, ``"vbm"``, ``"cbm"`` or ``"zero"`` (absolute energy).
    spec_ : FingerprintSpec
        The resolved fingerprint specification.
    parameters_ : RunParameters
        The resolved run parameters (what a store made with them records).

    ``n_features_in_`` is not defined: the inputs are objects, not feature arrays (as for
    scikit-learn's FeatureHasher).

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    >>> X = SorepFeaturizer("kinetic", kdensity=0.3).fit_transform([si])
    >>> X.shape
    (1, 2048)
    """

    def __init__(
        self,
        preset: str | FingerprintSpec = "kinetic",
        *,
        operator: str | None = None,
        basis: str | None = None,
        kdensity: float | None = None,
        kgrid_rounding: str | None = None,
        vacuum_kpoints: str | None = None,
        exp_to_discard: float | None = None,
        precision: float | None = None,
        lindep: float | None = None,
        max_atoms: int | None = None,
        min_distance: float | None = None,
        huckel_k: float | None = None,
        huckel_weighted: bool | None = None,
        keep_cell: bool | None = None,
        n_jobs: int | None = 1,
        on_error: str = "raise",
    ) -> None:
        self.preset = preset
        self.operator = operator
        self.basis = basis
        self.kdensity = kdensity
        self.kgrid_rounding = kgrid_rounding
        self.vacuum_kpoints = vacuum_kpoints
        self.exp_to_discard = exp_to_discard
        self.precision = precision
        self.lindep = lindep
        self.max_atoms = max_atoms
        self.min_distance = min_distance
        self.huckel_k = huckel_k
        self.huckel_weighted = huckel_weighted
        self.keep_cell = keep_cell
        self.n_jobs = n_jobs
        self.on_error = on_error

    # ------------------------------------------------------------------ parameters
    def _setup(self) -> tuple[RunParameters, FingerprintSet]:
        """The validated run parameters and fingerprint (ParameterError naming a bad parameter)."""
        check_choice("on_error", self.on_error, ON_ERROR)
        _n_processes(self.n_jobs)
        spec = get_spec(self.preset)
        given = {name: getattr(self, name) for name in RUN_PARAMETERS if getattr(self, name) is not None}
        params = RunParameters(**given, fingerprints=(spec.name,))
        return params, FingerprintSet({spec.name: spec})

    # ------------------------------------------------------------------ scikit-learn
    def fit(self, X: Any = None, y: Any = None) -> SorepFeaturizer:
        """Validate the parameters and record the energy axis (X and y are not used).

        Returns
        -------
        self
        """
        params, fingerprints = self._setup()
        (spec,) = fingerprints.specs.values()
        self.spec_ = spec
        self.parameters_ = params
        self.energies_ = spec.energies
        self.references_ = np.array(spec.references)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Fingerprints of the inputs, one row each, in input order.

        Parameters
        ----------
        X : sequence of pymatgen Structure, ASE Atoms or BandStructure
            A list, tuple, 1-D array or pandas Series (or a one-column 2-D array or DataFrame).

        Returns
        -------
        ndarray of shape (len(X), n_features), float64, states/eV/cell

        Raises
        ------
        InputError
            For the first input (in order) that cannot be computed, naming it ``X[i]`` (unless
            ``on_error="nan"``), or when X is not a sequence of such objects.
        ParameterError
            For an invalid parameter.
        """
        return self._compute(self._items(X))[0]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The feature labels (`feature_labels`) as an object array (for ``set_output``)."""
        return np.asarray(self.feature_labels(), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X is a sequence of structures
        tags.requires_fit = False  # stateless: fit only validates and records the energy axis
        return tags

    # ------------------------------------------------------------------ matminer
    def featurize(self, obj: Any) -> list[float]:
        """Fingerprint of one structure or band object, as a list of floats (errors name it ``input``)."""
        return self._compute([(0, obj, "input")])[0][0].tolist()

    def feature_labels(self) -> list[str]:
        """One label per feature: ``"<spec name>:<reference>@<energy>eV"`` (exact rule: `feature_labels`)."""
        return feature_labels(get_spec(self.preset))

    def citations(self) -> list[str]:
        """BibTeX of the SOREP method (Zadoks, Marrazzo & Marzari, npj Comput. Mater. 2024)."""
        return [CITATION]

    def implementors(self) -> list[str]:
        """Who implemented this featurizer."""
        return ["sporep-hpc developers"]

    def featurize_many(self, entries: Any, ignore_errors: bool = False, return_errors: bool = False,
                       pbar: Any = None) -> list[list]:
        """Rows of `entries` as lists (matminer's batch call, parallel with ``n_jobs``).

        ``ignore_errors`` gives failed inputs a row of NaN (as ``on_error="nan"``); ``return_errors``
        appends each row's error text (NaN when it succeeded). `pbar` is accepted and ignored.
        """
        if return_errors and not ignore_errors:
            raise ParameterError("return_errors needs ignore_errors=True")
        values, errors = self._compute(self._items(entries), "nan" if ignore_errors else "raise")
        rows = [row.tolist() for row in values]
        if return_errors:
            rows = [[*row, error or math.nan] for row, error in zip(rows, errors, strict=True)]
        return rows

    def featurize_wrapper(self, x: Any, return_errors: bool = False, ignore_errors: bool = False) -> list:
        """What matminer's MultipleFeaturizer calls per entry: `featurize_many` of ``[x[0]]``, row 0."""
        return self.featurize_many([x[0]], ignore_errors=ignore_errors, return_errors=return_errors)[0]

    def set_n_jobs(self, n_jobs: int) -> None:
        """matminer's way of setting ``n_jobs`` (the same as ``set_params(n_jobs=...)``)."""
        self.n_jobs = n_jobs

    def _generate_column_labels(self, multiindex: bool, return_errors: bool):
        """Column labels of matminer's ``featurize_dataframe`` (called by MultipleFeaturizer)."""
        labels = self.feature_labels() + ([f"{type(self).__name__} Exceptions"] if return_errors else [])
        if not multiindex:
            return labels
        import pandas as pd

        return pd.MultiIndex.from_product([[type(self).__name__], labels])

    # ------------------------------------------------------------------ computing
    @staticmethod
    def _items(X: Any) -> list[tuple[int, Any, str]]:
        """(index, object, id ``X[i]``) of every input; InputError unless X is a sequence of inputs."""
        if isinstance(X, (BandStructure, IStructure, str, bytes)) or _is_atoms(X):
            raise InputError(
                f"X must be a sequence of structures or band objects; got one {type(X).__name__} "
                "(use [obj], or featurize(obj))"
            )
        if getattr(X, "ndim", 1) == 2 and X.shape[1] == 1:  # one column of a DataFrame or 2-D array
            X = X.iloc[:, 0] if hasattr(X, "iloc") else X[:, 0]
        try:
            objs = list(X)
        except TypeError as exc:
            raise InputError(
                f"X must be a sequence of structures or band objects; got {type(X).__name__}"
            ) from exc
        return [(i, obj, f"X[{i}]") for i, obj in enumerate(objs)]

    def _compute(self, items: Sequence[tuple[int, Any, str]], on_error: str | None = None):
        """Rows of (index, object, id) items in input order, and each row's error text ("" if none).

        A failure raises InputError with its reason (`on_error` "raise", default: the featurizer's) or
        gives a row of NaN, logged as a warning ("nan").
        """
        params, fingerprints = self._setup()
        on_error = self.on_error if on_error is None else on_error
        (spec,) = fingerprints.specs.values()
        inputs = [(i, *_as_input(obj, id), id) for i, obj, id in items]
        n_proc = min(_n_processes(self.n_jobs), sum(item is not None for _, item, _, _ in inputs))
        with _submitter(n_proc) as submit:
            outcomes = _outcomes(inputs, params, fingerprints, submit)
        values = np.empty((len(inputs), spec.n_features), dtype=np.float64)
        errors = []
        for row, (vector, error) in enumerate(outcomes):
            if vector is None:
                if on_error == "raise":
                    raise InputError(error)
                log.warning("%s (row of NaN)", error)
                vector = np.nan
            values[row] = vector
            errors.append(error)
        return values, errors
