"""A run over a directory mixing calculation folders and structure files (issue 13), at any rank count:
a VASP folder with vasprun.xml (DFT bands), a VASP folder without (CONTCAR), a Quantum ESPRESSO folder
(<prefix>.save/data-file-schema.xml), an ASE trajectory (last image), an ASE database and plain CIFs (ASE
reads and queries on every rank by itself: no hidden collective on its own COMM_WORLD). The store must be the
one-rank store (COMM_SELF on rank 0), every input one row, with the kinds and ids the input rules give.
"""

import numpy as np
import pytest
from _references import assert_same_store, structures, write_qe_folder, write_vasp_folder
from mpi4py import MPI

from sporep_hpc.config import build_config
from sporep_hpc.inputs import resolve_inputs
from sporep_hpc.parallel.driver import run
from sporep_hpc.store import open_store

pytestmark = pytest.mark.mpi

pytest.importorskip("ase")

# id -> kind of every input of the mixed directory
EXPECTED = {
    "cu": "structure", "db-row": "structure", "gaas-scf": "bands", "mp-149": "structure", "mp-2": "bands",
    "nacl": "structure", "relax": "structure",
}


@pytest.fixture
def mixed(comm, shared_tmp_path):
    d = shared_tmp_path / "mixed"
    if comm.rank == 0:
        import ase.build
        import ase.db
        import ase.io

        rng = np.random.default_rng(13)
        write_vasp_folder(d / "mp-149", rng, with_vasprun=False)
        write_vasp_folder(d / "mp-2", rng, with_vasprun=True)
        write_qe_folder(d / "gaas-scf", rng)
        images = []
        for i in range(3):
            a = ase.build.bulk("Si", "diamond", a=5.43)
            a.rattle(0.02, seed=i)
            images.append(a)
        ase.io.write(d / "relax.traj", images, parallel=False)  # rank 0 alone: no collective of ASE
        with ase.db.connect(str(d / "rows.db"), serial=True) as db:
            db.write(ase.build.bulk("Cu", "fcc", a=3.6), name="db-row")
        for name in ("nacl", "cu"):
            structures()[name].to(filename=str(d / f"{name}.cif"))
    comm.Barrier()
    return d


def config():
    return build_config(overrides={"kdensity": 0.5, "progress_interval": 0.5})


def test_mixed_directory_same_store_at_any_rank_count(comm, mixed, shared_tmp_path):
    assert {r.id: r.kind for r in resolve_inputs([str(mixed)])} == EXPECTED
    reference = shared_tmp_path / "serial.h5"
    if comm.rank == 0:
        run([str(mixed)], reference, config(), MPI.COMM_SELF)
    comm.Barrier()
    out = shared_tmp_path / "parallel.h5"
    report = run([str(mixed)], out, config(), comm)
    assert report.n_failed == 0 and report.n_done == len(EXPECTED), report.failures
    with open_store(out) as store:
        assert sorted(store.ids) == sorted(EXPECTED)
        for id, kind in EXPECTED.items():
            has_structure = store.atoms(store.index_of(id))[1].size > 0
            assert has_structure, (id, kind)  # bands inputs carry their structure to /structures
    if comm.rank == 0:
        assert_same_store(reference, out)
    comm.Barrier()
