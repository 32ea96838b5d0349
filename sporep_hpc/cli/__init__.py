"""The `sporep-hpc` command: argparse subcommands, error-to-exit-code mapping, logging.

Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)`` (registering itself with ``set_defaults(run=...)``).
No numerics or HDF5 paths here: subcommands call the library.

Exit codes: 0 success; 1 internal error; 2 bad input or parameters;
3 store problem; 4 some structures failed (the run itself completed);
5 stopped by a signal (SIGTERM/SIGUSR1) with the journal consistent: rerun to resume.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from types import ModuleType

from .. import __version__
from ..errors import SporepError

SUBCOMMANDS = (
    "run", "info", "similarity", "neighbours", "classify", "predict", "report", "examples", "jobs", "split",
    "merge",
)

EPILOG = """\
typical session:
  mpirun -n 4 sporep-hpc run examples:batio3 my_cifs/ -o store.h5     compute spectra and fingerprints
  sporep-hpc info store.h5                                            what is in a store
  sporep-hpc similarity store.h5 --fingerprint kinetic --metric cosine --plots figs/
  sporep-hpc neighbours store.h5 -k 10 --query new.cif                stored structures nearest to new.cif
  sporep-hpc classify store.h5 --labels labels.csv --plots figs/
  sporep-hpc report store.h5                                          what the analysis found

output: results (tables, summaries, plans) on standard output; progress, warnings and errors on
        standard error (`sporep-hpc run ... --dry-run > plan.txt` keeps the plan)

exit codes: 0 ok, 1 internal error, 2 bad input or parameters, 3 store problem,
            4 some structures failed, 5 stopped by a signal (rerun the same command to resume)
"""

log = logging.getLogger("sporep_hpc")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one subparser per available subcommand module."""
    parser = argparse.ArgumentParser(
        prog="sporep-hpc",
        description="Spectral operator representations (SOREP) of crystals at database scale.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sporep-hpc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (on standard error)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


class MPIUnavailable(SporepError):
    """mpi4py cannot load an MPI library (exit code 2): the environment lacks one, not a bug."""

    exit_code = 2


def import_mpi() -> ModuleType:
    """``mpi4py.MPI`` for the subcommands that need MPI, or MPIUnavailable giving the commands that
    install an MPI library into this environment.

    PyPI's mpi4py wheel installs no MPI library: it loads one (MPICH's ``libmpi.so.12``, Open MPI's
    ``libmpi.so.40``) when ``mpi4py.MPI`` is imported, which otherwise raises ImportError (OSError or
    RuntimeError when ``MPI4PY_LIBMPI`` names a library that cannot be loaded).
    """
    try:
        from mpi4py import MPI
    except (ImportError, OSError, RuntimeError) as exc:
        python = shlex.quote(sys.executable)
        if isinstance(exc, ModuleNotFoundError) and exc.name == "mpi4py":
            problem, packages = "mpi4py is not installed", "mpi4py mpich"
        else:
            reason = "; ".join(line for line in str(exc).splitlines() if line.strip())
            problem, packages = f"mpi4py cannot load an MPI library ({reason})", "mpich"
        raise MPIUnavailable(
            f"{problem}. Install one into this environment: {python} -m pip install {packages} "
            f"(MPICH from PyPI); or with conda: conda install -c conda-forge mpi4py mpich (or openmpi); "
            f"or with a system MPI (Debian: apt-get install mpich libmpich-dev; a cluster: module load "
            f"an MPI), build mpi4py against it: {python} -m pip install --force-reinstall --no-cache-dir "
            f"--no-binary=mpi4py mpi4py"
        ) from exc
    return MPI


def setup_logging(rank: int = 0, verbose: bool = False) -> None:
    """Rank 0 logs at INFO (DEBUG with -v); other ranks only warnings, prefixed with their rank."""
    level = logging.DEBUG if verbose else logging.INFO
    prefix = "" if rank == 0 else f"[rank {rank}] "
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(prefix + "%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level if rank == 0 else logging.WARNING)
    log.propagate = False


def abort_other_ranks(code: int) -> None:
    """After an unexpected error in a run of several MPI ranks, the others may wait in a collective
    forever: abort them all (what `python -m mpi4py` does). SporepErrors are agreed on by all ranks
    before they are raised (STYLE.md §2.9), so they exit normally with their code."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized() and mpi.COMM_WORLD.size > 1:
        mpi.COMM_WORLD.Abort(code)


def log_error(command: str, exc: SporepError) -> None:
    """The one-line message of a SporepError (the CLI's error path)."""
    log.error("sporep-hpc %s: error: %s", command, exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `sporep-hpc`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    setup_logging(verbose=args.verbose)
    try:
        return int(args.run(args) or 0)
    except SporepError as exc:
        log_error(args.command, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("sporep-hpc %s: interrupted", args.command)
        abort_other_ranks(130)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (`sporep-hpc info store.h5 | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except Exception:
        log.exception("sporep-hpc %s: internal error (a bug: please report it with this log)", args.command)
        abort_other_ranks(1)
        return 1
