"""Build the Cython kernels of ext/ into sporep_hpc._ext.*.

LAPACK and BLAS come only through scipy.linalg.cython_lapack / cython_blas, so no
system BLAS is needed at build time. OpenMP is on unless SPOREP_NO_OPENMP=1 (for
compilers without it, e.g. Apple clang).
"""

import os
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

OPENMP = [] if os.environ.get("SPOREP_NO_OPENMP") == "1" else ["-fopenmp"]
# Developers may rebuild a single kernel: SPOREP_EXT=smearing python setup.py build_ext --inplace
ONLY = os.environ.get("SPOREP_EXT", "*")


def kernel(pyx: Path) -> Extension:
    return Extension(
        f"sporep_hpc._ext.{pyx.stem}",
        [str(pyx)],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3", *OPENMP],
        extra_link_args=OPENMP,
    )


setup(
    ext_modules=cythonize(
        [kernel(p) for p in sorted(Path("ext").glob(f"{ONLY}.pyx"))],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
