"""Settings for every test run, notebooks included."""

import os
from pathlib import Path

# These machines have no internet: the NIST tables come from ../shared beside the repo
# (CI sets the same variable); the notebook kernels inherit it.
os.environ.setdefault(
    "HYPERSPY_HEBT_DATA_DIR",
    str(Path(__file__).resolve().parent.parent / "shared" / "data" / "bote_salvat"),
)
os.environ.setdefault("NUMBA_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
