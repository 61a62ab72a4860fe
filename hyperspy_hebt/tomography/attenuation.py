"""X-ray paths out of a volume: the direction to each detector and the attenuation on the way.

Arrays only (no HyperSpy). Volumes are ``(n_slices, n_z, n_x)``: slices along the tilt axis
(``y``), rows along the beam at zero tilt (``z``), columns across it (``x``), as the
projector's grid (:mod:`.geometry`). Pixel ``(iy, iz, ix)`` sits at
``(iy, iz - (n_z - 1) / 2, ix - (n_x - 1) / 2)`` in pixel units.

Frames and angles follow exspy's :func:`exspy.utils.eds.take_off_angle`. In the microscope
(lab) frame ``x`` is perpendicular to the tilt axis, ``y`` along it and ``z`` points up the
column, toward the gun. A detector at azimuth ``phi`` and elevation ``e`` looks at the
specimen from the direction ``(cos e cos phi, cos e sin phi, sin e)``: azimuth 0 is
perpendicular to the tilt axis and a positive tilt turns the specimen toward it. A
specimen point ``(x, z)`` at tilt ``theta`` is seen at lab ``x`` ``x cos(theta) + z
sin(theta)`` (the projector's detector coordinate ``u``), so the grid's ``z`` rows point up
the column at zero tilt, and its specimen normal, seen from the lab, is ``(sin theta, 0, cos
theta)``: the exit direction's ``z`` component in the grid is the sine of exspy's take-off
angle.

Within these conventions azimuth 0 points along increasing column index and azimuth 90 along
increasing slice index. Whether the scan's x axis points toward azimuth 0 depends on the
microscope's scan rotation; detectors kept apart (their disagreement before correction) are
the check.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["exit_direction", "optical_depth", "transmission"]


def exit_direction(tilt_deg: float, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector from the specimen toward a detector, in the grid's ``(y, z, x)`` axes.

    Parameters
    ----------
    tilt_deg : float
        Specimen tilt about the tilt axis, in degrees (the projector's tilt angle).
    azimuth_deg : float
        Detector azimuth in degrees: 0 is perpendicular to the tilt axis, 90 along it.
    elevation_deg : float
        Detector elevation above the plane perpendicular to the beam, in degrees;
        ``0 < elevation_deg < 90``.

    Returns
    -------
    numpy.ndarray
        ``(d_y, d_z, d_x)``, unit length.

    Raises
    ------
    ValueError
        A non-finite angle, or an elevation outside (0, 90) degrees.
    """
    for name, value in (("tilt_deg", tilt_deg), ("azimuth_deg", azimuth_deg),
                        ("elevation_deg", elevation_deg)):
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}.")
    if not 0.0 < elevation_deg < 90.0:
        raise ValueError(
            f"elevation_deg must lie between 0 and 90 degrees (exclusive), got "
            f"{elevation_deg!r}: a detector looks down on the specimen from above it.")
    theta, phi, e = np.radians([tilt_deg, azimuth_deg, elevation_deg])
    lab_x, lab_y, lab_z = math.cos(e) * math.cos(phi), math.cos(e) * math.sin(phi), math.sin(e)
    # The grid's frame is the lab's rotated back by the tilt (the transpose of the
    # projector's rotation about y).
    grid_x = math.cos(theta) * lab_x - math.sin(theta) * lab_z
    grid_z = math.sin(theta) * lab_x + math.cos(theta) * lab_z
    return np.array([lab_y, grid_z, grid_x])


@numba.njit(inline="always", nogil=True)
def _bilinear(plane, a, b):
    """``plane`` at fractional position ``(a, b)``, 0 outside (vacuum beyond the grid)."""
    n_a, n_b = plane.shape
    a0 = math.floor(a)
    b0 = math.floor(b)
    fa = a - a0
    fb = b - b0
    total = 0.0
    for da in range(2):
        ia = int(a0) + da
        if ia < 0 or ia >= n_a:
            continue
        wa = fa if da else 1.0 - fa
        for db in range(2):
            ib = int(b0) + db
            if ib < 0 or ib >= n_b:
                continue
            wb = fb if db else 1.0 - fb
            total += wa * wb * plane[ia, ib]
    return total


@numba.njit(parallel=True, nogil=True, cache=True)
def _march_rays(mu, step_a, step_b, length, depth):
    """Optical depth out of ``mu`` toward ``+axis 0``, along a lattice of parallel rays.

    Ray ``(ra, rb)`` crosses plane ``i`` at ``(ra + i step_a, rb + i step_b)``; one step
    from plane to plane is ``length`` long. Planes are visited from the exit side: each ray
    adds the trapezoid of ``mu`` (bilinear in the plane, 0 beyond the grid) over the step,
    then each voxel of the plane takes the bilinear mean of the four rays around it. Both
    interpolations are made once per sample, so no error builds up along a ray (as it
    would if each plane interpolated the last one's depths); only 2D ray arrays are kept.
    """
    n0, n_a, n_b = mu.shape
    span_a = (n0 - 1) * step_a
    span_b = (n0 - 1) * step_b
    r0_a = math.floor(-1.0 - max(0.0, span_a))
    r0_b = math.floor(-1.0 - max(0.0, span_b))
    n_ra = math.ceil(n_a - min(0.0, span_a)) - r0_a + 1
    n_rb = math.ceil(n_b - min(0.0, span_b)) - r0_b + 1
    ray_depth = np.zeros((n_ra, n_rb))
    ray_mu = np.zeros((n_ra, n_rb))
    for i in range(n0 - 1, -1, -1):
        shift_a = i * step_a
        shift_b = i * step_b
        plane = mu[i]
        # Rays that cross this plane within one pixel of the grid (the others see mu = 0).
        lo_a = max(0, math.ceil(-1.0 - shift_a) - r0_a)
        hi_a = min(n_ra - 1, math.floor(n_a - shift_a) - r0_a)
        lo_b = max(0, math.ceil(-1.0 - shift_b) - r0_b)
        hi_b = min(n_rb - 1, math.floor(n_b - shift_b) - r0_b)
        for ja in numba.prange(lo_a, hi_a + 1):
            a = ja + r0_a + shift_a
            for jb in range(lo_b, hi_b + 1):
                here = _bilinear(plane, a, jb + r0_b + shift_b)
                ray_depth[ja, jb] += 0.5 * length * (here + ray_mu[ja, jb])
                ray_mu[ja, jb] = here
        for ia in numba.prange(n_a):
            for ib in range(n_b):
                depth[i, ia, ib] = _bilinear(ray_depth, ia - shift_a - r0_a, ib - shift_b - r0_b)


def optical_depth(mu_per_px: np.ndarray, direction) -> np.ndarray:
    """Attenuation exponent from each voxel's centre out of the volume along ``direction``.

    ``tau(v) = integral of mu(v + s d) ds`` over ``s >= 0``, computed in one pass over the
    volume: a lattice of parallel rays is followed plane by plane across the direction's
    main axis, from the exit side, each ray adding the trapezoid of ``mu`` over one step;
    each voxel takes the bilinear mean of the four rays around it. Beyond the grid ``mu`` is
    0 (vacuum); the grid's last voxel counts up to its face, as a sharp boundary there
    would. Cost: a few samples per voxel, whatever the path length.

    Parameters
    ----------
    mu_per_px : numpy.ndarray
        ``(n_slices, n_z, n_x)`` linear attenuation coefficient per pixel length
        (``mu / rho`` in cm^2/g times density in g/cm^3 times the pixel size in cm), >= 0.
    direction : sequence of float
        ``(d_y, d_z, d_x)`` toward the detector (:func:`exit_direction`); normalised here.

    Returns
    -------
    numpy.ndarray
        float64 ``(n_slices, n_z, n_x)``: the exponent, dimensionless.

    Raises
    ------
    ValueError
        ``mu_per_px`` not 3D, negative or not finite; ``direction`` not three finite
        numbers with a non-zero length.
    """
    mu = np.asarray(mu_per_px, dtype=np.float64)
    if mu.ndim != 3:
        raise ValueError(f"mu_per_px must be a 3D (n_slices, n_z, n_x) array, got shape "
                         f"{mu.shape}.")
    if not np.all(np.isfinite(mu)) or (mu < 0).any():
        raise ValueError("mu_per_px must be finite and >= 0 (attenuation per pixel length).")
    d = np.asarray(direction, dtype=np.float64)
    if d.shape != (3,) or not np.all(np.isfinite(d)) or not np.linalg.norm(d) > 0:
        raise ValueError(f"direction must be three finite numbers (d_y, d_z, d_x), not all 0, "
                         f"got {direction!r}.")
    d = d / np.linalg.norm(d)
    main = int(np.argmax(np.abs(d)))
    others = [a for a in range(3) if a != main]
    # Put the main axis first, stepping toward higher indices.
    view = np.moveaxis(mu, main, 0)
    if d[main] < 0:
        view = view[::-1]
    view = np.ascontiguousarray(view)
    scale = 1.0 / abs(d[main])
    step_a, step_b = d[others[0]] * scale, d[others[1]] * scale
    depth = np.empty_like(view)
    _march_rays(view, step_a, step_b, scale, depth)
    if d[main] < 0:
        depth = depth[::-1]
    return np.ascontiguousarray(np.moveaxis(depth, 0, main))


def transmission(mu_per_px: np.ndarray, direction) -> np.ndarray:
    """Share of each voxel's X-rays that leave the volume toward ``direction``: ``exp(-tau)``.

    Parameters are those of :func:`optical_depth`; returns float32 ``(n_slices, n_z, n_x)``
    in (0, 1].
    """
    return np.exp(-optical_depth(mu_per_px, direction)).astype(np.float32)
