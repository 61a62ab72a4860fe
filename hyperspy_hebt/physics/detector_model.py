"""A physical model of EDS detector efficiency: window, dead layer and crystal.

The efficiency at photon energy ``E`` is the chance that a photon reaching the
detector is absorbed in its active crystal::

    eps(E) = prod_layers exp(-mu_l(E) rho_l t_l)          window (and its coating)
             * exp(-mu_c(E) rho_c t_dead)                  inactive layer of the crystal
             * (1 - exp(-mu_c(E) rho_c t_crystal))         absorbed in the crystal

with ``mu`` mass attenuation coefficients from xraylib (cm^2/g; Schoonjans et al.
2011, close to NIST XCOM): the total (absorption and scattering) for the layers a
photon must cross, the photoelectric part for the crystal, where a photon that is
only scattered does not add to the line's peak. What it leaves out is constant
across energies (a window support grid's open fraction, the solid angle) and cancels
in Eq. 12, or second order (escape peaks, incomplete charge collection).

exspy's own absorption tables (FFAST) lack hydrogen, which polymer windows hold;
xraylib covers every element. It is an optional dependency
(``pip install hyperspy-hebt[physics]``).

An instance is a function of energy in keV, so it goes wherever a
``detector_efficiency`` is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .xray_data import mass_density

__all__ = ["DetectorModel", "Layer"]

# xraylib's cross sections refuse to extrapolate below 0.1 keV; 500 keV is far above
# any X-ray line and inside its tables.
_ENERGY_RANGE_KEV = (0.1, 500.0)


def _composition(composition) -> dict[str, float]:
    if isinstance(composition, str):
        composition = {composition: 1.0}
    if not isinstance(composition, Mapping) or not composition:
        raise TypeError(f"composition must be an element symbol or a mapping {{element: "
                        f"weight fraction}}, got {composition!r}.")
    fractions = {}
    for element, fraction in composition.items():
        _check_element(element)
        fraction = float(fraction)
        if not np.isfinite(fraction) or fraction <= 0:
            raise ValueError(f"weight fraction of {element} must be > 0, got {fraction}.")
        fractions[element] = fraction
    total = sum(fractions.values())
    if abs(total - 1.0) > 5e-3:
        raise ValueError(f"weight fractions must sum to 1, got {total:.4f} for {fractions}.")
    return {element: fraction / total for element, fraction in fractions.items()}


def _check_element(element):
    from .xray_data import atomic_weight

    atomic_weight(element)  # raises a clear error for an unknown symbol


def _xraylib():
    try:
        import xraylib
    except ImportError as error:
        raise ImportError(
            "DetectorModel needs xraylib for its attenuation coefficients: pip install "
            f"xraylib (or hyperspy-hebt[physics]). ({error})") from None
    return xraylib


def _mass_attenuation(fractions: dict[str, float], energies_kev: np.ndarray,
                      photoelectric: bool = False) -> np.ndarray:
    """mu/rho of a mixture (cm^2/g), the weight-fraction mean of its elements'.

    Total attenuation, or its photoelectric part.
    """
    from .xray_data import atomic_number

    xraylib = _xraylib()
    cross_section = xraylib.CS_Photo if photoelectric else xraylib.CS_Total
    total = np.zeros(len(energies_kev))
    for element, fraction in fractions.items():
        total += fraction * np.array([cross_section(atomic_number(element), float(energy))
                                      for energy in energies_kev])
    return total


def _positive_thickness(value, name):
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite thickness >= 0, got {value}.")
    return value


@dataclass(frozen=True)
class Layer:
    """One absorbing layer in front of the active crystal (window, coating, contact).

    Parameters
    ----------
    composition : str or mapping
        An element symbol (``"Al"``) or weight fractions summing to 1
        (``{"Si": 0.601, "N": 0.399}`` for Si3N4); a sum within 0.5 % of 1
        (rounded fractions) is normalised, anything further off is an error.
    thickness_nm : float
        Thickness in nm.
    density_g_cm3 : float, optional
        Mass density in g/cm^3; for a pure element, exspy's by default. Needed
        for a compound (polymer ~1.4, Si3N4 ~3.2: take your detector's data sheet).

    Examples
    --------
    >>> from hyperspy_hebt.physics import Layer
    >>> Layer("Si", 450.0)  # the density of the pure element when none is given
    Layer(composition='Si', thickness_nm=450.0, density_g_cm3=2.33)
    """

    composition: str | Mapping[str, float]
    thickness_nm: float
    density_g_cm3: float | None = None
    fractions: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        fractions = _composition(self.composition)
        object.__setattr__(self, "fractions", fractions)
        object.__setattr__(self, "thickness_nm",
                           _positive_thickness(self.thickness_nm, "thickness_nm"))
        density = self.density_g_cm3
        if density is None:
            if len(fractions) > 1:
                raise ValueError(f"a compound layer needs density_g_cm3 (composition "
                                 f"{fractions}).")
            density = mass_density(next(iter(fractions)))
        density = float(density)
        if not np.isfinite(density) or density <= 0:
            raise ValueError(f"density_g_cm3 must be > 0, got {density}.")
        object.__setattr__(self, "density_g_cm3", density)

    def transmission(self, energy_kev) -> np.ndarray:
        """Fraction of photons of ``energy_kev`` (keV) that cross the layer.

        Parameters
        ----------
        energy_kev : float or array-like
            Photon energies in keV.

        Returns
        -------
        numpy.ndarray
            ``exp(-mu/rho * rho * t)`` per energy, in (0, 1].

        Examples
        --------
        >>> from hyperspy_hebt.physics import Layer
        >>> window = Layer("Si", 450.0)  # 450 nm of silicon
        >>> np.round(window.transmission([0.525, 1.74, 6.4]), 3)  # O Ka, Si Ka, Fe Ka
        array([0.453, 0.963, 0.987])
        """
        energies = _energies(energy_kev)
        assert self.density_g_cm3 is not None  # set by __post_init__
        areal_density = self.density_g_cm3 * self.thickness_nm * 1e-7  # g/cm^2
        return np.exp(-_mass_attenuation(self.fractions, energies) * areal_density)


def _energies(energy_kev) -> np.ndarray:
    energies = np.atleast_1d(np.asarray(energy_kev, dtype=float))
    low, high = _ENERGY_RANGE_KEV
    if not np.all(np.isfinite(energies)) or energies.min() < low or energies.max() > high:
        raise ValueError(f"energy_kev must lie in [{low}, {high}] keV (the attenuation "
                         f"tables' range), got {energy_kev!r}.")
    return energies


@dataclass(frozen=True)
class DetectorModel:
    """Detection efficiency of an EDS detector as a function of photon energy.

    Parameters
    ----------
    window : sequence of Layer
        Layers between the specimen and the crystal: window, its coating, a
        contact layer. Empty for a windowless detector.
    dead_layer_nm : float
        Inactive layer at the crystal's entrance, in nm, of the crystal's material.
    crystal_thickness_um : float
        Active thickness in micrometres (silicon drift detectors: about 450).
    crystal : str
        Element of the crystal (``"Si"``, or ``"Ge"``).

    Examples
    --------
    A detector with a polymer window under an aluminium coat (thicknesses and
    polymer density as on its data sheet):

    >>> polyimide = {"C": 0.691, "H": 0.026, "N": 0.073, "O": 0.210}  # C22H10N2O5
    >>> detector = DetectorModel(window=(Layer(polyimide, 300, 1.42), Layer("Al", 40)),
    ...                          dead_layer_nm=30)
    >>> series.quantify_cross_section(rec, detector_efficiency=detector)  # doctest: +SKIP
    """

    window: tuple = ()
    dead_layer_nm: float = 0.0
    crystal_thickness_um: float = 450.0
    crystal: str = "Si"

    def __post_init__(self):
        window = tuple(self.window)
        for layer in window:
            if not isinstance(layer, Layer):
                raise TypeError(f"window must hold Layer objects, got {layer!r}.")
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "dead_layer_nm",
                           _positive_thickness(self.dead_layer_nm, "dead_layer_nm"))
        thickness = float(self.crystal_thickness_um)
        if not np.isfinite(thickness) or thickness <= 0:
            raise ValueError(f"crystal_thickness_um must be > 0, got {thickness}.")
        object.__setattr__(self, "crystal_thickness_um", thickness)
        mass_density(self.crystal)  # a known element with a density

    def __call__(self, energy_kev):
        """Efficiency in [0, 1] at ``energy_kev`` (keV).

        A float for a number, an array for an array.
        """
        energies = _energies(energy_kev)
        efficiency = np.ones_like(energies)
        for layer in self.window:
            efficiency *= layer.transmission(energies)
        crystal = Layer(self.crystal, self.dead_layer_nm)
        efficiency *= crystal.transmission(energies)
        mu_rho_t = (_mass_attenuation(crystal.fractions, energies, photoelectric=True)
                    * crystal.density_g_cm3 * self.crystal_thickness_um * 1e-4)
        efficiency *= -np.expm1(-mu_rho_t)
        return float(efficiency[0]) if np.ndim(energy_kev) == 0 else efficiency
