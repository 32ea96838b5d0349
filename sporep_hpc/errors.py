"""One exception hierarchy for sporep-hpc; the CLI maps it to exit codes."""


class SporepError(Exception):
    """Base class of every error sporep-hpc raises on purpose."""

    exit_code = 1


class InputError(SporepError):
    """A structure, file or band structure that cannot be used (exit code 2)."""

    exit_code = 2


class ParameterError(SporepError, ValueError):
    """A parameter outside its valid range or set (exit code 2)."""

    exit_code = 2


class StoreError(SporepError):
    """An HDF5 store that is missing, inconsistent or incompatible (exit code 3)."""

    exit_code = 3
