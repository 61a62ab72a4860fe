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

__all__ = [
    "exit_direction",
    "optical_depth",
    "transmission",
]


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

    Examples
    --------
    >>> from hyperspy_hebt.tomography.attenuation import exit_direction
    >>> np.round(exit_direction(0.0, 0.0, 35.0), 3)  # a detector at 35 degrees, no tilt
    array([0.   , 0.574, 0.819])
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


@numba.njit(parallel=True, nogil=True, cache=True, fastmath=True)
def _march_rays(mu, flip, step_a, step_b, length, depth, emission, share, seen):
    """Optical depths out of ``mu`` along a lattice of parallel rays, in one pass.

    ``mu`` is ``(n0, n_a + 3, n_b + 3, channels)``: the volume with the direction's main axis
    first, one channel per X-ray line last (every channel follows the same rays and shares
    the interpolation weights), and a border of zeros (one voxel before, two after along
    ``a`` and ``b``: vacuum beyond the grid, read without bounds checks). The rays step one
    plane along axis 0 (toward lower indices when ``flip``) and ``(step_a, step_b)`` along
    the other two; one step is ``length`` long. Ray ``(ra, rb)`` crosses the ``i``-th plane
    from the exit side at ``(ra + i step_a, rb + i step_b)``: every ray of a plane sits at
    the same fraction of a voxel, so the bilinear weights are the plane's. Each ray adds
    the trapezoid of ``mu`` over the step, then each voxel of the plane takes the bilinear
    mean of the four rays around it. Both interpolations are made once per sample, so no
    error builds up along a ray (as it would if each plane interpolated the last one's
    depths); only 2D ray arrays are kept.

    With ``depth`` ``(n0, n_a, n_b, channels)`` the exponents are written there. Otherwise
    (an empty ``depth``) ``share * emission * exp(-depth)`` is added to ``seen`` (both of
    that unpadded shape).
    """
    n0, n_a, n_b, channels = mu.shape[0], mu.shape[1] - 3, mu.shape[2] - 3, mu.shape[3]
    write_depth = depth.size > 0
    span_a = (n0 - 1) * step_a
    span_b = (n0 - 1) * step_b
    r0_a = math.floor(-1.0 - max(0.0, span_a))
    r0_b = math.floor(-1.0 - max(0.0, span_b))
    n_ra = math.ceil(n_a - min(0.0, span_a)) - r0_a + 1
    n_rb = math.ceil(n_b - min(0.0, span_b)) - r0_b + 1
    # float32 like the volumes: a path sums a few hundred steps at most.
    ray_depth = np.zeros((n_ra, n_rb, channels), np.float32)
    ray_mu = np.zeros((n_ra, n_rb, channels), np.float32)
    half = np.float32(0.5 * length)
    for i in range(n0 - 1, -1, -1):
        p = n0 - 1 - i if flip else i
        plane = mu[p]
        shift_a = i * step_a
        shift_b = i * step_b
        # Rays at (r + r0 + shift) in the plane: one floor and one fraction per plane.
        floor_a, floor_b = math.floor(shift_a), math.floor(shift_b)
        fa, fb = np.float32(shift_a - floor_a), np.float32(shift_b - floor_b)
        w00, w01 = (1 - fa) * (1 - fb), (1 - fa) * fb
        w10, w11 = fa * (1 - fb), fa * fb
        # Padded index of ray r's lower neighbour: r + r0 + floor(shift) + 1.
        base_a, base_b = r0_a + floor_a + 1, r0_b + floor_b + 1
        # Rays that cross this plane within one pixel of the grid (the others see mu = 0).
        lo_a = max(0, math.ceil(-1.0 - shift_a) - r0_a)
        hi_a = min(n_ra - 1, math.floor(n_a - shift_a) - r0_a)
        lo_b = max(0, math.ceil(-1.0 - shift_b) - r0_b)
        hi_b = min(n_rb - 1, math.floor(n_b - shift_b) - r0_b)
        for ja in numba.prange(lo_a, hi_a + 1):
            a0 = ja + base_a
            for jb in range(lo_b, hi_b + 1):
                b0 = jb + base_b
                p00, p01 = plane[a0, b0], plane[a0, b0 + 1]
                p10, p11 = plane[a0 + 1, b0], plane[a0 + 1, b0 + 1]
                depth_here, mu_here = ray_depth[ja, jb], ray_mu[ja, jb]
                for c in range(channels):
                    here = w00 * p00[c] + w01 * p01[c] + w10 * p10[c] + w11 * p11[c]
                    depth_here[c] += half * (here + mu_here[c])
                    mu_here[c] = here
        # Voxel v reads the rays at (v - shift - r0): the plane's other fraction.
        back_a, back_b = math.floor(-shift_a), math.floor(-shift_b)
        ga, gb = np.float32(-shift_a - back_a), np.float32(-shift_b - back_b)
        v00, v01 = (1 - ga) * (1 - gb), (1 - ga) * gb
        v10, v11 = ga * (1 - gb), ga * gb
        for ia in numba.prange(n_a):
            a0 = ia + back_a - r0_a
            for ib in range(n_b):
                b0 = ib + back_b - r0_b
                r00, r01 = ray_depth[a0, b0], ray_depth[a0, b0 + 1]
                r10, r11 = ray_depth[a0 + 1, b0], ray_depth[a0 + 1, b0 + 1]
                if write_depth:
                    out = depth[p, ia, ib]
                    for c in range(channels):
                        out[c] = v00 * r00[c] + v01 * r01[c] + v10 * r10[c] + v11 * r11[c]
                else:
                    out = seen[p, ia, ib]
                    source = emission[p, ia, ib]
                    for c in range(channels):
                        tau = v00 * r00[c] + v01 * r01[c] + v10 * r10[c] + v11 * r11[c]
                        out[c] += share * source[c] * math.exp(-tau)


def _checked_direction(direction) -> np.ndarray:
    d = np.asarray(direction, dtype=np.float64)
    if d.shape != (3,) or not np.all(np.isfinite(d)) or not np.linalg.norm(d) > 0:
        raise ValueError(f"direction must be three finite numbers (d_y, d_z, d_x), not all 0, "
                         f"got {direction!r}.")
    return d / np.linalg.norm(d)


def _main_axis(direction) -> int:
    """The axis (0: y, 1: z, 2: x) along which ``direction`` moves most.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.attenuation import exit_direction, _main_axis
    >>> _main_axis(exit_direction(0.0, 0.0, 35.0))  # mostly along z, the beam at 0 degrees
    2
    """
    return int(np.argmax(np.abs(_checked_direction(direction))))


def _march(view, direction, depth, emission, share, seen):
    """Run the kernel on ``view``: an array with ``direction``'s main axis moved first."""
    d = _checked_direction(direction)
    main = int(np.argmax(np.abs(d)))
    others = [a for a in range(3) if a != main]
    scale = 1.0 / abs(d[main])
    _march_rays(view, bool(d[main] < 0), d[others[0]] * scale, d[others[1]] * scale,
                scale, depth, emission, share, seen)


_NOTHING = np.empty((0, 0, 0, 0), np.float32)


def _optical_depths(mu_per_px: np.ndarray, direction) -> np.ndarray:
    """:func:`optical_depth` of several volumes at once (one per X-ray line), unchecked.

    Parameters
    ----------
    mu_per_px : numpy.ndarray
        ``(channels, n_slices, n_z, n_x)``, finite and >= 0 (not checked: for callers that
        built it).
    direction : sequence of float
        ``(d_y, d_z, d_x)`` toward the detector; normalised here.

    Returns
    -------
    numpy.ndarray
        float32 ``(channels, n_slices, n_z, n_x)``.
    """
    main = _main_axis(direction)
    view = _main_axis_first(np.moveaxis(np.asarray(mu_per_px, np.float32), 0, -1), main)
    depth = np.empty_like(view)
    _march(_padded_for_march(view), direction, depth, _NOTHING, 0.0, _NOTHING)
    return np.moveaxis(np.moveaxis(depth, 0, main), -1, 0)


def _padded_for_march(view: np.ndarray) -> np.ndarray:
    """``view`` (main axis first, lines last) with the march's border of zeros (vacuum)."""
    n0, n_a, n_b, channels = view.shape
    out = np.zeros((n0, n_a + 3, n_b + 3, channels), np.float32)
    out[:, 1:n_a + 1, 1:n_b + 1] = view
    return out


def _main_axis_first(volumes: np.ndarray, main: int) -> np.ndarray:
    """Copy ``(n_y, n_z, n_x, channels)`` volumes with axis ``main`` first.

    C-contiguous float32: the layout :func:`_add_detected_emission` reads.
    """
    return np.ascontiguousarray(np.moveaxis(volumes, main, 0), dtype=np.float32)


def _add_detected_emission(emission: np.ndarray, mu_per_px: np.ndarray, direction,
                          share: float, seen: np.ndarray) -> None:
    """Add each voxel's emission that reaches a detector to ``seen``, in place.

    ``seen += share * emission * exp(-tau)``, ``tau`` the :func:`optical_depth` along
    ``direction``. The arrays are float32 ``(n_y, n_z, n_x, lines)`` volumes with the
    direction's :func:`_main_axis` moved first (:func:`_main_axis_first`), C-contiguous:
    every plane the rays cross is then contiguous, and every line follows the same rays.

    Parameters
    ----------
    emission : numpy.ndarray
        Each line's thin-film emission per voxel.
    mu_per_px : numpy.ndarray
        Each line's attenuation per pixel length (finite, >= 0; not checked), with the
        march's border (:func:`_padded_for_march`).
    direction : sequence of float
        ``(d_y, d_z, d_x)`` toward the detector.
    share : float
        The detector's share of the counts.
    seen : numpy.ndarray
        Added to.
    """
    _march(mu_per_px, direction, _NOTHING, emission, float(share), seen)


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
        float32 ``(n_slices, n_z, n_x)``: the exponent, dimensionless.

    Raises
    ------
    ValueError
        ``mu_per_px`` not 3D, negative or not finite; ``direction`` not three finite
        numbers with a non-zero length.

    Examples
    --------
    Four voxels in a row, 0.1 per pixel, the detector straight along ``x``:

    >>> from hyperspy_hebt.tomography.attenuation import optical_depth
    >>> optical_depth(np.full((1, 1, 4), 0.1), (0.0, 0.0, 1.0))  # centre to the far face
    array([[[0.35, 0.25, 0.15, 0.05]]], dtype=float32)
    """
    mu = np.asarray(mu_per_px, dtype=np.float64)
    if mu.ndim != 3:
        raise ValueError(f"mu_per_px must be a 3D (n_slices, n_z, n_x) array, got shape "
                         f"{mu.shape}.")
    if not np.all(np.isfinite(mu)) or (mu < 0).any():
        raise ValueError("mu_per_px must be finite and >= 0 (attenuation per pixel length).")
    return np.ascontiguousarray(_optical_depths(mu[None], direction)[0])


def transmission(mu_per_px: np.ndarray, direction) -> np.ndarray:
    """Share of each voxel's X-rays that leave the volume toward ``direction``: ``exp(-tau)``.

    Parameters are those of :func:`optical_depth`; returns float32 ``(n_slices, n_z, n_x)``
    in (0, 1].

    Parameters
    ----------
    mu_per_px : numpy.ndarray
        ``(n_slices, n_z, n_x)`` attenuation per pixel length, >= 0.
    direction : sequence of float
        ``(d_y, d_z, d_x)`` toward the detector (:func:`exit_direction`).

    Returns
    -------
    numpy.ndarray
        float32 ``(n_slices, n_z, n_x)`` in (0, 1].

    Examples
    --------
    >>> from hyperspy_hebt.tomography.attenuation import exit_direction, transmission
    >>> mu_per_px = np.full((1, 4, 4), 0.1)  # (slices, z, x), 1/px
    >>> shares = transmission(mu_per_px, exit_direction(0.0, 0.0, 35.0))
    >>> bool(shares.min() > 0.6 and shares.max() < 1.0)  # deeper voxels lose more
    True
    """
    return np.exp(-optical_depth(mu_per_px, direction)).astype(np.float32)
