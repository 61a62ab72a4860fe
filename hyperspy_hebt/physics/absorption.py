"""Absorption of X-ray lines in a specimen: mass attenuation coefficients and densities.

Mass attenuation coefficients come from exspy's copy of the Chantler (NIST FFAST) tables
(:func:`exspy.material.mass_absorption_coefficient`), so nothing is downloaded; a mixture's
is the weight-fraction mean of its elements'. Densities are the user's to give; where they
are not, :func:`estimate_density` gives a rough one from the composition (and says so).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from .detector import line_energy_kev
from .xray_data import atomic_weight, mass_density

__all__ = [
    "ANION_MOLAR_VOLUME_CM3",
    "attenuation_per_px",
    "estimate_density",
    "mass_attenuation_table",
]

#: Volume (cm^3/mol) each atom of a light anion takes in solids. The elements are gases
#: (their own densities are meaningless in a specimen); in oxides, nitrides and halides
#: the anions pack and the cations sit between them, so the anions set the volume. From
#: tabulated densities: O in SiO2 11.3, MgO 11.3, Mg2SiO4 10.8, Fe2SiO4 11.6, Fe2O3 10.1,
#: TiO2 9.4, Al2O3 8.5, CaO 16.8; N in Si3N4 11.1, TiN 11.5; F in CaF2 12.3; Cl in NaCl 27.
ANION_MOLAR_VOLUME_CM3 = {"O": 11.0, "N": 11.0, "F": 12.0, "Cl": 27.0}


def mass_attenuation_table(xray_lines: Sequence[str], elements: Sequence[str]) -> np.ndarray:
    """Mass attenuation coefficient of each line's X-rays in each element.

    Parameters
    ----------
    xray_lines : sequence of str
        exspy line names (``"O_Ka"``); the emitted energy is exspy's.
    elements : sequence of str
        Absorbing elements.

    Returns
    -------
    numpy.ndarray
        ``(len(xray_lines), len(elements))`` in cm^2/g.

    Raises
    ------
    ValueError
        An element or line exspy does not know, or no tabulated value at the energy.

    Examples
    --------
    >>> from hyperspy_hebt.physics.absorption import mass_attenuation_table
    >>> np.round(mass_attenuation_table(["O_Ka", "Fe_Ka"], ["O", "Fe"]))  # cm^2/g
    array([[1120., 3625.],
           [  21.,   64.]])
    """
    from exspy.material import mass_absorption_coefficient

    energies = [line_energy_kev(line) for line in xray_lines]
    table = np.empty((len(energies), len(elements)))
    for j, element in enumerate(elements):
        mass_density(element)  # a clear error for an unknown element
        values = np.atleast_1d(mass_absorption_coefficient(element, list(energies)))
        if not np.all(np.isfinite(values)) or (values <= 0).any():
            raise ValueError(
                f"No mass attenuation coefficient of {element} at "
                f"{dict(zip(xray_lines, energies))} keV in exspy's table.")
        table[:, j] = values
    return table


def estimate_density(weight_fractions: Mapping[str, np.ndarray], warn: bool = True
                     ) -> np.ndarray:
    """A rough density (g/cm^3) of each voxel from its composition alone.

    The larger of two volumes per gram: the cations' own (ideal mixing of the pure elements'
    densities) and the light anions' packing (:data:`ANION_MOLAR_VOLUME_CM3` per atom).
    Metals and alloys come out as ideal mixtures. Against tabulated densities: SiO2 +3 %,
    Mg2SiO4 -2 %, Fe2SiO4 +5 %, Fe2O3 -8 %, MgO -20 %, Al2O3 -23 %, CaO -35 % (light metals
    take less room in compounds than as metals), FeS2 -40 % (sulfur counted as the
    element). Give the density when it is known: this is for when it is not. Elements
    that are gases and not in the anion table (noble gases, H) add mass but no volume.

    Parameters
    ----------
    weight_fractions : mapping of str to array
        Weight fraction (0-1) of each element, arrays of one shape (or numbers).
    warn : bool
        Warn that the density is estimated (the default).

    Returns
    -------
    numpy.ndarray
        Density in g/cm^3, 0 where every fraction is 0.

    Raises
    ------
    TypeError
        ``warn`` is not True or False.

    Examples
    --------
    >>> from hyperspy_hebt.physics.absorption import estimate_density
    >>> estimate_density({"Fe": np.array([1.0]), "O": np.array([0.0])}, warn=False)  # g/cm^3
    array([7.874])
    """
    if not isinstance(warn, bool):
        raise TypeError(f"warn must be True or False, got {warn!r}.")
    cation_volume: np.ndarray | float = 0.0
    anion_volume: np.ndarray | float = 0.0
    for element, fraction in weight_fractions.items():
        c = np.asarray(fraction, dtype=float)
        if element in ANION_MOLAR_VOLUME_CM3:
            anion_volume = anion_volume + c / atomic_weight(element) * (
                ANION_MOLAR_VOLUME_CM3[element])
        elif mass_density(element) >= 0.1:
            cation_volume = cation_volume + c / mass_density(element)
    specific_volume = np.maximum(cation_volume, anion_volume)
    if warn:
        warnings.warn(
            "No density given: it is estimated from the composition (anion packing for "
            "oxides, ideal mixing otherwise), which can be off by 25 % or more; the "
            "absorption correction scales with it. Give density= when it is known.",
            UserWarning, stacklevel=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(specific_volume > 0, 1.0 / specific_volume, 0.0)


def attenuation_per_px(fractions, density_g_cm3, mass_attenuation_cm2_g,
                       pixel_size_nm: float) -> np.ndarray:
    """Linear attenuation per pixel length of one line's X-rays, voxel by voxel.

    ``mu = rho sum_A C_A (mu/rho)_A``, times the pixel length; summed in float32 one
    element at a time (no stacked copy of the fractions).

    Parameters
    ----------
    fractions : numpy.ndarray or sequence of numpy.ndarray
        ``(n_elements, ...)`` weight fractions (0-1), or one volume per element; NaN (no
        composition: vacuum, or below the threshold) counts as nothing.
    density_g_cm3 : float or numpy.ndarray
        Density in g/cm^3 (a number, or one per voxel).
    mass_attenuation_cm2_g : sequence of float
        This line's mass attenuation coefficient in each element (a row of
        :func:`mass_attenuation_table`), in cm^2/g.
    pixel_size_nm : float
        Voxel edge in nm.

    Returns
    -------
    numpy.ndarray
        float32, the shape of one fraction volume: dimensionless (per pixel).

    Raises
    ------
    ValueError
        A density that is negative or not finite, a pixel size that is not positive, or a
        number of coefficients other than the number of elements.

    Examples
    --------
    Fe Ka in pure iron, 10 nm voxels:

    >>> from hyperspy_hebt.physics.absorption import attenuation_per_px, mass_attenuation_table
    >>> table = mass_attenuation_table(["Fe_Ka"], ["Fe"])  # cm^2/g
    >>> np.round(attenuation_per_px(np.array([[1.0]]), 7.874, table[0], 10.0), 6)  # 1/voxel
    array([0.000504], dtype=float32)
    """
    coefficients = np.asarray(mass_attenuation_cm2_g, dtype=np.float64).reshape(-1)
    if len(fractions) != coefficients.size:
        raise ValueError(f"fractions has {len(fractions)} elements but "
                         f"mass_attenuation_cm2_g {coefficients.size} values.")
    if not (np.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise ValueError(f"pixel_size_nm must be a positive number, got {pixel_size_nm!r}.")
    density = np.asarray(density_g_cm3, dtype=np.float32)
    if not np.all(np.isfinite(density)) or (density < 0).any():
        raise ValueError("density_g_cm3 must be finite and >= 0 (g/cm^3).")
    mass = np.zeros(np.shape(fractions[0]), np.float32)
    for coefficient, fraction in zip(coefficients, fractions):
        mass += np.float32(coefficient) * np.nan_to_num(np.asarray(fraction, np.float32),
                                                        nan=0.0)
    mass *= density
    mass *= np.float32(pixel_size_nm * 1e-7)
    return mass
