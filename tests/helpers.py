"""Helpers shared by the tests (imported as ``from helpers import ...``; the fixtures
live in ``conftest.py``)."""

import functools
from pathlib import Path

import numpy as np

#: Files written by real Bruker and Velox software (../shared beside the repository).
INSTRUMENT_FILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "instrument_files"

TILTS = np.array([-70.0, -50.0, -30.0, -10.0, 0.0, 15.0, 35.0, 55.0, 70.0])


def make_series(n_x=16, n_slices=3, tilts=TILTS, lazy=False, noise=True, seed=0, dose=1.0):
    """A small Ag/Au core-shell tilt series with real spectra (``dose`` scales the counts)."""
    from hyperspy_hebt.simulation import core_shell_phantom, project_volume, synthetic_tilt_series

    core, shell = core_shell_phantom(n_x, n_slices)
    ag = 0.2 * core + 0.8 * shell
    au = 0.8 * core + 0.2 * shell
    sinograms = {
        "Ag_La": 30 * dose * project_volume(ag, tilts),
        "Au_Ma": 40 * dose * project_volume(au, tilts),
    }
    return synthetic_tilt_series(
        sinograms, tilts, energy_axis_kev=(0.0, 0.02, 300), noise=noise, seed=seed, lazy=lazy
    )


def counting_phantom(n: int = 48, n_tilts: int = 29, seed: int = 0):
    """The paper's core-shell slice (2 slices) at a few counts per pixel, for the Poisson
    solvers: ``(truth, projector, noiseless counts, Poisson counts)``."""
    from hyperspy_hebt.simulation import core_shell_phantom
    from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector

    core, shell = core_shell_phantom(n, 2)
    truth = (3.0 * (0.2 * core + 0.8 * shell)).astype(np.float32)
    projector = get_projector(ParallelBeamGeometry(tuple(np.linspace(-70, 70, n_tilts)), n))
    clean = projector.forward(truth)
    noisy = np.random.default_rng(seed).poisson(clean).astype(np.float32)
    return truth, projector, clean, noisy


def count_block_reads(signal) -> list:
    """Make a lazy signal record every block of its data that is read; return the record."""
    reads = []

    def counted(block):
        if block.size:  # dask calls it once on an empty block to learn the output type
            reads.append(block.shape)
        return block

    signal.data = signal.data.map_blocks(counted, dtype=signal.data.dtype)
    return reads


@functools.lru_cache(maxsize=4)
def absorbed_grain(n: int, tilts: tuple, detectors: tuple, dose_electrons: float = 3.121e8):
    """The silicate grain's line counts and their absorbed sinograms, per detector.

    Simulated once per session (the independent path integral is the slow part; two test
    modules use the same series). Returns ``(phantom, counts, table, per_detector)`` with
    ``per_detector[line]`` of shape ``(len(detectors), slices, tilts, n)``.
    """
    from hyperspy_hebt.physics.absorption import attenuation_per_px, mass_attenuation_table
    from hyperspy_hebt.simulation import (
        attenuated_projections,
        silicate_grain,
        thin_film_line_counts,
    )

    elements, lines = ["O", "Mg", "Si", "Fe"], ["O_Ka", "Mg_Ka", "Si_Ka", "Fe_Ka"]
    phantom = silicate_grain(n)
    counts = thin_film_line_counts(phantom.weight_fractions, lines, 200.0,
                                   pixel_size_nm=phantom.pixel_size_nm,
                                   density=phantom.density_g_cm3,
                                   dose_electrons=dose_electrons)
    table = mass_attenuation_table(lines, elements)
    fractions = np.stack([phantom.weight_fractions[e] for e in elements])
    per_detector = {
        line: attenuated_projections(
            counts[line], attenuation_per_px(fractions, phantom.density_g_cm3, table[i],
                                             phantom.pixel_size_nm),
            list(tilts), list(detectors), step_px=0.5)
        for i, line in enumerate(lines)}
    return phantom, counts, table, per_detector


def interior_voxels(n_x: int, n_slices: int) -> np.ndarray:
    """The core-shell particle's voxels two or more inside its surface, slice by slice."""
    from scipy import ndimage as ndi

    from hyperspy_hebt.simulation import core_shell_phantom

    core, shell = core_shell_phantom(n_x, n_slices)
    return ndi.binary_erosion((core + shell) > 0.5, structure=np.ones((1, 3, 3)), iterations=2)


def variances_of(signals) -> np.ndarray:
    """The ``Noise_properties.variance`` data of each signal, stacked."""
    return np.stack([s.metadata.Signal.Noise_properties.variance.data for s in signals])


def calibration_ratio(predicted_variance, actual_std, interior) -> list:
    """RMS predicted standard deviation over RMS actual one, interior voxels of each line.

    Over the voxels with a defined (finite) prediction; at most a third may lack one.
    """
    defined = interior & np.all(np.isfinite(predicted_variance), axis=0)
    assert defined.sum() >= 2 / 3 * interior.sum()
    return [float(np.sqrt(predicted_variance[i][defined].mean()
                          / (actual_std[i][defined] ** 2).mean()))
            for i in range(len(actual_std))]
