"""physics.DetectorModel: window, dead layer and crystal, against an independent table."""

import sys

import numpy as np
import pytest
from helpers import make_series

from hyperspy_hebt import physics
from hyperspy_hebt.physics import DetectorModel, Layer

pytest.importorskip("xraylib")

POLYIMIDE = {"C": 0.691, "H": 0.026, "N": 0.073, "O": 0.210}  # C22H10N2O5


def _ffast(element, energy_kev):
    """mu/rho (cm^2/g) from exspy's FFAST tables (Chantler et al. 2005): a database
    independent of xraylib's, which the model uses."""
    from exspy.material import mass_absorption_coefficient

    return float(np.asarray(mass_absorption_coefficient(element, [energy_kev]))[0])


@pytest.mark.parametrize("energy_kev", [10.0, 20.0, 30.0])
def test_crystal_absorption_matches_an_independent_table(energy_kev):
    """A bare 450 um Si crystal absorbs 1 - exp(-mu rho t) of the photons."""
    expected = 1 - np.exp(-_ffast("Si", energy_kev) * 2.33 * 450e-4)
    # 5 %: FFAST's photoabsorption and xraylib's differ by 2-4 % for Si at 10-30 keV
    # (32.2 vs 33.2 cm^2/g at 10 keV); a unit slip would be off by orders of magnitude.
    assert DetectorModel()(energy_kev) == pytest.approx(expected, rel=0.05)


def test_layers_follow_beer_lambert():
    energies = np.array([0.28, 0.52, 1.0, 1.5, 3.0, 8.0])
    whole = DetectorModel(window=(Layer(POLYIMIDE, 300, 1.42),))(energies)
    halves = DetectorModel(window=(Layer(POLYIMIDE, 150, 1.42),) * 2)(energies)
    np.testing.assert_allclose(halves, whole, rtol=1e-12)
    # Thick crystal: the efficiency is the window's transmission alone.
    thick = DetectorModel(window=(Layer("Al", 40),), crystal_thickness_um=5e4)
    np.testing.assert_allclose(thick(energies), Layer("Al", 40).transmission(energies),
                               rtol=1e-9)


def test_dead_layer_steps_down_at_the_silicon_k_edge():
    below, above = 1.82, 1.86  # keV, either side of Si K at 1.839 keV
    clean = DetectorModel()
    assert clean(below) == pytest.approx(1.0, abs=1e-6)
    assert clean(above) == pytest.approx(1.0, abs=1e-6)
    dead = DetectorModel(dead_layer_nm=100)
    # Si absorbs ~10x more just above its K edge (about 300 and 3000 cm^2/g): 100 nm
    # at 2.33 g/cm^3 transmit ~99.3 % below and ~93 % above, a ~6 % step. Expected
    # from FFAST; 1 %: the two tables' edge jumps differ by ~6 %, which moves a 6 %
    # step by 0.4 %.
    jump = _ffast("Si", above) - _ffast("Si", below)
    assert dead(below) == pytest.approx(np.exp(-_ffast("Si", below) * 2.33e-5), rel=0.01)
    assert dead(above) / dead(below) == pytest.approx(np.exp(-jump * 2.33e-5), rel=0.01)


def test_polymer_window_is_worst_at_light_elements():
    detector = DetectorModel(window=(Layer(POLYIMIDE, 300, 1.42), Layer("Al", 40)),
                             dead_layer_nm=30)
    lines = {"C_Ka": 0.277, "O_Ka": 0.525, "Al_Ka": 1.487, "Cu_Ka": 8.048}
    values = {line: detector(energy) for line, energy in lines.items()}
    # C K is transmitted worse than O K (polyimide's carbon absorbs it strongly, and
    # O K sits below the O K edge in the window's oxygen)... and both far worse than Cu K.
    assert values["C_Ka"] < values["O_Ka"] < values["Al_Ka"] < values["Cu_Ka"]
    assert 0 < values["C_Ka"] < 0.7 and values["Cu_Ka"] > 0.99


def test_quantification_takes_the_model():
    """A DetectorModel is a detector_efficiency: the factors use it at each line."""
    series = make_series(n_slices=2, noise=False)
    recs = series.reconstruct_sirt(iterations=5, padding_px=0, integration_windows=1.0)
    detector = DetectorModel(window=(Layer(POLYIMIDE, 300, 1.42), Layer("Al", 40)))
    as_model = series.quantify_cross_section(recs, threshold=None, detector_efficiency=detector)
    as_values = series.quantify_cross_section(recs, threshold=None, detector_efficiency={
        line: detector(physics.line_energy_kev(line)) for line in ("Ag_La", "Au_Ma")})
    for a, b in zip(as_model, as_values):
        np.testing.assert_array_equal(a.data, b.data)
    eps_ag = as_model[0].metadata.Quantification.detector_efficiency
    eps_au = as_model[1].metadata.Quantification.detector_efficiency
    assert eps_ag == pytest.approx(detector(physics.line_energy_kev("Ag_La")))
    assert eps_ag > eps_au  # Ag La at 2.98 keV crosses the window better than Au Ma at 2.12
    record = as_model[0].metadata.Quantification.detector_model
    assert record.startswith("DetectorModel(window=(Layer(composition={'C': 0.691") \
        and "dead_layer_nm=0.0, crystal_thickness_um=450.0" in record


@pytest.mark.parametrize("make, error, message", [
    (lambda: Layer({"Si": 0.5, "N": 0.3}, 40, 3.2), ValueError, "must sum to 1"),
    (lambda: Layer({"Si": 0.6, "N": 0.4}, 40), ValueError, "needs density_g_cm3"),
    (lambda: Layer("Al", -5), ValueError, "thickness_nm must be a finite thickness"),
    (lambda: Layer("Xx", 5), ValueError, "Unknown element 'Xx'"),
    (lambda: Layer({"Si": 1.0}, 5, 0.0), ValueError, "density_g_cm3 must be > 0"),
    (lambda: DetectorModel(window=("Al",)), TypeError, "window must hold Layer"),
    (lambda: DetectorModel(crystal_thickness_um=0), ValueError, "crystal_thickness_um"),
    (lambda: DetectorModel()(0.05), ValueError, r"energy_kev must lie in \[0.1, 500.0\]"),
    (lambda: DetectorModel()(np.nan), ValueError, "energy_kev must lie"),
])
def test_bad_input_is_named(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_missing_xraylib_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "xraylib", None)
    with pytest.raises(ImportError, match="DetectorModel needs xraylib"):
        DetectorModel()(3.0)
