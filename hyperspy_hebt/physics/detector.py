"""Detector efficiency: a number, one value per line, or a function of energy."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .xray_data import split_xray_line

__all__ = ["DetectorEfficiency", "line_energy_kev", "detector_efficiency_for_line"]

#: A number (all lines), a mapping ``{"Co_Ka": 0.96, ...}``, or ``f(energy_kev) -> efficiency``.
DetectorEfficiency = float | Mapping[str, float] | Callable[[float], float]


def line_energy_kev(xray_line: str) -> float:
    """Energy of an X-ray line in keV (exspy's database).

    Parameters
    ----------
    xray_line : str
        Such as ``"Fe_Ka"``.

    Returns
    -------
    float
        keV.

    Examples
    --------
    >>> from hyperspy_hebt.physics import line_energy_kev
    >>> line_energy_kev("Fe_Ka")
    6.4039
    """
    from exspy.material import elements

    element, line = split_xray_line(xray_line)
    return float(elements[element].Atomic_properties.Xray_lines[line].energy_keV)


def detector_efficiency_for_line(xray_line: str, detector_efficiency: DetectorEfficiency) -> float:
    """Efficiency (0 < eps <= 1, dimensionless) of the detector for one line.

    Parameters
    ----------
    xray_line : str
        exspy line name.
    detector_efficiency : float, mapping or callable
        A number for every line; a mapping from line name to number; or a
        function of the line energy in keV returning a number.

    Returns
    -------
    float
        In (0, 1].

    Raises
    ------
    ValueError
        A value outside (0, 1], not finite, or a mapping without this line.

    Examples
    --------
    >>> from hyperspy_hebt.physics import detector_efficiency_for_line
    >>> detector_efficiency_for_line("Fe_Ka", {"Fe_Ka": 0.9})
    0.9
    >>> detector_efficiency_for_line("Fe_Ka", lambda energy_kev: 0.5)
    0.5
    """
    if callable(detector_efficiency):
        energy = line_energy_kev(xray_line)
        value = detector_efficiency(energy)
        source = f"detector_efficiency({energy:g} keV) for {xray_line}"
    elif isinstance(detector_efficiency, Mapping):
        if xray_line not in detector_efficiency:
            raise ValueError(
                f"detector_efficiency has no entry for {xray_line}; it has "
                f"{sorted(detector_efficiency)}."
            )
        value = detector_efficiency[xray_line]
        source = f"detector_efficiency[{xray_line!r}]"
    else:
        value = detector_efficiency
        source = "detector_efficiency"
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{source} must be a number, got {value!r}.") from None
    if not np.isfinite(value) or not (0.0 < value <= 1.0):
        raise ValueError(f"{source} must lie in (0, 1], got {value}.")
    return value
