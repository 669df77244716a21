"""cffi builder for the vtoken check kernel (out-of-line API mode).

Used by setup.py as ``cffi_modules=["validator/_fastcheck_build.py:ffibuilder"]``
(paths below are relative to the repository root, where setup.py runs).

For a local in-place build, run from the repository root::

    python validator/_fastcheck_build.py

which writes validator/_fastcheck_cffi.c and the extension module
validator/_fastcheck_cffi.*.so. The generated module is deliberately named
``_fastcheck_cffi`` so that its generated C file can never overwrite the
hand-written validator/_fastcheck.c.
"""

import os

from cffi import FFI

_HERE = os.path.dirname(os.path.abspath(__file__))

with open(os.path.join(_HERE, "_fastcheck.h"), encoding="utf-8") as _f:
    _CDEF = _f.read()

ffibuilder = FFI()
ffibuilder.cdef(_CDEF)
ffibuilder.set_source(
    "validator._fastcheck_cffi",
    "#include <stdint.h>\n#include <stddef.h>\n#include \"_fastcheck.h\"\n",
    sources=["validator/_fastcheck.c"],
    include_dirs=["validator"],
    # -O2 is measured faster than -O3 for the unrolled hashes. No -march:
    # the build must run on any x86-64 (faster paths are picked at run time).
    extra_compile_args=["-O2", "-std=gnu99", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
