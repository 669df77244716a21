"""vtoken's benchmarks: ``python -m bench`` (everything, one table) and ``pytest bench --benchmark-only``.

Not part of the default test run (``testpaths = ["tests"]``) nor of the installed package.
"""
