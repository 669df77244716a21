"""Build hook for the C check kernel; all other metadata lives in pyproject.toml.

cffi's ``cffi_modules`` has no pyproject-only spelling, hence this file. The
kernel is optional: on a machine without a working C compiler the build warns
and vtoken installs without it, using the identical pure-Python twin
(``vtoken backend`` then says ``python``).
"""

import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Build the C kernel when a compiler works; otherwise warn and carry on without it."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler or platform failure
            self._skip(exc)

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - any compiler failure
            self._skip(exc)

    @staticmethod
    def _skip(exc: Exception) -> None:
        print(
            f"WARNING: the C check kernel could not be built ({type(exc).__name__}: {exc}); "
            "vtoken will use its pure-Python twin, which gives the same answers more slowly",
            file=sys.stderr,
        )


setup(
    cffi_modules=["validator/_fastcheck_build.py:ffibuilder"],
    cmdclass={"build_ext": OptionalBuildExt},
)
