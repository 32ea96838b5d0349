"""One declaration per setting: `Param` (type, default, range or choices, unit, help) and what is
derived from it (the check, the ``sporep-hpc run`` option), and the one parameter-difference routine.

As scikit-learn keeps ``_parameter_constraints`` beside each estimator, a setting is declared beside the
code that uses it (``kpoints.KDENSITY``, ``operators.PRECISION``, ``structures.MAX_ATOMS``, ...);
`sporep_hpc.config` lists them in two tables (`RUN_PARAMETERS`, `EXECUTION_OPTIONS`) from which the
dataclasses' checks, the command-line options, the TOML keys and the stored JSON are made. A computing
function checks its argument with the same declaration, so what the parser accepts is what the
computation accepts, with the same message.

Lowest layer: imports only the check helpers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._validation import _BRACKETS, check_choice, check_interval
from .errors import ParameterError

__all__ = ["ABSENT", "Difference", "Param", "diff_texts", "differences"]

_KINDS = (bool, int, float, str)


@dataclass(frozen=True)
class Param:
    """The declaration of one setting.

    Attributes
    ----------
    name : str
        Python name, TOML key and (with dashes) command-line flag ``--name``.
    default : object
        Default value (None: decided at run time; only with `optional`).
    help : str
        One line for ``--help`` (the default and unit are appended).
    kind : type
        bool, int, float or str.
    low, high : float or None
        Range of a number (None: unbounded), `closed` as in `check_interval`.
    closed : {"both", "left", "right", "neither"}
    choices : tuple of str or None
        Allowed values of a str (imported from the code that switches on them).
    unit : str
        Unit of a number, for messages and help.
    optional : bool
        None is accepted (and means "decided at run time").
    parse : callable or None
        Checks and normalises a value instead of the rules above (e.g. sizes with units, name lists);
        raises ParameterError naming `name`.
    flag : str or None
        Command-line flag when not ``--name`` (for a bool defaulting to True: the flag turning it off).
    metavar : str or None
        Placeholder in ``--help``.
    """

    name: str
    default: Any
    help: str
    kind: type = float
    low: float | None = None
    high: float | None = None
    closed: str = "both"
    choices: tuple[str, ...] | None = None
    unit: str = ""
    optional: bool = False
    parse: Callable[[Any], Any] | None = None
    flag: str | None = None
    metavar: str | None = None

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise TypeError(f"Param {self.name}: kind must be one of {_KINDS}; got {self.kind!r}")

    def check(self, value: Any) -> Any:
        """`value`, normalised (e.g. a size text to bytes), or ParameterError ("name must be ...; got v")."""
        if value is None and self.optional:
            return None
        if self.parse is not None:
            return self.parse(value)
        if self.choices is not None:
            check_choice(self.name, value, self.choices)
            return value
        if self.kind is bool:
            if type(value).__name__ not in ("bool", "bool_"):  # Python's or numpy's bool
                raise ParameterError(f"{self.name} must be true or false; got {value!r}")
            return bool(value)
        if self.kind is str:
            if not isinstance(value, str) or not value.strip():
                raise ParameterError(f"{self.name} must be a non-empty name; got {value!r}")
            return value
        check_interval(self.name, value, self.low, self.high, closed=self.closed, integer=self.kind is int,
                       unit=self.unit)
        return value

    @property
    def cli_flag(self) -> str:
        """The command-line flag of this setting."""
        return self.flag or "--" + self.name.replace("_", "-")

    def add_argument(self, group: Any) -> None:
        """Add this setting's option to an argparse parser or group (default None: "not given", so a
        TOML value or the declared default applies; the value is checked by `check` afterwards)."""
        if self.kind is bool:
            action = "store_false" if self.default else "store_true"
            group.add_argument(self.cli_flag, dest=self.name, action=action, default=None, help=self.help)
            return
        notes = []
        bounded = self.low is not None or self.high is not None
        if self.kind in (int, float) and self.parse is None and bounded:
            left, right = _BRACKETS[self.closed]
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            notes.append(f"in {left}{lo}, {hi}{right}")
        if self.default is not None:
            default = ",".join(self.default) if isinstance(self.default, tuple) else self.default
            notes.append(f"default {default}")
        unit = f" {self.unit}" if self.unit and notes else ""
        shown = f" ({'; '.join(notes)}{unit})" if notes else ""
        kwargs: dict[str, Any] = {"dest": self.name, "default": None, "help": self.help + shown}
        if self.choices is not None:
            kwargs["choices"] = self.choices
        elif self.parse is None and self.kind in (int, float):
            kwargs["type"] = self.kind
        if self.metavar:
            kwargs["metavar"] = self.metavar
        group.add_argument(self.cli_flag, **kwargs)


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


#: Stands for a key one side of a comparison lacks.
ABSENT = _Absent()


def _show(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class Difference:
    """One differing setting: dotted `path` (``fingerprint_specs.kinetic.width``), `old` and `new` value
    (ABSENT when missing). ``str()`` is the one text of a difference: ``kdensity: 0.2 -> 0.3``."""

    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.path}: {_show(self.old)} -> {_show(self.new)}"


def _same(a: Any, b: Any, rel_tol: float) -> bool:
    """Equal plain values: lists equal tuples item by item; true is not 1; floats within `rel_tol`."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, rel_tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if rel_tol and isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= rel_tol * max(abs(a), abs(b))
    return a == b


def differences(
    old: Mapping[str, Any], new: Mapping[str, Any], *, keys: Sequence[str] | None = None,
    rel_tol: float = 0.0, prefix: str = "",
) -> list[Difference]:
    """The settings that differ between two mappings (JSON values or `dataclasses.asdict`), sorted by key.

    Nested mappings are compared key by key (dotted paths); lists and tuples with equal items are equal;
    with `rel_tol`, floats within that relative tolerance are equal. `keys` limits the comparison
    (default: every key of either side).
    """
    out: list[Difference] = []
    for key in sorted(set(old) | set(new)) if keys is None else keys:
        a, b = old.get(key, ABSENT), new.get(key, ABSENT)
        path = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(differences(a, b, rel_tol=rel_tol, prefix=f"{path}."))
        elif not _same(a, b, rel_tol):
            out.append(Difference(path, a, b))
    return out


def diff_texts(old: Mapping[str, Any], new: Mapping[str, Any], **kwargs: Any) -> list[str]:
    """``["name: old -> new", ...]``: the texts of `differences` (same arguments)."""
    return [str(d) for d in differences(old, new, **kwargs)]
