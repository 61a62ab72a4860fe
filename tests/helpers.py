"""Helpers shared by the tests (imported as ``from helpers import ...``; the fixtures
live in ``conftest.py``)."""

from pathlib import Path

import numpy as np

#: Files written by real Bruker and Velox software (../shared beside the repository).
INSTRUMENT_FILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "instrument_files"

TILTS = np.array([-70.0, -50.0, -30.0, -10.0, 0.0, 15.0, 35.0, 55.0, 70.0])


def make_series(n_x=16, n_slices=3, tilts=TILTS, lazy=False, noise=True, seed=0):
    """A small Ag/Au core-shell tilt series with real spectra."""
    from hyperspy_hebt.simulation import core_shell_phantom, project_volume, synthetic_tilt_series

    core, shell = core_shell_phantom(n_x, n_slices)
    ag = 0.2 * core + 0.8 * shell
    au = 0.8 * core + 0.2 * shell
    sinograms = {
        "Ag_La": 30 * project_volume(ag, tilts),
        "Au_Ma": 40 * project_volume(au, tilts),
    }
    return synthetic_tilt_series(
        sinograms, tilts, energy_axis_kev=(0.0, 0.02, 300), noise=noise, seed=seed, lazy=lazy
    )


def count_block_reads(signal) -> list:
    """Make a lazy signal record every block of its data that is read; return the record."""
    reads = []

    def counted(block):
        if block.size:  # dask calls it once on an empty block to learn the output type
            reads.append(block.shape)
        return block

    signal.data = signal.data.map_blocks(counted, dtype=signal.data.dtype)
    return reads
