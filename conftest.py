"""Settings for every test run, notebooks included."""

import os

# The NIST tables ship inside the package: tests run the default (offline) path.
os.environ.setdefault("NUMBA_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
