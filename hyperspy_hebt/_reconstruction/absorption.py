"""Absorption-corrected reconstructions of a prepared problem (SIRT or HEBT).

The loop itself works on arrays (:func:`hyperspy_hebt.absorption_correction.correct_absorption`).
Its passes only estimate the composition that sets the attenuation, so they run on a grid
``Absorption.coarsening`` times coarser (the series' maps binned onto it,
:class:`~hyperspy_hebt.tomography.coarse_grid.CoarseGrid`) when the object is large
enough there (:data:`MIN_INTERIOR_SHARE`), as SIRT at the user's iterations, quantified as
:meth:`quantify_cross_section` would (computed factors, ESF threshold). The settled
composition's ray sums are interpolated back to the series' rays, the maps divided by the
resulting factors, and the user's algorithm (SIRT or HEBT) runs once on them at the user's
iterations: lazy and distributed like an uncorrected run, cropped to the scan as usual.
The detectors (given, or from the metadata: :mod:`hyperspy_hebt.detectors`), the lines'
mass attenuation coefficients and what was applied are recorded in
``metadata.Reconstruction.Absorption``.

``Absorption.coarsening`` 1 (``absorption_correction="exact"``) runs the passes on the
reconstruction's own grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import dask
import dask.array as da
import numpy as np
from scipy import ndimage

from .._units import nm_per_unit
from ..absorption_correction import RAY_FACTOR_GROUP_BYTES, correct_absorption, factors_of
from ..detectors import detectors_of
from ..physics.absorption import mass_attenuation_table
from ..quantification import composition_fractions_of, esf_threshold, total_of
from ..tomography import get_projector, sirt
from ..tomography.coarse_grid import CoarseGrid
from ..tomography.geometry import slab_support
from .blocks import kernel_backend
from .field import available_memory_bytes
from .intensities import window_share_of
from .options import Absorption, RunOptions
from .problem import Problem
from .quantify import _beam_energy, _factors

__all__ = ["corrected"]


def _pixel_size_nm(problem: Problem) -> float:
    axis = problem.layout.detector_axis
    per_unit = nm_per_unit(axis.units)
    if per_unit is None or not np.isfinite(axis.scale) or axis.scale <= 0:
        raise ValueError(
            f"The absorption correction needs the pixel size, and the scan axis "
            f"{axis.name!r} is calibrated as {axis.scale!r} {axis.units!r}: set its scale "
            "and units (nm or µm) first.")
    return float(axis.scale) * per_unit


#: Copies of the lines' volumes on the passes' grid (float32) that a pass holds at its
#: peak: the reconstructions, their fractions, the attenuation of every line, SIRT's
#: working copies. Measured: benchmarks/real_pipeline.py --absorption
#: (docs/user_guide/absorption.md).
VOLUME_COPIES = 8


def check_memory(geometry, n_lines: int, n_slices: int) -> None:
    """Refuse a correction whose passes would not fit in memory, with the estimate."""
    per_set = 4 * n_lines * n_slices * geometry.n_z * geometry.n_x
    needed = VOLUME_COPIES * per_set + 2 * RAY_FACTOR_GROUP_BYTES
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise MemoryError(
            f"The absorption correction's passes need about {needed / 2**30:.1f} GiB here "
            f"({VOLUME_COPIES} copies of {n_lines} lines x {n_slices} slices x "
            f"{geometry.n_z} x {geometry.n_x} voxels in float32, in memory) and "
            f"{available / 2**30:.1f} GiB is available: bin the series, reconstruct fewer "
            "slices (a region), give thickness_nm or a smaller padding_px, or leave "
            "absorption_correction=True (not 'exact': its passes run on a coarser grid).")


def _divided(sinogram, factors: np.ndarray):
    """A (possibly lazy) sinogram divided by in-memory factors, chunked alike."""
    if isinstance(sinogram, da.Array):
        return sinogram / da.from_array(factors, chunks=sinogram.chunks)
    return np.asarray(sinogram, np.float32) / factors


#: Share of the object's voxels (on the passes' coarse grid) that must lie a whole coarse
#: voxel inside its surface: below it the object is too few coarse voxels across for its
#: paths, and the passes run on the reconstruction's own grid instead. Measured: a
#: 20-voxel grain (10 coarse voxels across) 0.53, O then read 1.8 wt% low against 1.0 on
#: the fine grid; a 200 nm lamella 5 coarse voxels thick (6 within its thickness
#: support) 0.67, O 0.46 wt% off against 0.01; 32- and 40-voxel grains 0.69 and 0.75,
#: within 0.13 wt% of the fine grid; the real-size lamella (benchmarks/real_pipeline.py)
#: 0.82.
MIN_INTERIOR_SHARE = 0.7


class _Passes:
    """The composition passes on one grid: the binned maps, SIRT and quantification."""

    def __init__(self, problem: Problem, measured: np.ndarray, weights, factor: int,
                 iterations: int, run: RunOptions, eds_factors: np.ndarray):
        field = problem.field
        self.grid = CoarseGrid(field.geometry, problem.layout.n_slices, factor)
        self.geometry = self.grid.coarse_geometry
        self.sinograms, ray_weights = self.grid.bin_rays(measured, weights)
        shape = self.sinograms.shape[1:]
        self.ray_weights = (None if np.all(ray_weights == 1) else np.broadcast_to(
            ray_weights, self.sinograms.shape).reshape((-1,) + shape[1:]))
        self.projector = get_projector(self.geometry)
        half = field.half_thickness_px
        self.support = slab_support(self.geometry, None if half is None else half / factor)
        self.iterations, self.run, self.eds_factors = iterations, run, eds_factors
        self.backend = kernel_backend(run.backend, lazy=False)
        self._first: tuple | None = None

    def reconstruct(self, sinograms: list) -> list:
        """SIRT of each line's sinograms (the passes only estimate the composition)."""
        shape = self.sinograms.shape[1:]
        stack = np.stack(sinograms).reshape((-1,) + shape[1:])
        volumes = sirt(self.projector, stack, self.iterations, self.run.relaxation,
                       self.run.positivity, ray_weights=self.ray_weights,
                       backend=self.backend, support=self.support)
        return list(volumes.reshape((len(sinograms), shape[0]) + volumes.shape[1:]))

    def quantify(self, volumes: list) -> list:
        """Weight fractions as ``quantify_cross_section``'s defaults give them."""
        if self._first is not None and all(a is b for a, b in zip(self._first[0], volumes)):
            fractions, self._first = self._first[1], None  # made by interior_share
            return fractions
        threshold = esf_threshold(total_of(volumes, self.eds_factors)).threshold
        return composition_fractions_of(volumes, self.eds_factors, threshold)

    def interior_share(self, volumes: list) -> float:
        """Share of the object's voxels a whole voxel inside its surface.

        The fractions are kept for the loop's first :meth:`quantify` of these volumes.
        """
        fractions = self.quantify(volumes)
        self._first = (list(volumes), fractions)
        inside = np.nan_to_num(np.stack(fractions)).sum(0) > 0
        count = int(inside.sum())
        if not count:
            return 0.0
        # The grid's own edges are no surface: the first and last slices are where the
        # scan stops, and a lamella runs on beyond the padding. Extended there, not eroded.
        eroded = ndimage.binary_erosion(np.pad(inside, 1, mode="edge"))[1:-1, 1:-1, 1:-1]
        return float(eroded.sum()) / count


def corrected(signal, problem: Problem, run_algorithm: Callable[[Problem, int], list],
              iterations: int, absorption: Absorption, run: RunOptions,
              detector_efficiency=1.0, poisson: bool = False) -> list:
    """Reconstruct ``problem`` with ``run_algorithm``, absorption corrected.

    Parameters
    ----------
    signal : TomographicEDSSpectrum
        The series (for its metadata: beam energy, detectors).
    problem : Problem
        The prepared series (its maps in memory: ``prepare(..., compute=True)``).
    run_algorithm : callable
        (Problem, iterations) -> list of reconstruction signals (lines first), thin-film.
    iterations : int
        The reconstruction's iterations (the composition passes' SIRT runs as many).
    absorption : Absorption
        The settings (``correction`` True).
    run : RunOptions
        Relaxation, positivity and backend, for the composition passes' SIRT too.
    detector_efficiency : float, dict or callable
        As for ``quantify_cross_section``: the quantification inside the loop.
    poisson : bool
        ``run_algorithm`` fits the counts' Poisson likelihood: it gets the ray factors ``c``
        as each line's ray weights too (:attr:`.problem.Problem.line_weights`). The
        likelihood of ``y / c`` weighted by ``c``, ``sum c (Wx) - y log(Wx)``, is the
        attenuated model's, ``E[y] = c Wx``, up to a constant: the correction is exact for
        the likelihood, where dividing alone would misstate the counts' variance.

    Returns
    -------
    list of Signal2D
        ``run_algorithm``'s reconstructions of the corrected maps (thin-film equivalent:
        what the lines would give unabsorbed; lazy for a lazy series), with
        ``metadata.Reconstruction.Absorption``.

    Raises
    ------
    ValueError
        Two lines of one element, no pixel size, no detector geometry.
    MemoryError
        The passes would not fit in memory (with the estimate).
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
    eds_factors = _factors(names, elements, "SIRT", _beam_energy(signal, []), None,
                           detector_efficiency)[0]
    # As quantify_cross_section: each map holds its window's share of the line.
    eds_factors = eds_factors * np.array([window_share_of(line.provenance)[0]
                                          for line in problem.lines])
    # The maps are in memory (prepare(compute=True)): small next to the spectra.
    measured, weights = dask.compute(problem.eds, problem.field.weights)
    measured = np.stack(measured).astype(np.float32, copy=False)
    passes = _Passes(problem, measured, weights, absorption.coarsening, iterations, run,
                     eds_factors)
    check_memory(passes.geometry, len(names), passes.grid.n_coarse_slices)
    first, grid_note = None, "the reconstruction's own grid (absorption_correction='exact')"
    if passes.grid.factor > 1:
        first = passes.reconstruct(list(passes.sinograms))
        share = passes.interior_share(first)
        grid_note = (f"{passes.grid.factor}x coarser than the reconstruction's (the maps "
                     f"binned {passes.grid.factor} x {passes.grid.factor}); "
                     f"{share:.2f} of the object a voxel inside its surface there")
        if share < MIN_INTERIOR_SHARE:
            grid_note = (f"the reconstruction's own grid: on one {passes.grid.factor}x "
                         f"coarser only {share:.2f} of the object was a voxel inside its "
                         f"surface (at least {MIN_INTERIOR_SHARE} needed), too few voxels "
                         "across for its paths")
            first = None
            passes = _Passes(problem, measured, weights, 1, iterations, run, eds_factors)
            check_memory(passes.geometry, len(names), passes.grid.n_coarse_slices)
    del measured
    grid = passes.grid
    result = correct_absorption(
        list(passes.sinograms), passes.reconstruct, passes.quantify, elements, table,
        passes.projector, pixel_nm * grid.factor, detectors.angles_deg, detectors.shares,
        absorption.density, absorption.max_iterations, absorption.tolerance, first)
    del first, passes, result.volumes[:], result.fractions[:]
    thin = grid.interpolate_rays(result.thin)
    factors = factors_of(grid.interpolate_rays(result.detected), thin)
    # The maps' variance scales with the square of the division; the factors' own noise
    # (they come from the data's composition) is not in the bootstrap.
    variance = None if problem.variance is None else [
        _divided(v, c * c) for v, c in zip(problem.variance, factors)]
    corrected_problem = replace(problem, eds=[_divided(p, c) for p, c in
                                              zip(problem.eds, factors)], variance=variance)
    if poisson:
        # A share above 1 is interpolation's overshoot between the coarse grid's rays (no
        # specimen emits more than it makes); the weights are shares, so at most 1.
        corrected_problem = replace(corrected_problem,
                                    line_weights=[np.minimum(c, 1.0) for c in factors])
    out = run_algorithm(corrected_problem, iterations)
    history = result.history
    coarse = grid.coarse_geometry
    record = {
        "method": "3D: attenuated forward model, iterated with quantification "
                  "(hyperspy_hebt.absorption_correction)",
        "mode": ("exact" if absorption.mode == "exact"
                 else "fast: composition passes on a coarser grid where the object allows"),
        "outer_iterations": len(history) - 1,
        "composition_passes": (
            f"SIRT at {iterations} iterations on {grid.n_coarse_slices} x {coarse.n_z} x "
            f"{coarse.n_x} voxels, quantified with computed f_A and the ESF threshold; "
            "the settled composition's ray factors, interpolated to the series' rays, "
            f"divide the maps that {out[0].metadata.Reconstruction.algorithm} then "
            "reconstructs"),
        "composition_grid": grid_note,
        "ray_factor_grid_coarsening": grid.factor,
        "tolerance": absorption.tolerance,
        "largest_change": history[-1]["largest_change"],
        "detectors": detectors.as_metadata(),
        "density_g_cm3": ("estimated from the composition (anion packing / ideal mixing)"
                          if absorption.density is None else absorption.density),
        "pixel_size_nm": pixel_nm,
        "mass_attenuation_cm2_g": {line: dict(zip(elements, map(float, row)))
                                   for line, row in zip(names, table)},
        "mean_transmitted_share": {line: _mean_share(c, t)
                                   for line, c, t in zip(names, factors, thin)},
        "mean_fractions_per_pass": [h["mean_fractions"] for h in history],
        "limits": "attenuation from the listed elements only, inside the reconstruction "
                  "grid (the scan and its padding columns; beyond them, and beyond the slab "
                  "in depth, nothing absorbs)",
    }
    for signal_out in out:
        signal_out.metadata.set_item("Reconstruction.Absorption", record)
    return out


def _mean_share(factors: np.ndarray, thin: np.ndarray) -> float:
    """Signal-weighted mean ray factor: the share of the line's X-rays that get out."""
    weight = np.clip(thin, 0, None)
    total = float(weight.sum())
    return float((factors * weight).sum() / total) if total > 0 else 1.0
