"""Sizes checked before work (issue 12, point 6): the memory model of one structure and the budget.

The reference for the memory model is tracemalloc's peak of the numpy allocations of a real
`compute_record` (independent of the model); LAPACK's C workspaces are not traced, the model adds
them separately. The budget checks are exercised on `plan_records` (per structure) and
`check_memory_budget` (parameters that cannot fit any structure).
"""

import math
import tracemalloc

import pytest
from pymatgen.core import Lattice, Structure

from sporep_hpc.config import MAX_ATOMIC_VOLUME, build_config
from sporep_hpc.errors import ParameterError
from sporep_hpc.inputs.records import InputRecord
from sporep_hpc.parallel.plan import check_memory_budget, fingerprint_bytes, memory_estimate, plan_records
from sporep_hpc.pipeline import FingerprintSet, compute_record


def batio3(n=1):
    s = Structure(Lattice.cubic(4.0), ["Ba", "Ti", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return s * (n, n, n)


def silicon8():
    return Structure(Lattice.cubic(5.43), ["Si"] * 8, [
        [0, 0, 0], [0.25, 0.25, 0.25], [0.5, 0.5, 0], [0.75, 0.75, 0.25], [0.5, 0, 0.5], [0.75, 0.25, 0.75],
        [0, 0.5, 0.5], [0.25, 0.75, 0.75],
    ])


@pytest.mark.parametrize("operator", ["kinetic", "overlap", "huckel"])
@pytest.mark.parametrize(("name", "make", "kdensity", "precision"), [
    ("si8", silicon8, 0.2, 1e-12), ("batio3", batio3, 0.5, 1e-12),
    ("batio3-222", lambda: batio3(2), 0.5, 1e-12), ("si8", silicon8, 0.5, 1e-30),
    ("batio3-222", lambda: batio3(2), 0.5, 1e-30),
])
def test_memory_estimate_bounds_the_measured_peak(name, make, kdensity, precision, operator):
    # measured: estimate / traced peak = 1.2-3.9 for these cells (the translation count is a bound:
    # Steiner's formula over the doubled cell); an estimate below the peak would let a structure through
    # that does not fit, one far above (> 5x) would refuse structures that do. precision 1e-30 widens
    # the lattice sums (2-3x the translations of 1e-12): the estimate must follow.
    structure = make()
    # keep_cell: the model is checked on these cells, not on their primitive cells (issue 13.6)
    params = build_config(overrides={"kdensity": kdensity, "operator": operator, "precision": precision,
                                     "fingerprints": "kinetic,vbm_cbm", "keep_cell": True}).parameters
    fps = FingerprintSet.from_parameters(params)
    record = InputRecord(name, "test", "structure", structure)
    (entry,) = plan_records([record], params)
    compute_record(0, record, params, fps)  # warm the basis and screening caches: not per-structure memory
    tracemalloc.start()
    try:
        result, _ = compute_record(0, record, params, fps)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status == 1, result.error
    print(f"{name} {operator} precision {precision:g}: estimate / peak = {entry.memory / peak:.2f}")
    assert peak <= entry.memory <= 5 * peak, (peak, entry.memory)


def test_a_structure_over_the_budget_fails_alone():
    # keep_cell: the 40-atom cell as given, not its 5-atom primitive cell (issue 13.6)
    params = build_config(overrides={"kdensity": 0.3, "keep_cell": True}).parameters
    small = InputRecord("cu", "test", "structure", Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]]))
    big = InputRecord("big", "test", "structure", batio3(2))
    assert [e.kind for e in plan_records([small, big], params)] == ["structure", "structure"]
    # 16 MiB: Cu needs about 1 MB, the 40-atom cell (152 basis functions, 4 k-points) about 20 MB
    plan = plan_records([small, big], params, max_memory=16 * 2**20)
    assert plan[0].kind == "structure" and plan[1].kind == "failed"
    assert plan[1].error.startswith("structure 'big': needs about ")
    assert "(152 basis functions, 4 k-points), more than max_memory=16 MiB per rank" in plan[1].error


def test_parameters_too_big_for_any_structure_are_refused():
    # the cheapest structure: a 1-atom cell of MAX_ATOMIC_VOLUME, one basis function, one k-point
    params = build_config(overrides={"kdensity": 0.0128}).parameters  # 0.98e6 grid points
    fps = FingerprintSet.from_parameters(params)
    n_grid = (2 * math.pi / 0.0128) ** 3 / MAX_ATOMIC_VOLUME
    floor = memory_estimate(1, 1, int(n_grid), 1.0, fingerprint_bytes(fps))
    check_memory_budget(params, fps, floor)  # exactly fits
    check_memory_budget(params, fps, None)  # no budget known: nothing checked
    expected = r"^kdensity=0.0128 1/Å \(9.8\de\+05 k-points\) needs .* more than max_memory="
    with pytest.raises(ParameterError, match=expected):
        check_memory_budget(params, fps, floor - 1)
    wide = build_config(overrides={"fingerprints": ('{"name": "wide", "windows": [{"reference": "zero", '
                                                    '"e_min": 0, "e_max": 1, "n_energies": 1000000}]}',)})
    fps = FingerprintSet.from_parameters(wide.parameters)
    with pytest.raises(ParameterError, match=r"^fingerprints=.* \(a window of 1000000 energies\) needs"):
        check_memory_budget(wide.parameters, fps, 100 * 2**20)  # 67 × 8 MB of DOS partial sums > 100 MiB
