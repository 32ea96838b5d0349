# sporep-hpc: two commands for a newcomer, `make demo` and `make test`.
# Everything installs into .venv; each step is skipped when already done.

VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
NP      ?= 2
MPIEXEC ?= mpiexec
PYTEST_ARGS ?=
DEPS_STAMP := $(VENV)/.deps-installed
EXT_STAMP  := $(VENV)/.ext-built
SYSTEM_PKGS := mpich libhdf5-mpich-dev pkg-config

LAPTOP  := .venv-laptop
LAPTOP_STAMP := $(LAPTOP)/.installed

.PHONY: install system-deps demo test test-serial test-fallback test-mpi test-laptop lint bench clean

install: $(EXT_STAMP)

# Debian's MPICH and the parallel HDF5 built for it; on a cluster without apt,
# the MPI and HDF5 already on PATH are used.
system-deps:
	@if command -v mpicc >/dev/null && pkg-config --exists hdf5-mpich 2>/dev/null; then \
	    echo "install: using $$(command -v mpicc) and HDF5 $$(pkg-config --modversion hdf5-mpich)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "install: apt-get install $(SYSTEM_PKGS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PKGS) >/dev/null; \
	elif command -v mpicc >/dev/null; then \
	    echo "install: no apt; using the MPI on PATH ($$(command -v mpicc)) and HDF5 from HDF5_DIR/pkg-config"; \
	else \
	    echo "install: need mpicc and a parallel HDF5 (Debian: apt-get install $(SYSTEM_PKGS))"; exit 2; \
	fi

$(DEPS_STAMP): pyproject.toml | system-deps
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools>=77" wheel
	$(PIP) install -q numpy scipy "Cython>=3" pkgconfig
	@if $(PY) -c "import mpi4py" 2>/dev/null; then echo "install: mpi4py already present"; else \
	    echo "install: building mpi4py against $$(command -v mpicc)"; \
	    $(PIP) install -q --no-binary=mpi4py --no-build-isolation mpi4py; fi
	@if $(PY) -c "import h5py, sys; sys.exit(not h5py.get_config().mpi)" 2>/dev/null; then \
	    echo "install: parallel h5py already present"; \
	else \
	    echo "install: building h5py against parallel HDF5 (a few minutes, cached afterwards)"; \
	    CC=mpicc HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-mpich \
	        $(PIP) install -q --no-binary=h5py --no-build-isolation h5py; \
	fi
	$(PIP) install -q --no-build-isolation -e ".[test]"
	$(PY) -c "import h5py, mpi4py.MPI as M; assert h5py.get_config().mpi, 'h5py lacks MPI'; print('install:', M.Get_library_version().splitlines()[0], '| h5py', h5py.__version__, 'mpio')"
	touch $@

$(EXT_STAMP): $(DEPS_STAMP) setup.py $(wildcard ext/*.pyx ext/*.pxd)
	$(PY) setup.py -q build_ext --inplace -j 2
	touch $@

demo: install
	@mkdir -p demo
	@start=$$(date +%s); \
	for op in kinetic huckel; do \
	  fp=$$( [ $$op = huckel ] && echo fermi || echo kinetic ); \
	  $(MPIEXEC) -n $(NP) $(VENV)/bin/sporep-hpc run examples:batio3 "examples:cnt?max_atoms=200" -o demo/$$op.h5 \
	    --operator $$op --fingerprints $$fp --restart fresh || exit $$?; \
	  $(MPIEXEC) -n $(NP) $(VENV)/bin/sporep-hpc similarity demo/$$op.h5 --fingerprint $$fp --metric cosine \
	    --neighbours 0 --plots demo || exit $$?; \
	  $(VENV)/bin/sporep-hpc classify demo/$$op.h5 --fingerprint $$fp --labels property:electronic \
	    --where "diameter>=6" --plots demo || exit $$?; \
	  $(VENV)/bin/sporep-hpc predict demo/$$op.h5 --model demo/$$op.h5 -o demo/$${op}_predictions.csv || exit $$?; \
	done; \
	echo; echo "==================== sporep-hpc demo report ===================="; \
	$(VENV)/bin/sporep-hpc report demo/kinetic.h5 demo/huckel.h5 --plots demo || exit $$?; \
	echo "demo wall time: $$(( $$(date +%s) - start )) s on $(NP) ranks (budget: 180 s on 2 idle cores)"

# Serial suite, the serial-HDF5 fallback, the MPI suite at 2 and 3 ranks, then the laptop install.
test: install test-serial test-fallback test-mpi test-laptop

test-serial:
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

test-fallback:
	SPOREP_FORCE_SERIAL_HDF5=1 $(PY) -m pytest -q -m mpi tests/mpi $(PYTEST_ARGS)

test-mpi:
	$(MPIEXEC) -n 2 $(PY) -m mpi4py -m pytest -q -m mpi tests/mpi $(PYTEST_ARGS)
	$(MPIEXEC) -n 3 $(PY) -m mpi4py -m pytest -q -m mpi tests/mpi $(PYTEST_ARGS)

# The laptop path, as README's "Install" documents it: `pip install ".[mpich]"` (PyPI's mpich wheel,
# the mpi4py wheel, serial h5py; no system MPI involved); its MPI suite runs from outside the source tree.
$(LAPTOP_STAMP): pyproject.toml setup.py $(wildcard ext/*.pyx ext/*.pxd sporep_hpc/*.py sporep_hpc/*/*.py)
	test -x $(LAPTOP)/bin/python || python3 -m venv $(LAPTOP)
	$(LAPTOP)/bin/python -m pip install -q --upgrade pip
	$(LAPTOP)/bin/python -m pip install -q ".[mpich]" pytest pytest-timeout
	touch $@

test-laptop: $(LAPTOP_STAMP)
	cd /tmp && $(CURDIR)/$(LAPTOP)/bin/mpiexec -n 2 $(CURDIR)/$(LAPTOP)/bin/python -m mpi4py -m pytest \
	    -q -p no:cacheprovider -m mpi $(CURDIR)/tests/mpi $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check sporep_hpc tests benchmarks

bench: install
	$(PY) benchmarks/bench_dos.py
	$(PY) benchmarks/bench_operators.py
	$(PY) benchmarks/scaling.py --repeats 3

clean:
	rm -rf build $(LAPTOP) demo bench-out .pytest_cache .ruff_cache $(EXT_STAMP) sporep_hpc/_ext/*.so ext/*.c ext/*.html
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
