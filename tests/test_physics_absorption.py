"""Mass attenuation coefficients and density estimates (physics.absorption)."""

import numpy as np
import pytest

from hyperspy_hebt.physics import atomic_number, atomic_weight, line_energy_kev
from hyperspy_hebt.physics.absorption import (
    attenuation_per_px,
    estimate_density,
    mass_attenuation_table,
)


def weight_fractions(formula: dict) -> dict:
    total = sum(atomic_weight(e) * n for e, n in formula.items())
    return {e: atomic_weight(e) * n / total for e, n in formula.items()}


def test_mass_attenuation_agrees_with_xraylib():
    xraylib = pytest.importorskip("xraylib")
    lines, elements = ["O_Ka", "Mg_Ka", "Si_Ka", "Fe_Ka", "Fe_La"], ["O", "Mg", "Si", "Fe"]
    table = mass_attenuation_table(lines, elements)
    assert table.shape == (5, 4)
    for i, line in enumerate(lines):
        for j, element in enumerate(elements):
            theirs = xraylib.CS_Total(atomic_number(element), line_energy_kev(line))
            # Chantler (exspy) and xraylib's own tables differ by up to 13 % at these
            # energies (O Ka in O sits 7 eV below the O K edge); a wrong element, line or
            # unit would be off by factors.
            assert table[i, j] == pytest.approx(theirs, rel=0.15), (line, element)


def test_mass_attenuation_follows_the_edges():
    table = mass_attenuation_table(["Fe_Ka", "O_Ka"], ["Fe", "Si"])
    # 6.4 keV X-rays pass almost freely; 0.52 keV ones are absorbed thousands of times more.
    assert table[0].max() < 200 < 1000 < table[1].min()


def test_unknown_element_is_refused():
    with pytest.raises(ValueError):
        mass_attenuation_table(["O_Ka"], ["Xx"])


@pytest.mark.parametrize("formula, tabulated, tolerance", [
    # Tolerances: the estimate's measured error for each compound plus 2 % (it is rough
    # on purpose; the docstring gives the same numbers).
    ({"Fe": 1}, 7.874, 0.01),
    ({"Si": 1, "O": 2}, 2.65, 0.05),
    ({"Mg": 2, "Si": 1, "O": 4}, 3.27, 0.04),
    ({"Fe": 2, "Si": 1, "O": 4}, 4.39, 0.07),
    ({"Fe": 2, "O": 3}, 5.26, 0.10),
    ({"Mg": 1, "O": 1}, 3.58, 0.22),
    ({"Al": 2, "O": 3}, 3.99, 0.25),
])
def test_density_estimate(formula, tabulated, tolerance):
    with pytest.warns(UserWarning, match="density="):
        estimate = estimate_density(weight_fractions(formula))
    assert float(estimate) == pytest.approx(tabulated, rel=tolerance)


def test_density_estimate_is_zero_outside_and_quiet_on_request(recwarn):
    fractions = {"Si": np.array([0.0, 0.4675]), "O": np.array([0.0, 0.5325])}
    density = estimate_density(fractions, warn=False)
    assert density[0] == 0 and density[1] > 2
    assert not recwarn.list


def test_attenuation_per_px_units():
    # Pure Fe (7.874 g/cm^3) for O Ka: mu = rho * (mu/rho), per 10 nm pixel.
    coefficient = mass_attenuation_table(["O_Ka"], ["Fe"])[0]
    mu = attenuation_per_px(np.ones((1, 2, 2, 2)), 7.874, coefficient, 10.0)
    assert mu.shape == (2, 2, 2)
    assert mu[0, 0, 0] == pytest.approx(7.874 * coefficient[0] * 10e-7, rel=1e-6)
    # No composition (NaN outside the threshold) absorbs nothing.
    assert attenuation_per_px(np.full((1, 2), np.nan), 7.874, coefficient, 10.0).max() == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"pixel_size_nm": 0.0}, "pixel_size_nm"),
    ({"density_g_cm3": -1.0}, "density"),
    ({"mass_attenuation_cm2_g": [1.0, 2.0]}, "elements"),
])
def test_attenuation_per_px_refuses_bad_numbers(kwargs, match):
    arguments = {"fractions": np.ones((1, 2)), "density_g_cm3": 3.0,
                 "mass_attenuation_cm2_g": [100.0], "pixel_size_nm": 5.0} | kwargs
    with pytest.raises(ValueError, match=match):
        attenuation_per_px(**arguments)
