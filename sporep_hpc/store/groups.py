"""Groups post-processing adds to a store: /similarity/<name> and /models/<name> (DESIGN §5); their
datasets are those of `schema.GROUP_LAYOUT` (dtype, units).

```
/similarity/<name>/   distance (n, n) float64, chunked tile × tile, attrs: metric, fingerprint, tile,
                      created, fingerprint_attrs (JSON); index (n,) int64 = store rows of the matrix rows;
                      linkage (n-1, 4) float64 (scipy), attrs: method
/models/<name>/       model (n_bytes,) uint8 = the forest in skops format (zip, no pickle); energies
                      (n_features,) eV; attrs: format ("skops"; "pickle" or none: legacy),
                      skops_version, fingerprint, fingerprint_attrs (JSON), estimator (JSON), metrics (JSON),
                      classes (JSON), label_source, created
```

The distance matrix is written tile by tile and never held in memory. With the mpio driver every rank
takes part in every write round (collective transfer, an empty selection when it has no tile left);
without it (laptop h5py, or SPOREP_FORCE_SERIAL_HDF5=1) the tiles of each round are gathered to rank 0,
which writes them. Dataset creation and attributes are done by every rank with the same arguments.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import StoreError
from .h5 import mpio_available, open_h5
from .lock import locked
from .schema import GROUP_LAYOUT, from_fixed, timestamp
from .validate import require
from .writer import create_dataset

_SIMILARITY = GROUP_LAYOUT["similarity"]
_MODELS = GROUP_LAYOUT["models"]

__all__ = [
    "TRUSTED_MODEL_TYPES",
    "ModelRecord",
    "SimilarityRecord",
    "load_model",
    "model_names",
    "read_similarity",
    "save_model",
    "similarity_names",
    "write_linkage",
    "write_similarity",
]


def _attr(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or name.strip() != name:
        raise StoreError(f"{kind} name must be a non-empty string without '/' or outer blanks; got {name!r}")
    return name


def _require_store(path: Path) -> None:
    if not path.is_file():
        raise StoreError(f"{path}: no such store")


# ---- similarity --------------------------------------------------------------------------------------


def _xfer(f: h5py.File):
    if f.driver != "mpio":
        return None
    dxpl = h5py.h5p.create(h5py.h5p.DATASET_XFER)
    dxpl.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
    return dxpl


def _write_block(dset: h5py.Dataset, r0: int, c0: int, block: np.ndarray | None, dxpl) -> None:
    """Write `block` at (r0, c0); with a collective dxpl every rank calls this, block None = empty."""
    fspace = dset.id.get_space()
    if block is None or block.size == 0:
        if dxpl is None:
            return
        fspace.select_none()
        mspace = h5py.h5s.create_simple((1,))
        mspace.select_none()
        buf = np.zeros(1)
    else:
        buf = np.ascontiguousarray(block, dtype=np.float64)
        fspace.select_hyperslab((r0, c0), buf.shape)
        mspace = h5py.h5s.create_simple(buf.shape)
    dset.id.write(mspace, fspace, buf, dxpl=dxpl)


def write_similarity(
    path: Any,
    name: str,
    tiles: Iterable,
    *,
    n: int,
    rounds: int,
    index: np.ndarray,
    attrs: dict[str, Any],
    tile: int,
    comm: Any = None,
) -> None:
    """Create /similarity/<name> (replacing it) and write the distance tiles of every rank.

    Parameters
    ----------
    path : path
        An existing store, opened "r+".
    name : str
        Group name under /similarity.
    tiles : iterable of (tile, block)
        This rank's tiles (objects with r0, r1, c0, c1, and `diagonal`) with their blocks
        (r1 - r0, c1 - c0); off-diagonal blocks are mirrored into the lower triangle here.
    n : int
        Matrix size (same on every rank).
    rounds : int
        Maximum number of tiles of any rank (same on every rank): the number of write rounds.
    index : ndarray of shape (n,), int
        Store rows of the matrix rows.
    attrs : dict
        Group attributes (JSON-encoded when not str/int/float).
    tile : int
        Tile edge, used as the chunk edge.
    comm : mpi4py communicator, optional
        All ranks of `comm` call this function.
    """
    with locked(path, comm):  # one writer per store
        path = Path(path)
        _check_name("similarity", name)
        size = 1 if comm is None else comm.size
        parallel = size > 1 and mpio_available()
        writer = parallel or (comm is None or comm.rank == 0)
        created = timestamp() if comm is None else comm.bcast(timestamp(), root=0)
        f = dset = None
        failure: Exception | None = None
        try:
            if writer:
                _require_store(path)
                f = open_h5(path, "r+", comm if parallel else None)
                grp = f.require_group("similarity")
                if name in grp:
                    del grp[name]
                g = grp.create_group(name)
                for key, value in attrs.items():
                    g.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
                g.attrs["created"] = created
                chunk = (min(n, tile), min(n, tile)) if n > 0 else None
                dset = create_dataset(g, "distance", _SIMILARITY["distance"], shape=(n, n), chunks=chunk)
                dset.attrs["units"] = "eV" if attrs.get("metric") == "wasserstein" else "1"
                create_dataset(g, "index", _SIMILARITY["index"], data=index)
        except (StoreError, OSError, KeyError, ValueError) as exc:
            failure = exc
        # every rank agrees before the write rounds (no rank left waiting in a collective)
        ok = failure is None if comm is None else all(comm.allgather(failure is None))
        if not ok:
            if f is not None:
                f.close()
            why = f"{path}: cannot create similarity {name!r} on all ranks: {failure}"
            raise StoreError(why) from failure
        try:
            dxpl = _xfer(f) if f is not None else None
            it = iter(tiles)
            for _ in range(rounds):
                item = next(it, None)
                if parallel or size == 1:
                    t, block = item if item is not None else (None, None)
                    _write_block(dset, t.r0 if t else 0, t.c0 if t else 0, block, dxpl)
                    mirror = None if (t is None or t.diagonal) else block.T
                    _write_block(dset, t.c0 if t else 0, t.r0 if t else 0, mirror, dxpl)
                else:  # serial fallback: rank 0 writes what every rank computed this round
                    gathered = comm.gather(item, root=0)
                    if comm.rank == 0:
                        for got in gathered:
                            if got is None:
                                continue
                            t, block = got
                            _write_block(dset, t.r0, t.c0, block, None)
                            if not t.diagonal:
                                _write_block(dset, t.c0, t.r0, block.T, None)
        finally:
            if f is not None:
                f.close()
        if comm is not None:
            comm.Barrier()


def write_linkage(path: Any, name: str, linkage: np.ndarray, method: str) -> None:
    """Store the scipy linkage (n-1, 4) beside /similarity/<name>/distance (one process)."""
    with locked(path, None):  # one writer per store
        with open_h5(Path(path), "r+") as f:
            key = f"similarity/{_check_name('similarity', name)}"
            if key not in f:
                raise StoreError(f"{path}: no similarity {name!r}")
            g = f[key]
            if "linkage" in g:
                del g["linkage"]
            d = create_dataset(g, "linkage", _SIMILARITY["linkage"], data=linkage)
            d.attrs["method"] = method


@dataclass(frozen=True)
class SimilarityRecord:
    """A stored similarity group.

    Attributes
    ----------
    name : str
    distance : ndarray of shape (n, n), float64 or None
        The matrix (None when read with ``load_matrix=False``).
    index : ndarray of shape (n,), int64
        Store rows of the matrix rows.
    ids : list of str
        Structure ids of the matrix rows.
    linkage : ndarray of shape (n-1, 4) or None
    attrs : dict
        metric, fingerprint, tile, created, fingerprint_attrs, linkage_method (when present).
    """

    name: str
    distance: np.ndarray | None
    index: np.ndarray
    ids: list
    linkage: np.ndarray | None
    attrs: dict


def similarity_names(path: Any) -> list[str]:
    """Names under /similarity (sorted)."""
    with open_h5(Path(path), "r") as f:
        return sorted(f["similarity"]) if "similarity" in f else []


def read_similarity(path: Any, name: str, *, load_matrix: bool = True) -> SimilarityRecord:
    """Read /similarity/<name> (the whole matrix when `load_matrix`; use h5py slicing for huge ones)."""
    path = Path(path)
    _require_store(path)
    with open_h5(path, "r") as f:
        key = f"similarity/{name}"
        if key not in f:
            stored = ", ".join(sorted(f["similarity"])) if "similarity" in f else "none"
            raise StoreError(f"{path}: no similarity {name!r}; stored: {stored}")
        require(f, path, (key,))
        g = f[key]
        attrs = {k: _attr(v) for k, v in g.attrs.items()}
        index = g["index"][()]
        all_ids = [from_fixed(x) for x in f["structures/id"][()]] if "structures/id" in f else []
        ids = [all_ids[i] if i < len(all_ids) else str(i) for i in index]
        linkage = g["linkage"][()] if "linkage" in g else None
        if linkage is not None:
            attrs["linkage_method"] = _attr(g["linkage"].attrs.get("method", ""))
        distance = g["distance"][()] if load_matrix else None
    return SimilarityRecord(name, distance, index, ids, linkage, attrs)


# ---- models ------------------------------------------------------------------------------------------

#: Persistence format of the models this version writes (attribute ``format`` of /models/<name>).
MODEL_FORMAT = "skops"
#: Format of legacy models, written before sporep-hpc stored them with skops (also a missing ``format``).
LEGACY_PICKLE = "pickle"

#: Types a stored model may hold beyond those skops trusts by itself (builtins, numpy arrays and scalars,
#: scikit-learn's estimators such as RandomForestClassifier and DecisionTreeClassifier). Found with
#: ``skops.io.get_untrusted_types`` on the forests `classify` fits (scikit-learn 1.9, imbalanced-learn 0.14,
#: skops 0.16) and reviewed: the Cython tree inside every decision tree, and imbalanced-learn's balanced
#: forest with the under-sampler and pipeline it keeps per tree. No function, no other class: a model
#: holding any other type is refused (a store cannot run code).
TRUSTED_MODEL_TYPES = (
    "sklearn.tree._tree.Tree",
    "imblearn.ensemble._forest.BalancedRandomForestClassifier",
    "imblearn.pipeline.Pipeline",
    "imblearn.under_sampling._prototype_selection._random_under_sampler.RandomUnderSampler",
)


@dataclass(frozen=True)
class ModelRecord:
    """A stored classifier.

    Attributes
    ----------
    name : str
    estimator : object or None
        The scikit-learn (or imbalanced-learn) forest, None when read with ``load_estimator=False``.
        A legacy pickled model (read with ``trust_pickle=True``) is whatever the pickle held.
    energies : ndarray of shape (n_features,), eV
        Energy grid of the fingerprint the model was trained on.
    attrs : dict
        fingerprint, fingerprint_attrs (dict), estimator (dict), metrics (dict), classes (list),
        run_parameters (dict: the spectrum parameters of the training store), label_source, created,
        format ("skops"; "pickle" for models written before skops), skops_version.
    """

    name: str
    estimator: Any
    energies: np.ndarray
    attrs: dict

    @property
    def format(self) -> str:
        """Persistence format: "skops", or "pickle" for a legacy model (no ``format`` attribute)."""
        return str(self.attrs.get("format", LEGACY_PICKLE))


_JSON_ATTRS = ("fingerprint_attrs", "estimator", "metrics", "classes", "run_parameters")


def _untrusted(blob: bytes, what: str) -> None:
    """StoreError naming the types of the skops `blob` outside skops' defaults and TRUSTED_MODEL_TYPES."""
    import skops.io

    try:
        found = skops.io.get_untrusted_types(data=blob)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise StoreError(f"{what} is not a readable skops model ({exc})") from exc
    refused = sorted(set(found) - set(TRUSTED_MODEL_TYPES))
    if refused:
        raise StoreError(
            f"{what} holds types that are not trusted: {', '.join(refused)}; refusing to load it "
            f"(trusted: a random forest, see TRUSTED_MODEL_TYPES in {__name__})"
        )


def save_model(path: Any, name: str, estimator: Any, energies: np.ndarray, attrs: dict[str, Any]) -> None:
    """Store `estimator` with skops into /models/<name> with its fingerprint energies and attributes
    (one process). A model holding types outside `TRUSTED_MODEL_TYPES` is refused (StoreError): it could
    not be loaded again."""
    with locked(path, None):  # one writer per store
        import skops
        import skops.io

        path = Path(path)
        _require_store(path)
        _check_name("model", name)
        data = skops.io.dumps(estimator)
        _untrusted(data, f"model {name!r}")
        blob = np.frombuffer(data, dtype=np.uint8)
        with open_h5(path, "r+") as f:
            grp = f.require_group("models")
            if name in grp:
                del grp[name]
            g = grp.create_group(name)
            create_dataset(g, "model", _MODELS["model"], data=blob)
            create_dataset(g, "energies", _MODELS["energies"], data=energies)
            for key, value in attrs.items():
                g.attrs[key] = json.dumps(value) if key in _JSON_ATTRS else value
            g.attrs["format"] = MODEL_FORMAT
            g.attrs["skops_version"] = skops.__version__
            g.attrs["created"] = timestamp()


def model_names(path: Any) -> list[str]:
    """Names under /models (sorted)."""
    with open_h5(Path(path), "r") as f:
        return sorted(f["models"]) if "models" in f else []


def _unpickle_legacy(blob: bytes) -> Any:
    """Unpickle a legacy model (written before skops). This EXECUTES CODE FROM THE FILE (a pickle can call any
    function): `load_model` reaches it only with ``trust_pickle=True`` (``--trust-pickle``), the user's
    explicit statement that they trust the store. The only pickle load of sporep_hpc; kept for models
    written before skops, so that their owners can still use them (or retrain with `classify`)."""
    import io
    import pickle

    try:
        return pickle.Unpickler(io.BytesIO(blob)).load()
    except (pickle.UnpicklingError, AttributeError, ImportError, EOFError, IndexError) as exc:
        raise StoreError(f"the pickled model cannot be loaded ({exc})") from exc


def load_model(
    path: Any, name: str | None = None, *, load_estimator: bool = True, trust_pickle: bool = False
) -> ModelRecord:
    """Read /models/<name> (the only model when `name` is None).

    Parameters
    ----------
    path : path
        The store.
    name : str, optional
        Model name.
    load_estimator : bool
        Load the estimator; False reads the attributes (metrics, classes, ...) and energies only.
    trust_pickle : bool
        Load a legacy pickled model (format "pickle", written before skops). Unpickling executes code from the
        file: only for stores the user trusts. Without it such a model is refused (StoreError).

    A skops model is loaded only when every type it holds is trusted by skops or listed in
    `TRUSTED_MODEL_TYPES`; otherwise StoreError names the others.
    """
    path = Path(path)
    _require_store(path)
    with open_h5(path, "r") as f:
        names = sorted(f["models"]) if "models" in f else []
        if name is None:
            if len(names) != 1:
                raise StoreError(f"{path}: name the model; stored: {', '.join(names) or 'none'}")
            name = names[0]
        if name not in names:
            raise StoreError(f"{path}: no model {name!r}; stored: {', '.join(names) or 'none'}")
        require(f, path, (f"models/{name}" if load_estimator else f"models/{name}/energies",))
        g = f[f"models/{name}"]
        blob = g["model"][()].tobytes() if load_estimator else b""
        energies = g["energies"][()]
        attrs = {}
        for key, value in g.attrs.items():
            value = _attr(value)
            try:
                attrs[key] = json.loads(value) if key in _JSON_ATTRS else value
            except (TypeError, ValueError) as exc:
                raise StoreError(f"{path}: /models/{name} attribute {key!r} is not JSON ({exc})") from exc
    record = ModelRecord(name, None, energies, attrs)
    if not load_estimator:
        return record
    what = f"{path}: model {name!r}"
    if record.format == LEGACY_PICKLE:
        if not trust_pickle:
            raise StoreError(
                f"{what} is a pickle (written before sporep-hpc used skops): loading it would execute "
                "code from the file, so it is refused. Retrain it with `sporep-hpc classify`, or, only if "
                "you trust whoever wrote this store, pass --trust-pickle"
            )
        estimator = _unpickle_legacy(blob)
    elif record.format == MODEL_FORMAT:
        import skops.io

        _untrusted(blob, what)
        try:
            estimator = skops.io.loads(blob, trusted=list(TRUSTED_MODEL_TYPES))
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError, ImportError) as exc:
            raise StoreError(f"{what} cannot be loaded ({exc})") from exc
    else:
        raise StoreError(
            f"{what}: format must be one of {MODEL_FORMAT!r}, {LEGACY_PICKLE!r}; got {record.format!r}"
        )
    return ModelRecord(name, estimator, energies, attrs)
