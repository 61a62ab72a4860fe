"""X-ray absorption in simulated tilt series, by a path integral of its own.

The reconstruction's correction (:func:`hyperspy_hebt.tomography.attenuation.optical_depth`)
marches plane by plane in one pass; this module integrates along each voxel's path
separately, with finer steps and scipy's trilinear interpolation, so the tests that compare
them do not check a method against itself. Only the exit directions are shared
(:func:`~hyperspy_hebt.tomography.attenuation.exit_direction`), and those are tested
against exspy's take-off angle. With zero attenuation everything here reduces to the
thin-film simulation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ..tomography.attenuation import exit_direction
from ..tomography.geometry import TiltAngles
from .forward import project_volume

__all__ = ["attenuated_projections", "path_optical_depth"]


def path_optical_depth(mu_per_px: np.ndarray, direction, step_px: float = 0.25,
                       at: np.ndarray | None = None) -> np.ndarray:
    """Attenuation exponent from each voxel's centre out of the volume, ray by ray.

    Midpoint rule with steps of ``step_px`` pixels along each voxel's own ray, ``mu``
    interpolated trilinearly between voxel centres and 0 beyond the grid. Costs
    ``n_voxels x path / step_px`` samples: for the small volumes of tests and simulations.

    Parameters
    ----------
    mu_per_px : numpy.ndarray
        ``(n_slices, n_z, n_x)`` attenuation per pixel length, >= 0.
    direction : sequence of float
        ``(d_y, d_z, d_x)`` toward the detector; normalised here.
    step_px : float
        Integration step in pixels (> 0).
    at : numpy.ndarray, optional
        ``(n, 3)`` voxel indices ``(iy, iz, ix)`` to start from; default every voxel.

    Returns
    -------
    numpy.ndarray
        float64 exponents: ``(n_slices, n_z, n_x)``, or ``(n,)`` for ``at``.

    Raises
    ------
    ValueError
        ``mu_per_px`` not 3D, or ``step_px`` not positive.

    Examples
    --------
    Four voxels in a row, 0.1 per pixel, the detector straight along ``x``; the marching
    kernel :func:`~hyperspy_hebt.tomography.attenuation.optical_depth` agrees:

    >>> from hyperspy_hebt.simulation.absorption import path_optical_depth
    >>> from hyperspy_hebt.tomography.attenuation import optical_depth
    >>> mu_per_px = np.full((1, 1, 4), 0.1)
    >>> path_optical_depth(mu_per_px, (0.0, 0.0, 1.0))  # from each centre to the far face
    array([[[0.35, 0.25, 0.15, 0.05]]])
    >>> bool(np.allclose(optical_depth(mu_per_px, (0.0, 0.0, 1.0)), [0.35, 0.25, 0.15, 0.05]))
    True
    """
    mu = np.asarray(mu_per_px, dtype=np.float64)
    if mu.ndim != 3:
        raise ValueError(f"mu_per_px must be 3D (n_slices, n_z, n_x), got shape {mu.shape}.")
    if not step_px > 0:
        raise ValueError(f"step_px must be > 0, got {step_px!r}.")
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    start = (np.indices(mu.shape, dtype=np.float64).reshape(3, -1) if at is None
             else np.asarray(at, dtype=np.float64).reshape(-1, 3).T)
    depth = np.zeros(start.shape[1])
    # Past the diagonal every ray is outside the grid (and mu is 0 there).
    n_steps = int(np.ceil((np.linalg.norm(mu.shape) + 1) / step_px))
    for k in range(n_steps):
        points = start + ((k + 0.5) * step_px) * d[:, None]
        depth += ndimage.map_coordinates(mu, points, order=1, mode="grid-constant", cval=0.0)
    depth *= step_px
    return depth.reshape(mu.shape) if at is None else depth


def attenuated_projections(
    volume: np.ndarray,
    mu_per_px: np.ndarray,
    tilt_angles_deg: TiltAngles,
    detectors: Sequence[tuple[float, float]],
    detector_shares: Sequence[float] | None = None,
    oversampling: int = 2,
    step_px: float = 0.25,
) -> np.ndarray:
    """Sinograms of X-rays emitted in ``volume`` that reach the detectors.

    At each tilt every voxel's emission is scaled by its path's transmission toward each
    detector (:func:`path_optical_depth`) and projected with
    :func:`~hyperspy_hebt.simulation.forward.project_volume`; the detectors' sinograms are
    added with ``detector_shares`` (their solid angles as fractions of the total).

    Parameters
    ----------
    volume : numpy.ndarray
        ``(n_slices, n_z, n_x)`` counts per voxel of path (thin film).
    mu_per_px : numpy.ndarray
        Attenuation of this line per pixel length, same shape.
    tilt_angles_deg : sequence of float
        Tilt angles in degrees.
    detectors : sequence of (azimuth_deg, elevation_deg)
        Each detector's azimuth and elevation in degrees (see
        :mod:`hyperspy_hebt.tomography.attenuation` for the frame).
    detector_shares : sequence of float, optional
        Each detector's share of the counts (sums to 1); equal shares by default.
    oversampling, step_px
        As for :func:`project_volume` and :func:`path_optical_depth`.

    Returns
    -------
    numpy.ndarray
        float32 ``(len(detectors), n_slices, n_tilts, n_x)``: each detector's share of the
        counts (sum over the first axis for the detectors' total).

    Raises
    ------
    ValueError
        ``volume`` and ``mu_per_px`` not 3D of one shape, or shares that are not one per
        detector, >= 0 and summing to 1.

    Examples
    --------
    >>> from hyperspy_hebt.physics.absorption import attenuation_per_px, mass_attenuation_table
    >>> from hyperspy_hebt.simulation import (attenuated_projections, silicate_grain,
    ...                                       thin_film_line_counts)
    >>> grain = silicate_grain(16)
    >>> elements = ["O", "Mg", "Si", "Fe"]
    >>> counts = thin_film_line_counts(grain.weight_fractions, ["O_Ka"], 200.0,
    ...                                pixel_size_nm=grain.pixel_size_nm,
    ...                                density=grain.density_g_cm3)["O_Ka"]
    >>> composition = np.stack([grain.weight_fractions[e] for e in elements])
    >>> mu = attenuation_per_px(composition, grain.density_g_cm3,
    ...                         mass_attenuation_table(["O_Ka"], elements)[0],
    ...                         grain.pixel_size_nm)
    >>> attenuated_projections(counts, mu, [0.0, 30.0], [(45.0, 18.0)]).shape
    (1, 16, 2, 16)
    """
    volume = np.asarray(volume, dtype=np.float64)
    mu = np.asarray(mu_per_px, dtype=np.float64)
    if volume.shape != mu.shape or volume.ndim != 3:
        raise ValueError(f"volume and mu_per_px must be 3D of one shape, got {volume.shape} "
                         f"and {mu.shape}.")
    shares = (np.full(len(detectors), 1.0 / len(detectors)) if detector_shares is None
              else np.asarray(detector_shares, dtype=float))
    if len(shares) != len(detectors) or not np.isclose(shares.sum(), 1.0) or (shares < 0).any():
        raise ValueError(f"detector_shares must be {len(detectors)} non-negative numbers "
                         f"summing to 1, got {detector_shares!r}.")
    tilts = [float(t) for t in tilt_angles_deg]
    out = np.empty((len(detectors), volume.shape[0], len(tilts), volume.shape[2]), np.float32)
    for i, ((azimuth, elevation), share) in enumerate(zip(detectors, shares)):
        for j, tilt in enumerate(tilts):
            kept = np.exp(-path_optical_depth(mu, exit_direction(tilt, azimuth, elevation),
                                              step_px))
            out[i, :, j] = share * project_volume(volume * kept, [tilt], oversampling)[:, 0]
    return out
