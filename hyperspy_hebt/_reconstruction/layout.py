"""Which axes of a tilt-series signal are slice, tilt and scan (detector)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..tilt_series import get_tilt_axis
from ..tomography import ParallelBeamGeometry
from ..tomography.geometry import validate_tilt_angles

if TYPE_CHECKING:
    from hyperspy.axes import BaseDataAxis


@dataclass
class TiltSeriesLayout:
    """Which array axes of a tilt series are slice, tilt and scan (detector).

    Positions are array indices of the navigation part of ``signal.data``; a
    navigation-shaped array (a line-intensity map) uses the same positions.
    """

    tilt_axis: BaseDataAxis
    slice_axis: BaseDataAxis | None
    detector_axis: BaseDataAxis
    tilt_angles_deg: np.ndarray

    @classmethod
    def from_signal(cls, signal, rotation_axis: str = "y") -> TiltSeriesLayout:
        """Find the tilt, slice and detector axes of ``signal`` (tilts about ``rotation_axis``)."""
        nav = signal.axes_manager.navigation_axes
        if len(nav) not in (2, 3):
            raise ValueError(
                "A tilt series needs navigation axes (x, y, tilt) or (x, tilt); this "
                f"signal has navigation shape {signal.axes_manager.navigation_shape} "
                f"with axes {[a.name for a in nav]}."
            )
        tilt = get_tilt_axis(signal)
        if tilt is None:
            raise ValueError(
                f"No navigation axis is named 'tilt' (axes: {[a.name for a in nav]}); "
                "set the angles with set_tilt_angles(angles) or stack_tilt_series."
            )
        angles = validate_tilt_angles(np.asarray(tilt.axis, float), name="tilt axis values")
        check_tilt_range(angles)
        spatial = [a for a in nav if a is not tilt]
        if len(spatial) == 1:
            slice_axis, detector = None, spatial[0]
        else:
            if not isinstance(rotation_axis, str):
                raise TypeError(
                    f"rotation_axis must be the name of a navigation axis, got {rotation_axis!r}."
                )
            named = [a for a in spatial if a.name == rotation_axis]
            if len(named) != 1:
                raise ValueError(
                    f"rotation_axis={rotation_axis!r} must name exactly one spatial "
                    f"navigation axis; the spatial axes are {[a.name for a in spatial]}."
                )
            slice_axis = named[0]
            detector = spatial[0] if spatial[1] is slice_axis else spatial[1]
        if not detector.is_uniform:
            raise ValueError(
                f"The scan axis '{detector.name}' must be uniform (equal beam steps) "
                "for parallel-beam tomography."
            )
        return cls(tilt, slice_axis, detector, angles)

    @property
    def n_slices(self) -> int:
        """Number of slices along the tilt axis (1 for a single scan line)."""
        return 1 if self.slice_axis is None else self.slice_axis.size

    def geometry(self, padding_px: int = 0) -> ParallelBeamGeometry:
        """Return the series' parallel-beam geometry.

        The slab is as thick as the scan is wide; ``padding_px`` columns are added on each side of
        the scanned width.
        """
        n = self.detector_axis.size
        return ParallelBeamGeometry(tuple(self.tilt_angles_deg), n_detector=n,
                                    n_x=n + 2 * int(padding_px), n_z=n)

    @property
    def navigation_shape(self) -> tuple:
        """Navigation shape in array order (``(tilt, y, x)`` or ``(tilt, x)``)."""
        axes = [a for a in (self.tilt_axis, self.slice_axis, self.detector_axis)
                if a is not None]
        return tuple(a.size for a in sorted(axes, key=lambda a: a.index_in_array))

    def to_stack(self, array):
        """Navigation-shaped array -> sinogram stack ``(slices, tilts, detector)``."""
        order = [self.tilt_axis.index_in_array, self.detector_axis.index_in_array]
        if self.slice_axis is None:
            return array.transpose(order)[None]
        return array.transpose([self.slice_axis.index_in_array] + order)

    def sigma_in_stack_order(self, gaussian_sigma):
        """Gaussian sigma per stack axis (slice, tilt, detector), or None."""
        if gaussian_sigma is None:
            return None
        names = {self.tilt_axis.name: 1, self.detector_axis.name: 2}
        if self.slice_axis is not None:
            names[self.slice_axis.name] = 0
        if isinstance(gaussian_sigma, dict):
            sigma = [0.0, 0.0, 0.0]
            for key, value in gaussian_sigma.items():
                if key not in names:
                    raise ValueError(
                        f"gaussian_sigma has key {key!r}; keys must be navigation axis "
                        f"names {sorted(names)}."
                    )
                sigma[names[key]] = _non_negative(value, f"gaussian_sigma[{key!r}]")
        else:
            value = _non_negative(gaussian_sigma, "gaussian_sigma")
            sigma = [value if self.slice_axis is not None else 0.0, 0.0, value]
        return None if not any(sigma) else tuple(sigma)


def _non_negative(value, name):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number of pixels, got {value!r}.") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (pixels), got {value}.")
    return value


#: Least range of tilts (degrees) a tomogram can come from. Radians are the usual
#: mistake (+-70 deg reads as +-1.22 deg): refused, not reconstructed as a flat slab.
MIN_TILT_SPAN_DEG = 5.0


def check_tilt_range(tilt_angles_deg: np.ndarray) -> None:
    """Refuse a series of one tilt, or one whose tilts span too little.

    The span must reach :data:`MIN_TILT_SPAN_DEG`; the message says when the angles look like
    radians.

    Raises
    ------
    ValueError
        Naming the angles and what was expected.
    """
    angles = np.asarray(tilt_angles_deg, dtype=float)
    if angles.size < 2:
        raise ValueError(
            f"A tilt series needs at least two tilts; this one has {angles.size} "
            f"({angles.tolist()} deg): one projection holds no depth, and its 'volume' "
            "would be that projection smeared along the beam.")
    span = float(angles.max() - angles.min())
    if span < MIN_TILT_SPAN_DEG:
        radians = np.abs(angles).max() <= np.pi / 2
        raise ValueError(
            f"The tilt angles span {span:.3g} deg ({angles.min():g} to {angles.max():g}); a "
            f"tomogram needs at least {MIN_TILT_SPAN_DEG:g} deg."
            + (" They look like radians: give degrees, e.g. "
               "s.set_tilt_angles(numpy.rad2deg(angles))." if radians else ""))
