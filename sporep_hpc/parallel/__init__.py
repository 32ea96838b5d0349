"""MPI execution of `sporep-hpc run` (DESIGN.md §4).

Modules: `tasks` (inputs, planning, cost model, computing one structure), `schedule`
(block ranges, LPT, RMA task counter), `journal` (per-rank checkpoint shards),
`progress` (progress line, summary), `driver` (the collective `run`).
Importing this package does not import mpi4py; communicators are always arguments.
"""
