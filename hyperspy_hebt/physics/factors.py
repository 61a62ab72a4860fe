"""Element factors of the thin-film model: f_A (EDS, paper Eq. 7) and z_A (HAADF, Eq. 14)."""

from __future__ import annotations

from .cross_sections import elastic_cross_section, ionization_cross_section
from .detector import DetectorEfficiency, detector_efficiency_for_line
from .xray_data import atomic_weight, fluorescence_yield, line_fraction, split_xray_line

__all__ = ["adf_per_eds_factor", "eds_factor", "haadf_factor"]


def eds_factor(xray_line: str, beam_energy_kev: float,
               detector_efficiency: DetectorEfficiency = 1.0) -> float:
    """``f_A = sigma_ion * omega * p * eps / M`` (paper Eq. 7), in barn mol/g.

    Parameters
    ----------
    xray_line : str
        exspy line name, e.g. ``"Co_Ka"``.
    beam_energy_kev : float
        Beam energy in keV.
    detector_efficiency : float, mapping or callable
        See :func:`~hyperspy_hebt.physics.detector_efficiency_for_line`.

    Returns
    -------
    float
        The factor in barn mol/g. The X-ray intensity of a thin film is
        ``n f_A C_A rho t`` (Eq. 5).

    Examples
    --------
    The factor ``f_A`` of Au Ma at 100 keV, in barn mol/g (the paper's Table 2 gives
    the same ingredients):

    >>> from hyperspy_hebt.physics import eds_factor
    >>> round(eds_factor("Au_Ma", 100.0), 3)
    1.052
    """
    element, _ = split_xray_line(xray_line)
    efficiency = detector_efficiency_for_line(xray_line, detector_efficiency)
    return (ionization_cross_section(xray_line, beam_energy_kev) * fluorescence_yield(xray_line)
            * line_fraction(xray_line) * efficiency / atomic_weight(element))


def haadf_factor(element: str, beam_energy_kev: float, u_form: str = "paper") -> float:
    """``z_A = sigma_elastic / M`` (paper Eq. 14), in barn mol/g.

    Parameters
    ----------
    element : str
        Chemical symbol.
    beam_energy_kev : float
        Beam energy in keV.
    u_form : {"paper", "log"}
        Form of Browning's ``u``; see :func:`elastic_cross_section`.

    Returns
    -------
    float
        ``z_A`` in barn mol/g.

    Examples
    --------
    >>> from hyperspy_hebt.physics import haadf_factor
    >>> round(haadf_factor("Au", 100.0))
    100529
    """
    return elastic_cross_section(element, beam_energy_kev, u_form=u_form) / atomic_weight(element)


def adf_per_eds_factor(xray_line: str, beam_energy_kev: float,
                       detector_efficiency: DetectorEfficiency = 1.0) -> float:
    """``z_A / f_A``: HEBT's response ratio ``r_A`` up to a constant (paper Eq. 16).

    ``r_A = (D_H / D_E) (4 pi / Omega) z_A / f_A``: the doses and the solid angle are
    the same for every line of one acquisition, so the ratios of the lines relate
    as their ``z_A / f_A``.

    Parameters
    ----------
    xray_line : str
        exspy line name.
    beam_energy_kev : float
        Beam energy in keV.
    detector_efficiency : float, mapping or callable
        As for :func:`eds_factor`.

    Returns
    -------
    float
        Dimensionless (both factors in barn mol/g).

    Examples
    --------
    >>> from hyperspy_hebt.physics import adf_per_eds_factor
    >>> round(float(adf_per_eds_factor("Au_Ma", 100.0)))
    95558
    """
    element = split_xray_line(xray_line)[0]
    return (haadf_factor(element, beam_energy_kev)
            / eds_factor(xray_line, beam_energy_kev, detector_efficiency))
