"""`sporep-hpc run`: compute spectra and fingerprints of many structures into one HDF5 store.

Launch under MPI as ``mpiexec -n N sporep-hpc run ...`` (or ``python -m mpi4py -m sporep_hpc run``).
Threads per rank are fixed here, before the kernels run (BLAS, loaded with numpy by the parsers, is
limited through threadpoolctl). The options are made from the declarations of `sporep_hpc.config`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..config import EXECUTION_OPTIONS, RUN_PARAMETERS, build_config, load_toml
from ..threads import resolve_threads, threads_per_rank

log = logging.getLogger("sporep_hpc")

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")

DESCRIPTION = """\
Compute operator spectra and SOREP fingerprints of crystal structures and write one HDF5 store.

Inputs (id: the file's stem; under a directory, its relative path without the suffix):
  CIF, POSCAR/CONTCAR, *.vasp, pymatgen JSON   pymatgen; several structures: <stem>-<i>
  extended XYZ (.xyz, .extxyz)                 ASE; every frame, <stem>-<i>; info keys as properties
  .traj, pw.x output, OUTCAR, XDATCAR, .xsf    ASE; the last image (--images all: <stem>@<i>)
  ASE database (.db)                           one structure per row: its name key, else <stem>@<row id>
  pw.x input (.pwi, .in), other ASE formats    ASE, recognised by content when given by name
  VASP folder (vasprun.xml, CONTCAR, POSCAR)   one input, id the folder: bands of vasprun.xml, else
                                               CONTCAR, else POSCAR (-v logs the choice)
  QE folder (*.save/data-file-schema.xml, or one pw.x output and its inputs)   one input, id the
                                               folder: bands of the XML, else the output's last image
  QE XML (data-file-schema.xml, <espresso>)    DFT bands; SCF not converged fails (--allow-unconverged)
  vasprun*.xml, *.npz, our own *.h5 stores     imported bands (a store: its computed rows)
  pymatgen BandStructure JSON                  imported bands on a uniform k-mesh (line mode refused)
  examples:cnt?max_atoms=120, examples:batio3, examples:aflow   built-in sets
  directories                                  searched recursively; a calculation folder is one input
  A Wannier90 *_hr.dat is not a structure: a failed row when given, skipped in directories.

Progress is journaled in <store>.journal/: rerunning the same command resumes a killed or signalled
run (SIGTERM/SIGUSR1 stop cleanly after the current task, exit code 5). Rerunning it on a complete
store made with the same parameters and inputs computes nothing and says so (same exit code as the
first run). Changed parameters or inputs are refused, and an existing store is never overwritten,
unless --restart fresh. Exit code 4: the store was written but some structures failed (reasons in
the summary and in `sporep-hpc info`).

The summary (with --dry-run: the plan, costs in estimated core-seconds) goes to standard output,
progress and messages to standard error: `sporep-hpc run ... --dry-run > plan.txt` keeps the plan.

A --config TOML file holds the same settings (flags override it), flat or in two tables:
  [parameters]                    # stored in the store; a resumed run must keep them
  kdensity = 0.15                 # 1/Å
  fingerprints = ["kinetic", "vbm_cbm"]
  max_atoms = 120
  [execution]                     # never change the results
  schedule = "static"
  threads = 2
  max_memory = "4GiB"             # per rank (default: available memory / ranks on the node)
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="compute spectra and fingerprints into a store (MPI)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="files, directories, examples:<spec>, band files")
    p.add_argument("-o", "--output", required=True, help="the HDF5 store to write")
    p.add_argument("--config", help="TOML file with run settings (flags override it)")
    g = p.add_argument_group("parameters (stored with the results; a restart must keep them)")
    for param in RUN_PARAMETERS:
        param.add_argument(g)
    e = p.add_argument_group("execution (never changes the results)")
    for param in EXECUTION_OPTIONS:
        param.add_argument(e)
    e.add_argument("--dry-run", action="store_true",
                   help="print the task plan (estimated core-seconds per structure and per rank) and exit")
    p.set_defaults(run=run_command)


def _overrides(args) -> dict:
    return {p.name: getattr(args, p.name) for p in RUN_PARAMETERS + EXECUTION_OPTIONS}


def set_thread_environment(n_threads: int) -> None:
    """Export the OpenMP/BLAS thread counts for this rank (effective for libraries not yet loaded)."""
    for var in THREAD_VARIABLES:
        os.environ[var] = str(n_threads)
    if "numpy" in sys.modules:  # BLAS already loaded (e.g. by another subcommand's parser): limit it now
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            log.warning("numpy was imported before the thread count was set; BLAS may use too many threads")
        else:
            threadpool_limits(limits=n_threads)


def check_launch(comm) -> None:
    """Warn when COMM_WORLD does not match SLURM's task count (srun/mpirun mix-up)."""
    ntasks = os.environ.get("SLURM_NTASKS")
    if ntasks and ntasks.isdigit() and int(ntasks) != comm.size and comm.rank == 0:
        log.warning(
            "MPI has %d rank(s) but SLURM_NTASKS=%s: launched with the wrong launcher? "
            "(several serial copies of one job would each write the same store)",
            comm.size, ntasks,
        )


def _leave_mpi(comm, MPI) -> None:
    """Before a non-zero exit that every rank agreed on: under `python -m mpi4py` such an exit would
    call MPI_Abort, so synchronise and finalize MPI first, and the processes exit normally."""
    comm.Barrier()
    if "mpi4py.run" in sys.modules and not MPI.Is_finalized():
        MPI.Finalize()


def _exit_now(exc, MPI) -> None:
    """End the process after a failed write (`IOFailure`): HDF5's state is then undefined and h5py's
    finalizers could crash the interpreter at exit, so the message is printed, MPI finalized and the
    process left without them (the journal on disk is consistent)."""
    from . import log_error

    log_error("run", exc)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    if not MPI.Is_finalized():
        MPI.Finalize()
    os._exit(exc.exit_code)


def run_command(args) -> int:
    from . import import_mpi, setup_logging

    MPI = import_mpi()
    comm = MPI.COMM_WORLD
    setup_logging(rank=comm.rank, verbose=getattr(args, "verbose", False))
    check_launch(comm)
    from ..errors import SporepError

    try:  # same files and flags on every rank: the same error everywhere
        config = build_config(load_toml(args.config) if args.config else None, _overrides(args))
    except SporepError:
        _leave_mpi(comm, MPI)
        raise

    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    ranks_on_node = node.size
    node.Free()
    n_threads = resolve_threads(config.execution.threads, fallback=threads_per_rank(ranks_on_node))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if ranks_on_node * n_threads > cores and comm.rank == 0:
        log.warning("%d ranks x %d threads on %d cores: oversubscribed", ranks_on_node, n_threads, cores)
    set_thread_environment(n_threads)

    from ..parallel.driver import IOFailure, StopFlag, handle_signals, run

    stop = StopFlag()
    try:
        with handle_signals(stop):
            report = run(
                args.inputs, args.output, config, comm, n_threads=n_threads, dry_run=args.dry_run, stop=stop
            )
    except SporepError as exc:
        if comm.size > 1 and not getattr(exc, "agreed", False):
            log.error("sporep-hpc run: error on rank %d: %s; aborting all ranks", comm.rank, exc)
            comm.Abort(exc.exit_code)
        _leave_mpi(comm, MPI)  # every rank raised the same error: exit normally with its code
        if isinstance(exc, IOFailure):
            _exit_now(exc, MPI)
        raise
    except Exception:
        if comm.size > 1:  # the other ranks may wait in a collective: never leave them hanging
            log.exception("sporep-hpc run: internal error on rank %d; aborting all ranks", comm.rank)
            comm.Abort(1)
        raise
    if comm.rank == 0:  # results to stdout (`> plan.txt`), logs and progress to stderr
        print_report(report, args.dry_run)
    if report.exit_code:
        _leave_mpi(comm, MPI)
    else:
        comm.Barrier()  # rank 0 has printed the summary before any rank exits
    return 0 if args.dry_run else report.exit_code


def print_report(report, dry_run: bool) -> None:
    """The task plan of a dry run, else the end-of-run summary, on standard output (rank 0 calls it)."""
    from ..parallel.progress import plan_table, summary_table

    text = plan_table(report.plan, report.rank_costs, report.threads) if dry_run else summary_table(report)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
