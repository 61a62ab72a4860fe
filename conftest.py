"""Settings for every test run, notebooks included."""

import os

# The NIST tables ship inside the package: tests run the default (offline) path.
os.environ.setdefault("NUMBA_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

# ``python -m hyperspy_hebt`` runs the command line on import: not a module to collect.
collect_ignore = ["hyperspy_hebt/__main__.py"]


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    """What every docstring example may use without importing it (HyperSpy's habit)."""
    import hyperspy.api as hs
    import numpy as np

    doctest_namespace["hs"] = hs
    doctest_namespace["np"] = np
