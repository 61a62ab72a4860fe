"""Absorption correction of X-ray line sinograms, iterated with quantification (arrays only).

The thin-film model reads every emitted X-ray; in a real specimen a line's X-rays are
attenuated on their way out, by the composition and density along each voxel's path to each
detector, which a tomogram knows. One outer iteration:

1. the composition (and density) of the current reconstructions gives every line's
   attenuation per voxel (:func:`hyperspy_hebt.physics.absorption.attenuation_per_px`);
2. for each tilt and detector, each voxel's transmission toward the detector
   (:func:`hyperspy_hebt.tomography.attenuation.transmission`);
3. each ray's factor ``c = sum_d s_d W_t (A_td x) / W_t x`` (``s_d`` the detector's share
   of the counts): the fraction of the thin-film signal that the attenuated model
   predicts for that ray;
4. the measured sinograms divided by ``c``, reconstructed again with the thin-film kernel.

A fixed point ``x`` of this map reproduces the measured counts through the attenuated model
(``W x = p / c`` with ``c`` from ``x`` is ``sum_d s_d W_t (A_td x) = p``), so the kernels,
lazy or not, SIRT or HEBT, stay as they are. The loop stops when no element's mean weight
fraction inside the object changes by more than ``tolerance`` between two passes, and
refuses (raises) when that does not happen within ``max_iterations``; it then returns the
ray sums of the settled composition, from which a final reconstruction on another grid
can take its factors (the factors vary slowly across rays: the loop may run on a coarser
grid, :class:`~hyperspy_hebt.tomography.coarse_grid.CoarseGrid`, and its ray sums be
interpolated back).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import groupby

import numba
import numpy as np

from .physics.absorption import attenuation_per_px, estimate_density
from .tomography.attenuation import (
    _add_detected_emission,
    _main_axis,
    _main_axis_first,
    _padded_for_march,
    exit_direction,
)
from .tomography.projector import Projector

__all__ = [
    "AbsorptionNotConverged",
    "AbsorptionResult",
    "correct_absorption",
    "factors_of",
    "ray_factors",
    "ray_sums",
]


class AbsorptionNotConverged(RuntimeError):
    """The composition still changed after the allowed number of outer iterations.

    Examples
    --------
    A composition that never settles (here it alternates between two values) is refused
    rather than returned:

    >>> from itertools import cycle
    >>> from hyperspy_hebt.absorption_correction import (AbsorptionNotConverged,
    ...                                                  correct_absorption)
    >>> from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector, sirt
    >>> projector = get_projector(ParallelBeamGeometry([-45.0, 0.0, 45.0], 8))
    >>> sinogram = np.ones((1, 3, 8), np.float32)
    >>> fractions = cycle([0.5, 1.0])
    >>> try:
    ...     correct_absorption([sinogram], lambda s: [sirt(projector, s[0], 10)],
    ...                        lambda v: [np.full(v[0].shape, next(fractions))], ["Fe"],
    ...                        np.array([[1000.0]]), projector, 10.0, [(45.0, 18.0)],
    ...                        density_g_cm3=7.0, max_iterations=2)
    ... except AbsorptionNotConverged as error:
    ...     print(str(error)[:64])
    The absorption correction did not converge in 2 outer iterations
    """


@dataclass
class AbsorptionResult:
    """What :func:`correct_absorption` returns.

    Attributes
    ----------
    volumes : list of numpy.ndarray
        Thin-film-equivalent reconstructions per line (what the line's X-rays would give
        with no absorption), ``(n_slices, n_z, n_x)``: the last pass's.
    fractions : list of numpy.ndarray
        One ``(n_slices, n_z, n_x)`` weight-fraction volume per element, last pass.
    factors : list of numpy.ndarray
        Per line, the ray factors ``c`` ``(n_slices, n_tilts, n_detector)`` the last pass
        was reconstructed with.
    detected, thin : numpy.ndarray
        :func:`ray_sums` of the last pass's volumes and composition (the settled one):
        ``factors_of(detected, thin)`` are the factors for a further reconstruction.
    history : list of dict
        Per outer iteration: mean weight fraction per element inside the object, the
        largest change from the pass before, and the mean ray factor per line.

    Examples
    --------
    >>> from hyperspy_hebt.absorption_correction import ray_sums, correct_absorption
    >>> from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector, sirt
    >>> projector = get_projector(ParallelBeamGeometry([-60.0, -30.0, 0.0, 30.0, 60.0], 16))
    >>> block = np.zeros((1, 16, 16), np.float32)
    >>> block[0, 4:12, 4:12] = 1.0
    >>> measured, _ = ray_sums([block], [0.05 * block], projector, [(45.0, 18.0)], [1.0])
    >>> result = correct_absorption(
    ...     list(measured), lambda s: [sirt(projector, s[0], 100)],
    ...     lambda v: [(v[0] > 0.5 * v[0].max()).astype(np.float32)], ["Fe"],
    ...     np.array([[7142.9]]), projector, 10.0, [(45.0, 18.0)], density_g_cm3=7.0)
    >>> len(result.volumes), result.factors[0].shape, len(result.history)
    (1, (1, 5, 16), 2)
    >>> round(result.history[1]["mean_ray_factor"]["Fe"], 3)  # 3 % of the counts absorbed
    0.967
    """

    volumes: list
    fractions: list
    factors: list
    detected: np.ndarray
    thin: np.ndarray
    history: list = field(default_factory=list)


def _tilt_rows(projector: Projector, tilt_index: int):
    d = projector.geometry.n_detector
    return projector.matrix[tilt_index * d:(tilt_index + 1) * d]


def _project(rows, volumes: np.ndarray, main: int) -> np.ndarray:
    """``W_t`` applied to every slice and line of ``volumes``: ``(n_detector, slices, lines)``.

    ``volumes`` is ``(n_y, n_z, n_x, lines)`` with axis ``main`` moved first (the march's
    layout); one slice at a time is brought to ``(n_z * n_x, lines)``, so no second copy of
    the whole volume is made.
    """
    standard = np.moveaxis(volumes, 0, main)
    n_slices, n_lines = standard.shape[0], standard.shape[-1]
    out = np.empty((rows.shape[0], n_slices, n_lines), np.float32)
    for y in range(n_slices):
        out[:, y] = rows @ np.ascontiguousarray(standard[y]).reshape(-1, n_lines)
    return out


#: Working memory of one group of lines in :func:`ray_factors` (the march's copies).
RAY_FACTOR_GROUP_BYTES = 512 * 2**20


def ray_sums(volumes: Sequence[np.ndarray] | np.ndarray,
             mu_per_px: Sequence[np.ndarray] | np.ndarray, projector: Projector,
             detectors: Sequence[tuple[float, float]], shares: Sequence[float] | np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Each ray's detected (attenuated) and thin-film signal, per line.

    Lines are handled in groups whose working copies fit :data:`RAY_FACTOR_GROUP_BYTES`
    (at least one line at a time); within a group the (tilt, detector) pairs are taken
    by the main axis of their direction, so one reordered copy of the group's volumes
    serves every pair with that axis.

    Parameters
    ----------
    volumes : sequence of numpy.ndarray
        One ``(n_slices, n_z, n_x)`` thin-film reconstruction per line (negative voxels
        count as they are), or their stack.
    mu_per_px : sequence of numpy.ndarray
        Each line's attenuation per pixel length, same shapes, finite and >= 0.
    projector : Projector
        The projector of the volumes' grid.
    detectors : sequence of (azimuth_deg, elevation_deg)
        Detector directions in degrees.
    shares : sequence of float
        Each detector's share of the counts, summing to 1.

    Returns
    -------
    detected, thin : numpy.ndarray
        float32 ``(n_lines, n_slices, n_tilts, n_detector)``: ``sum_d s_d W_t (A_td x)``
        and ``W_t x``.

    Examples
    --------
    A block of 8 x 8 pixels that absorbs 0.05 per pixel, seen by one detector at 18 degrees:

    >>> from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector
    >>> projector = get_projector(ParallelBeamGeometry([-60.0, -30.0, 0.0, 30.0, 60.0], 16))
    >>> block = np.zeros((1, 16, 16), np.float32)  # (slices, z, x)
    >>> block[0, 4:12, 4:12] = 1.0
    >>> mu_per_px = 0.05 * block  # attenuation per pixel length inside the block
    >>> from hyperspy_hebt.absorption_correction import ray_sums
    >>> detected, thin = ray_sums([block], [mu_per_px], projector, [(45.0, 18.0)], [1.0])
    >>> detected.shape  # (lines, slices, tilts, detector pixels)
    (1, 1, 5, 16)
    >>> round(float(detected.sum() / thin.sum()), 3)  # share of the X-rays that get out
    0.965
    """
    geometry = projector.geometry
    n_lines, n_slices = len(volumes), np.shape(volumes[0])[0]
    voxels = int(np.prod(np.shape(volumes[0])))
    # Three working copies per line: emission and attenuation reordered, detected emission.
    per_group = max(1, min(n_lines, RAY_FACTOR_GROUP_BYTES // (3 * 4 * voxels)))
    pairs = sorted(
        ((_main_axis(exit_direction(tilt, *angles)), t, tilt, angles, share)
         for t, tilt in enumerate(geometry.tilt_angles_deg)
         for angles, share in zip(detectors, shares)), key=lambda pair: pair[:2])
    rows = [_tilt_rows(projector, t) for t in range(geometry.n_tilts)]
    shape = (n_lines, n_slices, geometry.n_tilts, geometry.n_detector)
    detected, thin = np.empty(shape, np.float32), np.empty(shape, np.float32)
    for first in range(0, n_lines, per_group):
        group = slice(first, first + per_group)
        # Lines last: every line follows the same rays and reads its neighbours at once.
        emission = np.stack([np.asarray(v, np.float32) for v in volumes[group]], axis=-1)
        mu = np.stack([np.asarray(m, np.float32) for m in mu_per_px[group]], axis=-1)
        thin_rays = np.stack([_project(r, emission, 0) for r in rows])  # (T, D, slices, lines)
        seen_rays = np.zeros_like(thin_rays)
        # The pairs of one main axis share a reordered copy; those of one tilt too add
        # into one buffer, projected once.
        for main, by_axis in groupby(pairs, key=lambda pair: pair[0]):
            views = (_main_axis_first(emission, main),
                     _padded_for_march(_main_axis_first(mu, main)))
            seen = np.empty_like(views[0])
            for t, by_tilt in groupby(by_axis, key=lambda pair: pair[1]):
                seen[:] = 0.0
                for _, _, tilt, (azimuth, elevation), share in by_tilt:
                    _add_detected_emission(*views, exit_direction(tilt, azimuth, elevation),
                                          share, seen)
                seen_rays[t] += _project(rows[t], seen, main)
            del views, seen
        detected[group] = seen_rays.transpose(3, 2, 0, 1)  # (lines, slices, T, D)
        thin[group] = thin_rays.transpose(3, 2, 0, 1)
    return detected, thin


def factors_of(detected: np.ndarray, thin: np.ndarray) -> np.ndarray:
    """``detected / thin`` per ray; 1 where a ray sees (almost) no thin-film signal.

    Rays through (almost) nothing keep their counts: there is nothing to correct. The
    floor is 1e-6 of each line's largest ray sum.

    Parameters
    ----------
    detected, thin : numpy.ndarray
        :func:`ray_sums`' two arrays, ``(n_lines, n_slices, n_tilts, n_detector)``.

    Returns
    -------
    numpy.ndarray
        float32, the shape of ``detected``: each ray's detected share of its thin-film signal.

    Examples
    --------
    >>> from hyperspy_hebt.absorption_correction import factors_of
    >>> thin = np.array([2.0, 1.0, 0.0]).reshape(1, 1, 1, 3)
    >>> detected = np.array([1.5, 0.9, 0.0]).reshape(1, 1, 1, 3)
    >>> factors_of(detected, thin).ravel()  # the empty ray keeps its counts
    array([0.75, 0.9 , 1.  ], dtype=float32)
    """
    floor = 1e-6 * np.abs(thin).max(axis=(1, 2, 3), keepdims=True).clip(1e-30)
    signal = np.abs(thin) > floor
    return np.where(signal, detected / np.where(signal, thin, 1.0), 1.0).astype(np.float32)


def ray_factors(volumes: Sequence[np.ndarray] | np.ndarray,
                mu_per_px: Sequence[np.ndarray] | np.ndarray, projector: Projector,
                detectors: Sequence[tuple[float, float]], shares: Sequence[float] | np.ndarray
                ) -> np.ndarray:
    """Fraction of each ray's thin-film signal that reaches the detectors, per line.

    :func:`ray_sums` on the volumes' own grid, then :func:`factors_of`.

    Parameters
    ----------
    volumes, mu_per_px, projector, detectors, shares
        As for :func:`ray_sums`.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_lines, n_slices, n_tilts, n_detector)``; 1 where a ray sees no signal.

    Examples
    --------
    >>> from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector
    >>> projector = get_projector(ParallelBeamGeometry([-60.0, -30.0, 0.0, 30.0, 60.0], 16))
    >>> block = np.zeros((1, 16, 16), np.float32)  # (slices, z, x)
    >>> block[0, 4:12, 4:12] = 1.0
    >>> mu_per_px = 0.05 * block  # attenuation per pixel length inside the block
    >>> from hyperspy_hebt.absorption_correction import ray_factors
    >>> factors = ray_factors([block], [mu_per_px], projector, [(45.0, 18.0)], [1.0])
    >>> factors.shape, float(factors.max())  # rays that miss the block are not corrected
    ((1, 1, 5, 16), 1.0)
    >>> bool(0.9 < factors.min() < 1.0)
    True
    """
    return factors_of(*ray_sums(volumes, mu_per_px, projector, detectors, shares))


def correct_absorption(
    sinograms: Sequence[np.ndarray],
    reconstruct: Callable[[list], list],
    quantify: Callable[[list], list | np.ndarray],
    line_elements: Sequence[str],
    mass_attenuation_cm2_g: np.ndarray,
    projector: Projector,
    pixel_size_nm: float,
    detectors: Sequence[tuple[float, float]],
    shares: Sequence[float] | None = None,
    density_g_cm3: float | np.ndarray | None = None,
    max_iterations: int = 8,
    tolerance: float = 0.002,
    first_volumes: list | None = None,
) -> AbsorptionResult:
    """Reconstruct line sinograms with their absorption corrected (see the module text).

    Parameters
    ----------
    sinograms : sequence of numpy.ndarray
        Measured ``(n_slices, n_tilts, n_detector)`` counts per line, summed over the
        detectors.
    reconstruct : callable
        Thin-film reconstruction: a list of sinograms (one per line) to a list of volumes
        ``(n_slices, n_z, n_x)`` on ``projector``'s grid.
    quantify : callable
        Volumes (one per line) to weight fractions, one ``(n_slices, n_z, n_x)`` volume per
        element (a list, or their stack) of ``line_elements``' elements, in their order:
        0 (or NaN) outside the object.
    line_elements : sequence of str
        The element of each line (one line per element).
    mass_attenuation_cm2_g : numpy.ndarray
        ``(n_lines, n_elements)``: each line's mass attenuation coefficient in each
        element, cm^2/g (:func:`~hyperspy_hebt.physics.absorption.mass_attenuation_table`).
    projector : Projector
        The reconstruction grid's projector.
    pixel_size_nm : float
        Voxel edge in nm.
    detectors : sequence of (azimuth_deg, elevation_deg)
        The detectors whose counts the sinograms hold, angles in degrees.
    shares : sequence of float, optional
        Each detector's share of the counts (default: equal).
    density_g_cm3 : float or numpy.ndarray, optional
        Density in g/cm^3 inside the object (a number, or a volume on the grid). None
        estimates it from each pass's composition
        (:func:`~hyperspy_hebt.physics.absorption.estimate_density`, which warns once).
    max_iterations : int
        Outer iterations allowed (>= 1).
    tolerance : float
        Largest change of any element's mean weight fraction (0-1) inside the object
        between two passes at which the loop stops.
    first_volumes : list of numpy.ndarray, optional
        ``reconstruct(sinograms)`` when the caller already has it (the uncorrected pass).

    Returns
    -------
    AbsorptionResult

    Raises
    ------
    AbsorptionNotConverged
        The composition still changes by more than ``tolerance`` after ``max_iterations``.
    ValueError
        Inconsistent shapes, or bad numbers (named).

    Examples
    --------
    The counts of a pure block that absorbs its own X-rays, reconstructed by SIRT with and
    without the correction (``quantify`` is the trivial one of a single element: 1 inside):

    >>> from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector
    >>> projector = get_projector(ParallelBeamGeometry([-60.0, -30.0, 0.0, 30.0, 60.0], 16))
    >>> block = np.zeros((1, 16, 16), np.float32)  # (slices, z, x)
    >>> block[0, 4:12, 4:12] = 1.0
    >>> mu_per_px = 0.05 * block  # attenuation per pixel length inside the block
    >>> from hyperspy_hebt.absorption_correction import correct_absorption, ray_sums
    >>> from hyperspy_hebt.tomography import sirt
    >>> measured, _ = ray_sums([block], [mu_per_px], projector, [(45.0, 18.0)], [1.0])
    >>> def reconstruct(sinograms):
    ...     return [sirt(projector, s, 100) for s in sinograms]
    >>> def quantify(volumes):
    ...     return [(volumes[0] > 0.5 * volumes[0].max()).astype(np.float32)]
    >>> table = np.array([[7142.9]])  # cm^2/g: 0.05 per 10 nm pixel at 7 g/cm^3
    >>> result = correct_absorption(list(measured), reconstruct, quantify, ["Fe"], table,
    ...                             projector, 10.0, [(45.0, 18.0)], density_g_cm3=7.0)
    >>> plain = reconstruct(list(measured))[0]
    >>> ratio = result.volumes[0][0, 4:12, 4:12].mean() / plain[0, 4:12, 4:12].mean()
    >>> round(float(ratio), 3)  # the 3.5 % the block absorbed, given back
    1.035
    """
    sinograms = [np.asarray(s, dtype=np.float32) for s in sinograms]
    elements = list(line_elements)
    table = np.asarray(mass_attenuation_cm2_g, dtype=float)
    if table.shape != (len(sinograms), len(elements)):
        raise ValueError(f"mass_attenuation_cm2_g must be (n_lines, n_elements) = "
                         f"({len(sinograms)}, {len(elements)}), got {table.shape}.")
    if len(detectors) == 0:
        raise ValueError("detectors must name at least one (azimuth_deg, elevation_deg).")
    share_values = (np.full(len(detectors), 1.0 / len(detectors)) if shares is None
                    else np.asarray(shares, dtype=float))
    if (share_values.shape != (len(detectors),) or (share_values < 0).any()
            or not np.isclose(share_values.sum(), 1)):
        raise ValueError(f"shares must be {len(detectors)} numbers >= 0 summing to 1, got "
                         f"{shares!r}.")
    if int(max_iterations) != max_iterations or max_iterations < 1:
        raise ValueError(f"max_iterations must be a positive integer, got {max_iterations!r}.")
    if not (np.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}.")

    warned = False

    def sums_of(volumes, fractions, inside):
        """The ray sums that this composition (and density) predicts."""
        nonlocal warned
        if density_g_cm3 is None:
            density = estimate_density(
                {e: np.nan_to_num(f, nan=0.0) for e, f in zip(elements, fractions)},
                warn=not warned).astype(np.float32)
            warned = True
        else:
            density = np.where(inside, np.asarray(density_g_cm3, np.float32), np.float32(0.0))
        mu = [attenuation_per_px(fractions, density, row, pixel_size_nm) for row in table]
        del density
        return ray_sums(volumes, mu, projector, detectors, share_values)

    volumes = reconstruct(sinograms) if first_volumes is None else list(first_volumes)
    fractions = _volumes(quantify(volumes))
    inside, previous = _inside_and_means(fractions)
    history = [{"pass": 0, "mean_fractions": dict(zip(elements, previous.tolist())),
                "largest_change": None, "mean_ray_factor": None}]
    for outer in range(1, int(max_iterations) + 1):
        factors = list(factors_of(*sums_of(volumes, fractions, inside)))
        del volumes, fractions, inside
        volumes = reconstruct([s / c for s, c in zip(sinograms, factors)])
        fractions = _volumes(quantify(volumes))
        inside, current = _inside_and_means(fractions)
        change = float(np.max(np.abs(current - previous)))
        history.append({
            "pass": outer, "mean_fractions": dict(zip(elements, current.tolist())),
            "largest_change": change,
            "mean_ray_factor": {e: _mean_factor(c, s) for e, c, s in
                                zip(elements, factors, sinograms)},
        })
        previous = current
        if change <= tolerance:
            detected, thin = sums_of(volumes, fractions, inside)
            return AbsorptionResult(volumes, fractions, factors, detected, thin, history)
    raise AbsorptionNotConverged(
        f"The absorption correction did not converge in {max_iterations} outer iterations: "
        f"the mean weight fractions still changed by {change:.4f} (tolerance {tolerance}). "
        "History: " + "; ".join(f"pass {h['pass']}: {h['mean_fractions']}" for h in history)
        + ". Check the density and the detector geometry, or allow more iterations.")


def _volumes(stack_or_list) -> list:
    """One array per element, without stacking (a stack is split into views)."""
    return [np.asarray(v) for v in stack_or_list]


def _inside_and_means(fractions: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Voxels inside the object (fractions summing above 0) and each element's mean there.

    One pass over the fraction volumes (NaN counts as 0), no copies of them when they
    are C-contiguous float32 (the quantification's).
    """
    shape = np.shape(fractions[0])
    flat = tuple(np.ascontiguousarray(f, np.float32).reshape(-1) for f in fractions)
    inside = np.empty(flat[0].size, np.bool_)
    n_chunks = max(1, -(-flat[0].size // _MEANS_CHUNK))
    partial = np.zeros((n_chunks, len(flat)))
    _inside_sums(flat, inside, partial)
    count = int(inside.sum())
    sums = partial.sum(axis=0)
    return inside.reshape(shape), (sums / count if count else np.zeros(len(fractions)))


#: Voxels per task of :func:`_inside_sums`.
_MEANS_CHUNK = 2**16


@numba.njit(parallel=True, nogil=True, cache=True)
def _inside_sums(fractions, inside, partial):
    """Mark voxels whose fractions sum above 0; add each element's fractions there."""
    n, m = len(fractions), fractions[0].size
    for chunk in numba.prange(partial.shape[0]):
        for j in range(chunk * _MEANS_CHUNK, min(m, (chunk + 1) * _MEANS_CHUNK)):
            total = np.float32(0.0)
            for a in range(n):
                value = fractions[a][j]
                if not np.isnan(value):
                    total += value
            here = total > 0
            inside[j] = here
            if here:
                for a in range(n):
                    value = fractions[a][j]
                    if not np.isnan(value):
                        partial[chunk, a] += value


def _mean_factor(factors: np.ndarray, sinogram: np.ndarray) -> float:
    """Count-weighted mean ray factor: the share of the line's X-rays that got out."""
    weight = np.clip(sinogram, 0, None)
    total = float(weight.sum())
    return float((factors * weight).sum() / total) if total > 0 else 1.0
