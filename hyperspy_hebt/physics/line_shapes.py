"""What an X-ray line family looks like in an EDS spectrum (no HyperSpy signals).

The lines of one family (K, L or M) of an element, at exspy's energies and with its
relative weights, each a Gaussian as wide as the detector makes it at that energy
(exspy's scaling of the Mn Ka width, Fiori and Newbury). The simulator draws spectra
from these profiles and the line fit models spectra with them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["family_profile", "line_family", "line_fwhm_kev", "line_profile"]


def line_family(xray_line: str) -> list[tuple[float, float]]:
    """``(energy_kev, weight relative to xray_line)`` of every line of its family.

    Parameters
    ----------
    xray_line : str
        exspy line name, e.g. ``"Au_Ma"`` (its family: every ``Au_M*`` line).

    Returns
    -------
    list of (float, float)
        Energy in keV and weight relative to ``xray_line`` (1 for the line itself), from
        exspy's database.

    Examples
    --------
    >>> from hyperspy_hebt.physics.line_shapes import line_family
    >>> line_family("Fe_Ka")[:2]  # (keV, weight relative to Fe Ka)
    [(6.4039, 1.0), (7.058, 0.1272)]
    """
    from exspy.material import elements

    element, line = xray_line.split("_", 1)
    table = elements[element].Atomic_properties.Xray_lines
    reference = table[line].weight
    return [(float(table[name].energy_keV), float(table[name].weight) / reference)
            for name in table.keys() if name[0] == line[0]]


#: Mn Ka energy (keV), the reference line of detector resolutions (exspy's database).
MN_KA_KEV = 5.8987


def line_fwhm_kev(energy_kev: float, energy_resolution_mnka_ev: float) -> float:
    """Peak FWHM in keV at ``energy_kev`` (keV) for a detector of that Mn Ka FWHM (eV).

    Fiori and Newbury's scaling, as exspy uses it: FWHM^2 (eV^2) = FWHM_MnKa^2
    + 2.5 (E - E_MnKa) (eV); owned here because exspy keeps it private.

    Parameters
    ----------
    energy_kev : float
        Line energy in keV.
    energy_resolution_mnka_ev : float
        The detector's FWHM at Mn Ka, eV.

    Returns
    -------
    float
        FWHM in keV.

    Examples
    --------
    >>> from hyperspy_hebt.physics.line_shapes import line_fwhm_kev
    >>> round(1000 * line_fwhm_kev(0.525, 130.0), 1)  # O Ka on a 130 eV detector, in eV
    58.9
    """
    squared = energy_resolution_mnka_ev ** 2 + 2.5 * (energy_kev - MN_KA_KEV) * 1000.0
    return float(np.sqrt(max(squared, 1.0))) / 1000.0


def family_profile(xray_line: str, energy_kev: np.ndarray, channel_width_kev: float,
                   energy_resolution_mnka_ev: float) -> np.ndarray:
    """Expected counts per channel for one count in ``xray_line``, its family included.

    Parameters
    ----------
    xray_line : str
        exspy line name.
    energy_kev : numpy.ndarray
        Channel energies in keV.
    channel_width_kev : float
        Channel width in keV.
    energy_resolution_mnka_ev : float
        Detector FWHM at Mn Ka in eV.

    Returns
    -------
    numpy.ndarray
        Counts per channel, the shape of ``energy_kev``; sums to 1 plus the family's other
        lines' weights over an axis that holds them all.

    Examples
    --------
    >>> from hyperspy_hebt.physics.line_shapes import family_profile
    >>> energy_kev = np.arange(0, 10, 0.01)
    >>> profile = family_profile("Fe_Ka", energy_kev, 0.01, 130.0)
    >>> round(float(energy_kev[np.argmax(profile)]), 2)  # the family's strongest line
    6.4
    """
    profile = np.zeros(np.shape(energy_kev))
    for line_energy, weight in line_family(xray_line):
        profile += weight * line_profile(line_energy, energy_kev, channel_width_kev,
                                         energy_resolution_mnka_ev)
    return profile


def line_profile(line_energy_kev: float, energy_kev: np.ndarray, channel_width_kev: float,
                 energy_resolution_mnka_ev: float) -> np.ndarray:
    """Expected counts per channel for one count in a single line at ``line_energy_kev``.

    A Gaussian of the detector's width at that energy (:func:`line_fwhm_kev`), integrated
    over each channel (``channel_width_kev`` centred on the channel's energy). The
    integral, not the density at the centre: O Ka at 20 eV channels is only 25 eV wide
    (sigma), and the density would put 1.6 % too much of it in a 3-channel window.

    Parameters
    ----------
    line_energy_kev : float
        The line's energy in keV.
    energy_kev : numpy.ndarray
        Channel energies in keV.
    channel_width_kev : float
        Channel width in keV.
    energy_resolution_mnka_ev : float
        Detector FWHM at Mn Ka in eV.

    Returns
    -------
    numpy.ndarray
        Counts per channel, the shape of ``energy_kev``; sums to 1 over an axis that holds
        the line.

    Examples
    --------
    >>> from hyperspy_hebt.physics.line_shapes import line_profile
    >>> energy_kev = np.arange(5.0, 8.0, 0.02)
    >>> profile = line_profile(6.4039, energy_kev, 0.02, 130.0)  # Fe Ka alone
    >>> round(float(profile.sum()), 4)
    1.0
    """
    from scipy.special import ndtr

    offset = np.asarray(energy_kev, dtype=float) - line_energy_kev
    sigma = line_fwhm_kev(line_energy_kev, energy_resolution_mnka_ev) / 2.3548
    half = 0.5 * channel_width_kev
    return ndtr((offset + half) / sigma) - ndtr((offset - half) / sigma)
