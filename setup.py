"""Build hook for the C check kernel; all other metadata lives in pyproject.toml.

cffi's ``cffi_modules`` has no pyproject-only spelling, hence this file.
"""

from setuptools import setup

setup(cffi_modules=["validator/_fastcheck_build.py:ffibuilder"])
