"""The synthetic data generators used by the demo and the tests."""

import numpy as np
import pytest

from hyperspy_hebt import physics
from hyperspy_hebt.simulation import (AVOGADRO, alloy_density, core_shell_phantom,
                                      project_volume, synthetic_tilt_series,
                                      thin_film_line_counts)
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
