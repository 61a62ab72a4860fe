"""Parallel-beam tilt-series geometry (plain Python, no HyperSpy).

Coordinates are in pixels of the reconstruction grid, with the rotation axis at
the origin. A slice has ``n_x`` columns (the direction scanned by the beam,
perpendicular to the rotation axis) and ``n_z`` rows (the beam direction at
zero tilt). Pixel ``(iz, ix)`` has its centre at

    x = ix - (n_x - 1) / 2,    z = iz - (n_z - 1) / 2.

At tilt angle theta a point ``(x, z)`` is recorded at detector position

    u = x cos(theta) + z sin(theta),

and detector bin ``d`` (of ``n_detector``, one pixel wide) is centred on
``u = d - (n_detector - 1) / 2 + detector_offset_px``. ``detector_offset_px``
describes a rotation axis that is not in the middle of the scanned line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ParallelBeamGeometry"]


#: Tilt angles in degrees: a sequence of numbers or a 1D array.
TiltAngles = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class ParallelBeamGeometry:
    """Geometry shared by every slice of a parallel-beam tilt series.

    Parameters
    ----------
    tilt_angles_deg : tuple of float
        Tilt angles in degrees, in the order of the sinogram rows. Each must be
        finite with ``|angle| < 90`` and no angle may repeat.
    n_detector : int
        Number of detector bins (beam positions along a scan line).
    n_x : int, optional
        Number of reconstruction columns; defaults to ``n_detector``.
    n_z : int, optional
        Number of reconstruction rows (thickness direction); defaults to ``n_x``.
    detector_offset_px : float
        Position of the rotation axis relative to the centre of the detector,
        in pixels.

    The object is hashable, so it can key a cache of system matrices.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.geometry import ParallelBeamGeometry
    >>> geometry = ParallelBeamGeometry(tuple(np.linspace(-60, 60, 13)), 32)
    >>> geometry.n_x, geometry.n_z  # the grid is as wide and as deep as the detector
    (32, 32)
    """

    tilt_angles_deg: tuple
    n_detector: int
    n_x: int | None = None
    n_z: int | None = None
    detector_offset_px: float = 0.0

    def __post_init__(self) -> None:
        angles = tuple(float(a) for a in np.asarray(self.tilt_angles_deg, dtype=float).ravel())
        object.__setattr__(self, "tilt_angles_deg", angles)
        validate_tilt_angles(angles)
        for name in ("n_detector", "n_x", "n_z"):
            value = getattr(self, name)
            if value is None:
                continue
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
            object.__setattr__(self, name, int(value))
        if self.n_x is None:
            object.__setattr__(self, "n_x", self.n_detector)
        if self.n_z is None:
            object.__setattr__(self, "n_z", self.n_x)
        if not np.isfinite(self.detector_offset_px):
            raise ValueError(
                f"detector_offset_px must be finite, got {self.detector_offset_px!r}."
            )
        object.__setattr__(self, "detector_offset_px", float(self.detector_offset_px))

    @property
    def n_tilts(self) -> int:
        """Number of tilt angles (sinogram rows)."""
        return len(self.tilt_angles_deg)

    @property
    def n_rays(self) -> int:
        """Number of measurements per slice (rows of the system matrix)."""
        return self.n_tilts * self.n_detector

    @property
    def n_pixels(self) -> int:
        """Number of unknowns per slice (columns of the system matrix)."""
        assert self.n_x is not None and self.n_z is not None  # set by __post_init__
        return self.n_x * self.n_z


def validate_tilt_angles(tilt_angles_deg, name: str = "tilt_angles") -> np.ndarray:
    """Check tilt angles and return them as a float64 array.

    Parameters
    ----------
    tilt_angles_deg : array-like of float
        Tilt angles in degrees.
    name : str
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray
        float64, one dimension, the angles in the order given.

    Raises
    ------
    ValueError
        If the angles are empty, not one-dimensional, non-finite, repeated, or
        have ``|angle| >= 90`` degrees (a parallel-beam projection at 90 degrees
        runs along the slab and is not a tilt-series geometry this package supports).

    Examples
    --------
    >>> from hyperspy_hebt.tomography.geometry import validate_tilt_angles
    >>> validate_tilt_angles([-30, 0, 30])
    array([-30.,   0.,  30.])
    >>> validate_tilt_angles([0, 90])
    Traceback (most recent call last):
    ...
    ValueError: tilt_angles must satisfy |angle| < 90 degrees; got [90.0].
    """
    angles = np.asarray(tilt_angles_deg, dtype=float)
    if angles.ndim != 1 or angles.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1D sequence of angles in degrees, "
            f"got shape {angles.shape}."
        )
    bad = ~np.isfinite(angles)
    if bad.any():
        raise ValueError(
            f"{name} must be finite; got {angles[bad].tolist()} at positions "
            f"{np.flatnonzero(bad).tolist()}."
        )
    too_large = np.abs(angles) >= 90
    if too_large.any():
        raise ValueError(
            f"{name} must satisfy |angle| < 90 degrees; got {angles[too_large].tolist()}."
        )
    values, counts = np.unique(angles, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"{name} must not repeat; duplicated: {values[counts > 1].tolist()} degrees."
        )
    return angles


def slab_support(geometry: ParallelBeamGeometry, half_thickness_px) -> np.ndarray | None:
    """The slab a specimen of known thickness occupies (a lamella about the tilt axis).

    Parameters
    ----------
    geometry : ParallelBeamGeometry
    half_thickness_px : float or None
        Half the thickness in grid pixels; None: no support.

    Returns
    -------
    numpy.ndarray or None
        ``(n_z, n_x)`` boolean, True on the rows within ``half_thickness_px`` of z = 0.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.geometry import ParallelBeamGeometry, slab_support
    >>> support = slab_support(ParallelBeamGeometry([-30.0, 0.0, 30.0], 6), 1.0)
    >>> support[:, 0].astype(int)  # (n_z, n_x): the rows within 1 px of the middle
    array([0, 0, 1, 1, 0, 0])
    """
    if half_thickness_px is None:
        return None
    assert geometry.n_x is not None and geometry.n_z is not None  # set by __post_init__
    z = np.arange(geometry.n_z) - (geometry.n_z - 1) / 2
    rows = np.abs(z) <= float(half_thickness_px) + 1e-6
    return np.repeat(rows[:, None], geometry.n_x, axis=1)
