"""Absorption-corrected reconstructions of a prepared problem (SIRT or HEBT).

The loop itself works on arrays (:func:`hyperspy_hebt.absorption_correction.correct_absorption`);
this module feeds it the problem's line sinograms, a reconstruction that reruns the chosen
algorithm on corrected sinograms (:func:`.sirt.sirt_of` or :func:`.hebt.hebt_of`), the
quantification that :meth:`quantify_cross_section` would make, the detectors (given, or
from the metadata: :mod:`.detectors`) and the lines' mass attenuation coefficients, and
records what was applied in ``metadata.Reconstruction.Absorption``.

Every pass is computed: a voxel's path to a detector crosses other slices, so the whole
volume must be known at once. The results are in memory, lazy series included. The
composition-only passes run :meth:`.options.Absorption.preview_iterations` iterations and
the ray factors are computed on a grid ``Absorption.coarsening`` times coarser; the last
reconstruction has the user's iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import dask
import numpy as np

from .._units import nm_per_unit
from ..absorption_correction import RAY_FACTOR_GROUP_BYTES, correct_absorption
from ..physics.absorption import mass_attenuation_table
from ..tomography import get_projector
from .detectors import detectors_of
from .field import available_memory_bytes
from .options import Absorption
from .problem import Problem
from .quantify import quantify_cross_section

__all__ = ["corrected"]


def _on_grid(volume: np.ndarray, n_slices: int, n_x: int) -> np.ndarray:
    """A pass's data (the grid's padding kept) as ``(n_slices, n_z, n_x)``."""
    volume = np.asarray(volume, dtype=np.float32).reshape((n_slices,) + np.shape(volume)[-2:])
    assert volume.shape[-1] == n_x, "the passes keep the grid's padding columns"
    return volume


def _cropped(signal, geometry):
    """A reconstruction on the padded grid cut back to the columns under the scan."""
    if signal.data.shape[-1] == geometry.n_detector:
        return signal
    start = (geometry.n_x - geometry.n_detector) // 2
    cut = signal.isig[start:start + geometry.n_detector, :]
    assert cut.data.shape[-1] == geometry.n_detector
    return cut


def _pixel_size_nm(problem: Problem) -> float:
    axis = problem.layout.detector_axis
    per_unit = nm_per_unit(axis.units)
    if per_unit is None or not np.isfinite(axis.scale) or axis.scale <= 0:
        raise ValueError(
            f"The absorption correction needs the pixel size, and the scan axis "
            f"{axis.name!r} is calibrated as {axis.scale!r} {axis.units!r}: set its scale "
            "and units (nm or µm) first.")
    return float(axis.scale) * per_unit


#: Copies of the lines' volumes (on the padded grid, float32) the correction's peak holds:
#: the reconstructions and their fractions (cropped and on the grid), the next pass's
#: volumes, the kernels' working copies. Measured: 9.55 GB peak for 1.25 GB per copy on
#: the real-size lamella (benchmarks/real_pipeline.py --absorption; 7.6 copies, the
#: process itself included).
VOLUME_COPIES = 8


def check_memory(geometry, n_lines: int, n_slices: int) -> None:
    """Refuse a correction whose volumes would not fit in memory, with the estimate."""
    per_set = 4 * n_lines * n_slices * geometry.n_z * geometry.n_x
    needed = VOLUME_COPIES * per_set + 2 * RAY_FACTOR_GROUP_BYTES
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise MemoryError(
            f"The absorption correction needs about {needed / 2**30:.1f} GiB here "
            f"({VOLUME_COPIES} copies of {n_lines} lines x {n_slices} slices x "
            f"{geometry.n_z} x {geometry.n_x} voxels in float32, every pass in memory) and "
            f"{available / 2**30:.1f} GiB is available: bin the series, reconstruct fewer "
            "slices (a region), give thickness_nm or a smaller padding_px.")


def corrected(signal, problem: Problem, run_algorithm: Callable[[Problem, int], list],
              iterations: int, absorption: Absorption, detector_efficiency=1.0) -> list:
    """Reconstruct ``problem`` with ``run_algorithm``, absorption corrected.

    Parameters
    ----------
    signal : TomographicEDSSpectrum
        The series (for its metadata: beam energy, detectors).
    problem : Problem
        The prepared series.
    run_algorithm : callable
        (Problem, iterations) -> list of reconstruction signals (lines first), thin-film.
    iterations : int
        The reconstruction's iterations (the composition-only passes run
        ``absorption.preview_iterations(iterations)``).
    absorption : Absorption
        The settings (``correction`` True).
    detector_efficiency : float, dict or callable
        As for ``quantify_cross_section``: the quantification inside the loop.

    Returns
    -------
    list of Signal2D
        The last pass's reconstructions (thin-film equivalent: what the lines would
        give unabsorbed), with ``metadata.Reconstruction.Absorption``.

    Raises
    ------
    ValueError
        Two lines of one element, no pixel size, no detector geometry.
    AbsorptionNotConverged
        The composition kept changing (the message gives each pass).
    """
    names = problem.names
    elements = [name.split("_")[0] for name in names]
    if len(set(elements)) != len(elements):
        raise ValueError(f"absorption_correction needs one line per element (the composition "
                         f"sets the attenuation), got {names}: pass xray_lines with one each.")
    pixel_nm = _pixel_size_nm(problem)
    detectors = detectors_of(signal, absorption.detectors)
    table = mass_attenuation_table(names, elements)
    geometry = problem.field.geometry
    projector = get_projector(geometry)
    n_slices = problem.layout.n_slices
    # Every pass runs in memory: the stacks are small next to the spectra.
    measured, adf, weights = dask.compute(problem.eds, problem.adf, problem.field.weights)
    measured = [np.asarray(s, dtype=np.float32) for s in measured]
    in_memory = replace(problem, adf=adf, lazy=False,
                        field=replace(problem.field, weights=weights))
    check_memory(geometry, len(names), n_slices)
    latest: list = []  # the latest pass's signals only (each pass replaces the one before)

    def reconstruct_with(count):
        def reconstruct(sinograms):
            latest[:] = []
            # The padding columns kept: material beyond the scan absorbs (and emits) too.
            latest.extend(run_algorithm(replace(in_memory, eds=list(sinograms),
                                                keep_padding=True), count))
            return [_on_grid(r.data, n_slices, geometry.n_x) for r in latest[:len(names)]]
        return reconstruct

    preview_iterations = absorption.preview_iterations(iterations)

    def quantify(volumes):
        fractions = quantify_cross_section(
            signal, latest[:len(names)], factors=None, threshold="esf",
            composition_units="weight", detector_efficiency=detector_efficiency)
        return [_on_grid(f.data, n_slices, geometry.n_x) for f in fractions]

    result = correct_absorption(
        measured, reconstruct_with(iterations), quantify, elements, table, projector,
        pixel_nm, detectors.angles_deg, detectors.shares, absorption.density,
        absorption.max_iterations, absorption.tolerance, absorption.coarsening,
        None if preview_iterations == iterations else reconstruct_with(preview_iterations))
    passes = [h for h in result.history if isinstance(h["pass"], int)]
    last = passes[-1]
    record = {
        "method": "3D: attenuated forward model, iterated with quantification "
                  "(hyperspy_hebt.absorption_correction)",
        "mode": ("exact" if absorption.mode == "exact"
                 else "fast: composition passes at fewer iterations, ray factors on a "
                      "coarser grid"),
        "outer_iterations": len(passes) - 1,
        "preview_iterations": preview_iterations,
        "ray_factor_grid_coarsening": absorption.coarsening,
        "tolerance": absorption.tolerance,
        "largest_change": last["largest_change"],
        "detectors": detectors.as_metadata(),
        "density_g_cm3": ("estimated from the composition (anion packing / ideal mixing)"
                          if absorption.density is None else absorption.density),
        "pixel_size_nm": pixel_nm,
        "mass_attenuation_cm2_g": {line: dict(zip(elements, map(float, row)))
                                   for line, row in zip(names, table)},
        "mean_transmitted_share": dict(zip(names, last["mean_ray_factor"].values())),
        "mean_fractions_per_pass": [h["mean_fractions"] for h in passes],
        "mean_fractions_final": result.history[-1]["mean_fractions"],
        "limits": "attenuation from the listed elements only, inside the reconstruction "
                  "grid (the scan and its padding columns; beyond them, and beyond the slab "
                  "in depth, nothing absorbs)",
    }
    out = [_cropped(s, geometry) for s in latest]
    for signal_out in out:
        signal_out.metadata.set_item("Reconstruction.Absorption", record)
    return out
