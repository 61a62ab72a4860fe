"""The synthetic data generators used by the demo and the tests."""

import numpy as np
import pytest

from hyperspy_hebt import physics
from hyperspy_hebt._reconstruction.intensities import window_shares
from hyperspy_hebt.simulation import (
    AVOGADRO,
    alloy_density,
    core_shell_phantom,
    project_volume,
    synthetic_tilt_series,
    thin_film_line_counts,
)
from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector


def test_alloy_density_ideal_mixing():
    ones = np.ones(3)
    assert alloy_density({"Ag": ones, "Au": 0 * ones})[0] == pytest.approx(10.49)
    mixed = alloy_density({"Ag": 0.5 * ones, "Au": 0.5 * ones})[0]
    assert mixed == pytest.approx(1 / (0.5 / 10.49 + 0.5 / 19.30))
    assert alloy_density({"Ag": np.zeros(2)})[0] == 0


def test_thin_film_counts_follow_eq5():
    fractions = {"Ag": np.array([1.0, 0.25]), "Au": np.array([0.0, 0.75])}
    counts = thin_film_line_counts(fractions, ["Ag_La", "Au_Ma"], 100.0, dose_electrons=1e8,
                                   solid_angle_sr=0.5, pixel_size_nm=2.0)
    n = AVOGADRO * 1e8 * 0.5 / (4 * np.pi)
    f_ag = physics.eds_factor("Ag_La", 100.0) * 1e-24
    assert counts["Ag_La"][0] == pytest.approx(n * f_ag * 1.0 * 10.49 * 2e-7)
    # Quantifying the simulated counts gives the fractions back (Eq. 12).
    f = [physics.eds_factor(line, 100.0) for line in ("Ag_La", "Au_Ma")]
    x = np.stack([counts["Ag_La"], counts["Au_Ma"]]) / np.array(f)[:, None]
    np.testing.assert_allclose(x[:, 1] / x[:, 1].sum(), [0.25, 0.75])
    with pytest.raises(ValueError, match="no weight fraction map for Cu"):
        thin_film_line_counts(fractions, ["Cu_Ka"], 100.0)


def test_independent_projector_agrees_with_the_reconstruction_one():
    core, shell = core_shell_phantom(48)
    image = (core + 0.5 * shell).astype(np.float32)
    tilts = np.linspace(-70, 70, 15)
    ours = get_projector(ParallelBeamGeometry(tuple(tilts), 48)).forward(image)
    fine = project_volume(image, tilts, oversampling=3)
    difference = np.linalg.norm(fine - ours) / np.linalg.norm(ours)
    # Sharp edges sampled differently: a few per cent, not zero (no inverse crime).
    assert 0.001 < difference < 0.05


def test_spectra_hold_the_line_counts():
    tilts = np.array([-30.0, 0.0, 30.0])
    sinogram = np.full((2, 3, 5), 1000.0)
    series = synthetic_tilt_series({"Cu_Ka": sinogram}, tilts, energy_axis_kev=(0, 0.01, 1200),
                                   background_counts=0.0, noise=False)
    assert series.data.shape == (3, 2, 5, 1200)
    assert series.metadata.Sample.xray_lines == ["Cu_Ka"]
    # Everything the Cu K family emits is in the spectrum: Ka plus Kb's share.
    kb_over_ka = physics.line_fraction("Cu_Kb") / physics.line_fraction("Cu_Ka")
    from exspy.material import elements

    exspy_kb = elements["Cu"].Atomic_properties.Xray_lines.Kb.weight
    np.testing.assert_allclose(series.data.sum(-1), 1000 * (1 + exspy_kb), rtol=1e-4)
    assert kb_over_ka == pytest.approx(exspy_kb, rel=0.2)  # two databases, same physics
    with pytest.raises(ValueError, match="must be >= 0"):
        synthetic_tilt_series({"Cu_Ka": -sinogram}, tilts)


def test_counts_scale_with_dose_and_composition_eq10_eq14():
    one = {"Ag": np.array([1.0, 0.5]), "Au": np.array([0.0, 0.5])}
    eds = thin_film_line_counts(one, ["Ag_La"], 100.0, dose_electrons=1e8)["Ag_La"]
    eds2 = thin_film_line_counts(one, ["Ag_La"], 100.0, dose_electrons=2e8)["Ag_La"]
    np.testing.assert_allclose(eds2, 2 * eds)
    from hyperspy_hebt.simulation import thin_film_adf_counts

    adf = thin_film_adf_counts(one, 100.0, dose_electrons=1e5)
    np.testing.assert_allclose(thin_film_adf_counts(one, 100.0, dose_electrons=3e5), 3 * adf)
    # Eq. 14: per unit rho t the ADF is linear in the fractions with weights z_A.
    density = alloy_density(one)
    z = {e: physics.haadf_factor(e, 100.0) for e in one}
    per_mass = adf / density
    assert per_mass[1] / per_mass[0] == pytest.approx((0.5 * z["Ag"] + 0.5 * z["Au"]) / z["Ag"])
    half = thin_film_adf_counts(one, 100.0, dose_electrons=1e5, collection_efficiency=0.5)
    np.testing.assert_allclose(half, adf / 2)
    with pytest.raises(ValueError, match="collection_efficiency"):
        thin_film_adf_counts(one, 100.0, collection_efficiency=0.0)


def test_poisson_statistics_and_seeds():
    tilts = np.array([-20.0, 20.0])
    expected = np.full((40, 2, 50), 30.0)  # 4000 pixels per tilt
    a = synthetic_tilt_series({"Cu_Ka": expected}, tilts, energy_axis_kev=(7.7, 0.02, 30),
                              background_counts=0.0, seed=5)
    b = synthetic_tilt_series({"Cu_Ka": expected}, tilts, energy_axis_kev=(7.7, 0.02, 30),
                              background_counts=0.0, seed=5, lazy=True)
    np.testing.assert_array_equal(a.data, b.data.compute())  # eager == lazy, same seed
    counts = a.data.sum(-1).astype(float)
    # Window 7.7-8.3 keV holds essentially all of Cu Ka (8.04 keV): mean 30, variance 30.
    # 8000 pixels: the mean's relative error is 0.2 % and the variance's 1.6 % (one
    # sigma); the bounds are about five sigma.
    assert counts.mean() == pytest.approx(30, rel=0.02)
    assert counts.var() == pytest.approx(counts.mean(), rel=0.08)


def test_spectra_integrate_back_to_the_line_intensities():
    tilts = np.array([-45.0, 0.0, 45.0])
    rng = np.random.default_rng(0)
    expected = {"Cu_Ka": rng.uniform(50, 100, (2, 3, 6)), "Au_Ma": rng.uniform(50, 100, (2, 3, 6))}
    series = synthetic_tilt_series(expected, tilts, energy_axis_kev=(0.0, 0.01, 1000),
                                   background_counts=0.0, noise=False)
    windows = series.estimate_integration_windows(windows_width=1.7,
                                                  xray_lines=["Cu_Ka", "Au_Ma"])
    # +-2 sigma of a Gaussian (0.9545) snapped to 10 eV channels; the share the methods
    # divide each map by (window_shares) is exactly what the spectra hold in the window.
    fraction_in_window = window_shares(series, ["Cu_Ka"], windows[:1], None)[0][0]
    assert fraction_in_window == pytest.approx(0.9545, abs=0.01)
    cu, au = series.get_lines_intensity(["Cu_Ka", "Au_Ma"], integration_windows=windows)
    # Cu Ka has no neighbour inside its window: counts come back to float32 rounding.
    np.testing.assert_allclose(cu.data, fraction_in_window * np.moveaxis(
        expected["Cu_Ka"], 1, 0), rtol=1e-5)
    # Au Ma's window also takes in Au Mb's tail (the overlap the README warns about).
    assert np.all(au.data > fraction_in_window * np.moveaxis(expected["Au_Ma"], 1, 0))


def test_simulate_acquisition_outputs():
    from hyperspy_hebt.simulation import paper_phantom, simulate_acquisition

    phantom = paper_phantom()
    assert phantom.weight_fractions["Au"].shape == (97, 97) and phantom.pixel_size_nm == 1.5
    acq = simulate_acquisition(phantom, ["Ag_La", "Au_Ma"], energy_axis_kev=(0, 0.02, 200))
    assert acq.series.axes_manager.navigation_shape == (97, 31)
    assert acq.series.axes_manager["x"].offset == pytest.approx(-72.0)
    tem = acq.series.metadata.Acquisition_instrument.TEM
    # 0.5 s x 100 pA = 3.121e8 electrons, the paper's EDS dose
    assert tem.Detector.EDS.live_time == pytest.approx(0.5, rel=1e-3)
    assert tem.beam_energy == 100.0 and tem.beam_current == 0.1
    assert acq.adf.axes_manager["tilt"].size == 31
    truth = acq.truth["Ag"]
    assert truth.axes_manager["x"].scale == 1.5 and truth.data.max() == pytest.approx(0.8)
    assert acq.line_intensities[0].shape == (31, 97)
    sphere = paper_phantom(n_slices=5)
    assert sphere.weight_fractions["Ag"].shape == (5, 97, 97)
    with pytest.raises(ValueError, match="summing to 1"):
        paper_phantom(core_composition={"Au": 0.7, "Ag": 0.2})
