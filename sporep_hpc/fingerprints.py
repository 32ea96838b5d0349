"""SOREP fingerprints: smeared DOS sampled on energy windows around band-structure references.

A `Window` samples the DOS linearly on [reference + e_min, reference + e_max] (n_energies points) with its
own smearing; the reference is the Fermi level (``fermi``), a band edge (``vbm``, ``cbm``; both equal E_F
for a metal) or absolute zero (``zero``). A `FingerprintSpec` concatenates windows; its parameters
serialise to JSON and are compared (`check_compatible`) before fingerprints from different sources mix.

References other than ``zero`` come from the band structure: its `fermi_energy` when set, else the Fermi
level with the default smearing (see `sporep_hpc.bands`), which needs `n_electrons`.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import check_choice, check_interval
from .bands import BandStructure
from .errors import InputError, ParameterError
from .smearing import MAX_MP_ORDER, SMEARING_KINDS, Smearing
from .threads import resolve_threads

__all__ = [
    "DFT_PRESET", "KINDS", "KINETIC_MAX_EV", "MAX_ENERGIES", "PRESETS", "REFERENCES", "FingerprintSpec",
    "Window", "fingerprint", "get_spec", "make_preset", "source_kind", "spec_kinds",
]

REFERENCES = ("fermi", "vbm", "cbm", "zero")
#: Top of the ``kinetic`` preset's window (eV). The kinetic operator's spectrum in the valence basis is
#: positive and bounded; its top grows as atoms come closer (antibonding combinations of overlapping
#: orbitals). Measured with ano-valence (exp_to_discard 0.1) on every element Z = 1-92: the isolated atom
#: (12 Å box, Γ) reaches at most 798 eV (Lu, the 4f shell), and 1-atom fcc and bcc cells with nearest
#: neighbours at twice pymatgen's empirical atomic radius, and dimers at 0.9 × that distance (k-spacing
#: 0.5 Å⁻¹), at most 799 eV (Lu; then Yb 732, F 713, Tm 705; C 416, N 438, B 276; graphene 216). The
#: former 180 eV cut the top of B, C and N (hBN kept 28 of 32 states). 1000 eV leaves a 25 % margin.
KINETIC_MAX_EV = 1000.0
#: Kinds of spectra (DESIGN.md §8.2), by the prefix of a row's source: ``operator:<name>`` (computed
#: here) or ``dft:<code>:<file>`` (imported bands of a DFT code).
KINDS = ("operator", "dft")
#: The fingerprint band files get when none of a run's fingerprints applies to them (`spec_kinds`).
DFT_PRESET = "fermi"
#: Most sample energies of one window: the DOS kernel keeps 64 partial sums of the grid, so a window
#: of n energies needs about 67 × 8 × n bytes (0.5 GiB at this limit).
MAX_ENERGIES = 10**6


@dataclass(frozen=True)
class Window:
    """One energy window of a fingerprint.

    Attributes
    ----------
    reference : {"fermi", "vbm", "cbm", "zero"}
        Energy the window is centred on ("zero": absolute energies).
    e_min, e_max : float, eV
        Window bounds relative to the reference, e_min < e_max.
    n_energies : int, in [2, MAX_ENERGIES]
        Number of linearly spaced sample energies (both bounds included).
    smearing : str
        One of `sporep_hpc.smearing.SMEARING_KINDS`.
    width : float, eV, > 0
        Smearing width σ.
    order : int
        Methfessel-Paxton order.
    """

    reference: str
    e_min: float
    e_max: float
    n_energies: int
    smearing: str = "gaussian"
    width: float = 0.05
    order: int = 1

    def __post_init__(self) -> None:
        check_choice("reference", self.reference, REFERENCES)
        check_interval("e_min", self.e_min, None, None, unit="eV")
        check_interval("e_max", self.e_max, self.e_min, None, closed="neither", unit="eV")
        check_interval("n_energies", self.n_energies, 2, MAX_ENERGIES, integer=True)
        check_choice("smearing", self.smearing, SMEARING_KINDS)
        check_interval("width", self.width, 0.0, None, closed="neither", unit="eV")
        check_interval("order", self.order, 0, MAX_MP_ORDER, integer=True)
        for name in ("e_min", "e_max", "width"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "n_energies", int(self.n_energies))
        object.__setattr__(self, "order", int(self.order))

    @property
    def offsets(self) -> np.ndarray:
        """Sample energies relative to the reference: ndarray of shape (n_energies,), float64, eV."""
        return np.linspace(self.e_min, self.e_max, self.n_energies)

    @property
    def smearing_params(self) -> Smearing:
        """The window's smearing as a `Smearing`."""
        return Smearing(self.smearing, self.width, self.order)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (keys are the constructor arguments)."""
        return {
            "reference": self.reference, "e_min": self.e_min, "e_max": self.e_max,
            "n_energies": self.n_energies, "smearing": self.smearing, "width": self.width,
            "order": self.order,
        }


@dataclass(frozen=True)
class FingerprintSpec:
    """A named concatenation of windows.

    Attributes
    ----------
    name : str
    windows : tuple of Window
        At least one; features are the windows' samples in this order.
    """

    name: str
    windows: tuple[Window, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ParameterError(f"name must be a non-empty string; got {self.name!r}")
        windows = tuple(self.windows)
        if not windows or not all(isinstance(w, Window) for w in windows):
            raise ParameterError("windows must be a non-empty sequence of Window")
        object.__setattr__(self, "windows", windows)

    @property
    def n_features(self) -> int:
        """Total number of samples."""
        return sum(w.n_energies for w in self.windows)

    @property
    def energies(self) -> np.ndarray:
        """Sample energies relative to each window's reference: ndarray (n_features,), float64, eV."""
        return np.concatenate([w.offsets for w in self.windows])

    @property
    def references(self) -> tuple[str, ...]:
        """Reference of every feature: tuple of length n_features."""
        return tuple(w.reference for w in self.windows for _ in range(w.n_energies))

    @property
    def window_slices(self) -> tuple[slice, ...]:
        """Slice of the feature vector belonging to each window."""
        bounds = np.cumsum([0] + [w.n_energies for w in self.windows])
        return tuple(slice(int(a), int(b)) for a, b in itertools.pairwise(bounds))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters: name and the list of window dicts."""
        return {"name": self.name, "windows": [w.to_dict() for w in self.windows]}

    def to_json(self) -> str:
        """Parameters as a JSON string (round-trips exactly through `from_json`)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> FingerprintSpec:
        """Inverse of `to_json` (also accepts the decoded dict)."""
        try:
            data = json.loads(text) if isinstance(text, str) else dict(text)
            return cls(name=data["name"], windows=tuple(Window(**w) for w in data["windows"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ParameterError(f"invalid fingerprint specification: {exc}") from exc

    def check_compatible(self, other: FingerprintSpec) -> None:
        """Raise ParameterError unless `other` has the same windows (names may differ).

        Fingerprints are comparable only when every window has the same reference, bounds, sample count and
        smearing; floats are compared to 1e-12 relative so that JSON round trips never matter.
        """
        if not isinstance(other, FingerprintSpec):
            raise ParameterError(f"expected a FingerprintSpec, got {type(other).__name__}")
        if len(self.windows) != len(other.windows):
            raise ParameterError(
                f"fingerprints {self.name!r} and {other.name!r} are incompatible: "
                f"{len(self.windows)} vs {len(other.windows)} windows"
            )
        for i, (a, b) in enumerate(zip(self.windows, other.windows, strict=True)):
            da, db = a.to_dict(), b.to_dict()
            for key, va in da.items():
                vb = db[key]
                if isinstance(va, float):
                    same = math.isclose(va, vb, rel_tol=1e-12, abs_tol=1e-12)
                else:
                    same = va == vb
                if not same:
                    raise ParameterError(
                        f"fingerprints {self.name!r} and {other.name!r} are incompatible: window {i} "
                        f"{key} {va!r} vs {vb!r}"
                    )


def make_preset(
    name: str, smearing: str = "gaussian", width: float | None = None, order: int = 1
) -> FingerprintSpec:
    """A preset of the reference study with an optional other smearing.

    Presets (σ = 0.05 eV gaussian unless given; ``kinetic``: σ = 0.8 eV):

    - ``fermi``: fermi −5..+5 eV, 513 points
    - ``vbm``: vbm −2..+6 eV, 513; ``cbm``: cbm −6..+2 eV, 513
    - ``vbm_cbm``: vbm −2..+3σ and cbm −3σ..+2 eV, 257 each
    - ``vbm_fermi_cbm``: −1..+1 eV around vbm, fermi and cbm, 171 each
    - ``kinetic``: absolute energies (zero) 0..`KINETIC_MAX_EV` eV, 2048 points, for the kinetic operator's
      spectra (see `KINETIC_MAX_EV`; spacing 0.49 eV ≈ σ/1.6, so a Gaussian peak between two samples keeps
      ≥ 95 % of its height)

    Returns
    -------
    FingerprintSpec
    """
    check_choice("name", name, _PRESET_NAMES)
    sigma = (0.8 if name == "kinetic" else 0.05) if width is None else width
    check_interval("width", sigma, 0.0, None, closed="neither", unit="eV")

    def w(reference: str, lo: float, hi: float, n: int) -> Window:
        return Window(reference, lo, hi, n, smearing, sigma, order)

    windows = {
        "fermi": (w("fermi", -5.0, 5.0, 513),),
        "vbm": (w("vbm", -2.0, 6.0, 513),),
        "cbm": (w("cbm", -6.0, 2.0, 513),),
        "vbm_cbm": (w("vbm", -2.0, round(3 * sigma, 12), 257), w("cbm", round(-3 * sigma, 12), 2.0, 257)),
        "vbm_fermi_cbm": (w("vbm", -1.0, 1.0, 171), w("fermi", -1.0, 1.0, 171), w("cbm", -1.0, 1.0, 171)),
        "kinetic": (w("zero", 0.0, KINETIC_MAX_EV, 2048),),
    }[name]
    return FingerprintSpec(name, windows)


_PRESET_NAMES = ("fermi", "vbm", "cbm", "vbm_cbm", "vbm_fermi_cbm", "kinetic")
PRESETS: dict[str, FingerprintSpec] = {name: make_preset(name) for name in _PRESET_NAMES}


def get_spec(name_or_spec: str | FingerprintSpec | Window | Sequence[Window]) -> FingerprintSpec:
    """Resolve a preset name, a spec, one Window or a sequence of Windows to a FingerprintSpec.

    A JSON string produced by `FingerprintSpec.to_json` is accepted too. Custom window lists get the
    name ``"custom"``.
    """
    if isinstance(name_or_spec, FingerprintSpec):
        return name_or_spec
    if isinstance(name_or_spec, Window):
        return FingerprintSpec("custom", (name_or_spec,))
    if isinstance(name_or_spec, str):
        if name_or_spec.lstrip().startswith("{"):
            return FingerprintSpec.from_json(name_or_spec)
        check_choice("fingerprint", name_or_spec, PRESETS)
        return PRESETS[name_or_spec]
    if isinstance(name_or_spec, Sequence):
        return FingerprintSpec("custom", tuple(name_or_spec))
    raise ParameterError(
        f"fingerprint must be a preset name, a FingerprintSpec or a sequence of Window; got {name_or_spec!r}"
    )


def spec_kinds(spec: FingerprintSpec) -> tuple[str, ...]:
    """The kinds of spectra (`KINDS`) a fingerprint makes sense for.

    A window on absolute energies (reference ``zero``, e.g. the ``kinetic`` preset) only for operator
    spectra: each DFT code puts its energy zero elsewhere (VASP: the average electrostatic potential; QE:
    its own convention), so absolute DFT eigenvalues compare nothing. Windows around the Fermi level or
    a band edge suit both kinds.
    """
    return ("operator",) if any(w.reference == "zero" for w in spec.windows) else KINDS


def source_kind(source: str) -> str:
    """The kind (`KINDS`) of a row from its source (``operator:kinetic`` -> ``"operator"``); "" when
    unknown (rows of stores written before schema 1.3, or of inputs that could not be read)."""
    head = source.split(":", 1)[0]
    return head if head in KINDS else ""


def reference_energy(bands: BandStructure, reference: str) -> float:
    """The absolute energy (eV) of a window reference for a band structure."""
    if reference == "zero":
        return 0.0
    edges = bands.edges
    value = {"fermi": edges.fermi_energy, "vbm": edges.vbm, "cbm": edges.cbm}[reference]
    if math.isnan(value):
        raise InputError(f"reference {reference!r} is undefined for these bands (no state on that side)")
    return float(value)


def fingerprint(bands: BandStructure, windows: str | FingerprintSpec | Window | Sequence[Window],
                n_threads: int | None = None) -> np.ndarray:
    """SOREP fingerprint of a band structure: the DOS sampled on each window, concatenated.

    Parameters
    ----------
    bands : BandStructure
        Needs `fermi_energy` or `n_electrons` unless every window references ``zero``.
    windows : preset name, FingerprintSpec, Window or sequence of Window
    n_threads : int, optional
        OpenMP threads of the DOS kernel (the result does not depend on it).

    Returns
    -------
    ndarray of shape (n_features,), float64, states/eV/cell
    """
    if not isinstance(bands, BandStructure):
        raise ParameterError(f"bands must be a BandStructure; got {type(bands).__name__}")
    spec = get_spec(windows)
    nt = resolve_threads(n_threads)
    parts = []
    for window in spec.windows:
        energies = reference_energy(bands, window.reference) + window.offsets
        parts.append(bands._dos_impl(energies, window.smearing_params, nt))
    return np.concatenate(parts)
