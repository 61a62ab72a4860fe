"""Per-voxel uncertainty (issue 16): the bootstrap's variance against the spread of repeats.

Calibration: independent noise realisations of one phantom (spectra simulated with other
seeds), reconstructed and quantified like the data, give each voxel's actual spread; the
bootstrap of one realisation must predict it within 20 % (the issue's bound) in the
particle's interior.
"""

import logging

import hyperspy.api as hs
import numpy as np
import pytest
from helpers import calibration_ratio, interior_voxels, make_series, variances_of
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperspy_hebt import compute_together
from hyperspy_hebt.quantification import composition_fractions, fraction_variances

N_X, N_SLICES = 24, 4

#: Independent realisations for the actual spread: the RMS over ~700 interior voxels of a
#: 24-sample standard deviation is good to a few percent, well inside the 20 % bound.
REALISATIONS = 24
#: Measured (session 9): the ratios were 0.97-1.05 for the volumes and 0.88-1.03 for the
#: fractions, at this dose and at 20x less. The issue asks for 20 %.
CALIBRATION = 0.2


RECONSTRUCT = {
    "sirt": lambda s, **kw: s.reconstruct_sirt(iterations=20, padding_px=0, **kw),
    "mlem": lambda s, **kw: s.reconstruct_mlem(iterations=20, padding_px=0, **kw),
    "poisson_tv": lambda s, **kw: s.reconstruct_poisson_tv(iterations=150, tv_weight=0.03,
                                                           padding_px=0, **kw),
    "joint_tv": lambda s, **kw: s.reconstruct_poisson_tv(iterations=150, tv_weight=0.03,
                                                         joint_tv=True, padding_px=0, **kw),
}


@pytest.mark.parametrize("method, dose", [("sirt", 1.0), ("sirt", 0.05), ("mlem", 0.05),
                                          ("poisson_tv", 0.05), ("joint_tv", 0.05)])
def test_bootstrap_predicts_the_spread_of_independent_repeats(method, dose, caplog):
    caplog.set_level(logging.ERROR)  # the Au_Ma window's Au_Mb warning, every repeat
    reconstruct = RECONSTRUCT[method]
    volumes, fractions = [], []
    for seed in range(REALISATIONS):
        series = make_series(N_X, N_SLICES, seed=100 + seed, dose=dose)
        recs = reconstruct(series)
        volumes.append(np.stack([r.data for r in recs]))
        fractions.append(np.stack([f.data for f in
                                   series.quantify_cross_section(recs, threshold=1.0)]))
    series = make_series(N_X, N_SLICES, seed=7, dose=dose)
    recs = reconstruct(series, uncertainty=24, random_state=0)
    quantified = series.quantify_cross_section(recs, threshold=1.0)
    interior = interior_voxels(N_X, N_SLICES)
    volume_ratio = calibration_ratio(variances_of(recs), np.std(volumes, axis=0, ddof=1), interior)
    fraction_ratio = calibration_ratio(variances_of(quantified), np.std(fractions, axis=0, ddof=1),
                            interior)
    assert np.allclose(volume_ratio, 1, atol=CALIBRATION), volume_ratio
    assert np.allclose(fraction_ratio, 1, atol=CALIBRATION), fraction_ratio


def test_lazy_equals_eager_and_the_seed_is_recorded():
    eager = make_series(N_X, 3)
    lazy = make_series(N_X, 3, lazy=True)
    before = eager.data.copy()
    recs = eager.reconstruct_sirt(iterations=10, padding_px=0, uncertainty=4, random_state=5)
    lazy_recs = lazy.reconstruct_sirt(iterations=10, padding_px=0, uncertainty=4,
                                      random_state=5, slices_per_block=2)
    assert lazy_recs[0]._lazy
    variance = lazy_recs[0].metadata.Signal.Noise_properties.variance
    assert variance._lazy
    # Same noise whatever the chunks: one generator per (seed, line, repeat, slice).
    np.testing.assert_array_equal(variance.data.compute(), variances_of(recs)[0])
    record = recs[0].metadata.Reconstruction.Uncertainty
    assert record.seed == 5 and record.replicates == 4
    np.testing.assert_array_equal(eager.data, before)
    drawn = eager.reconstruct_sirt(iterations=10, padding_px=0, uncertainty=3)
    seed = drawn[0].metadata.Reconstruction.Uncertainty.seed
    again = eager.reconstruct_sirt(iterations=10, padding_px=0, uncertainty=3,
                                   random_state=seed)
    np.testing.assert_array_equal(variances_of(drawn), variances_of(again))
    # With a filter along the slices, runs of 2 slices (and their filter's halo) give what
    # one run of them all gives, eager and lazy: the noise is filtered as across the stack.
    # sigma 0.5 reaches 2 slices: the runs (2, 3) each carry a halo.
    filtered = dict(iterations=10, padding_px=0, uncertainty=3, random_state=2,
                    gaussian_sigma=0.5)
    whole = variances_of(make_series(N_X, 5).reconstruct_sirt(**filtered))
    for signal in (make_series(N_X, 5), make_series(N_X, 5, lazy=True)):
        runs = signal.reconstruct_sirt(slices_per_block=2, **filtered)
        if runs[0]._lazy:
            runs = compute_together(runs)
        np.testing.assert_allclose(variances_of(runs), whole, rtol=1e-5,
                                   atol=1e-6 * whole.max())
    fractions = lazy.quantify_cross_section(lazy_recs, threshold=1.0)
    np.testing.assert_allclose(
        fractions[0].metadata.Signal.Noise_properties.variance.data.compute(),
        variances_of(eager.quantify_cross_section(recs, threshold=1.0))[0], atol=1e-6)


def test_the_variance_is_saved_and_loaded_with_the_reconstruction(tmp_path):
    series = make_series(N_X, 3)
    recs = series.reconstruct_sirt(iterations=10, padding_px=0, uncertainty=3, random_state=1)
    fractions = series.quantify_cross_section(recs)
    for name, signal in (("volume", recs[0]), ("fraction", fractions[0])):
        path = tmp_path / f"{name}.hspy"
        signal.save(path)
        loaded = hs.load(path)
        np.testing.assert_array_equal(loaded.metadata.Signal.Noise_properties.variance.data,
                                      signal.metadata.Signal.Noise_properties.variance.data)
    assert fractions[0].metadata.Quantification.Uncertainty.factor_uncertainty.startswith("not")


def test_maps_without_a_known_variance_are_refused_naming_the_line():
    series = make_series(N_X, 3)
    maps = series.get_lines_intensity(xray_lines=["Ag_La", "Au_Ma"])
    with pytest.raises(ValueError, match="Ag_La map has no known variance"):
        series.reconstruct_sirt(iterations=5, intensities=maps, uncertainty=3)
    for image in maps:
        image.estimate_poissonian_noise_variance()
    recs = series.reconstruct_sirt(iterations=5, intensities=maps, uncertainty=3,
                                   random_state=0, padding_px=0)
    integrated = series.reconstruct_sirt(iterations=5, uncertainty=3, random_state=0,
                                         padding_px=0)
    # The spectra's own Poisson variance is the plain counts without background windows.
    np.testing.assert_allclose(variances_of(recs), variances_of(integrated), rtol=1e-5)


def test_background_windows_add_their_counts_to_the_variance():
    from hyperspy_hebt._reconstruction.intensities import background_scale, line_intensities

    series = make_series(N_X, 3)
    lines = ["Ag_La"]
    windows = series.estimate_integration_windows(windows_width=2.0, xray_lines=lines)
    background = series.estimate_background_windows(xray_lines=lines)
    (line,) = line_intensities(series, lines, None, windows, background, variance=True)
    gross = series.get_lines_intensity(xray_lines=lines, integration_windows=windows)[0].data
    scale = background_scale(series, windows[0], background[0])
    # Var(W - c (B1 + B2)) = W + c^2 (B1 + B2), with c (B1 + B2) = W - net.
    np.testing.assert_allclose(line.variance, gross + scale * (gross - line.data), rtol=1e-6)
    assert np.all(line.variance >= gross)


def test_bad_uncertainty_settings_are_refused():
    series = make_series(N_X, 3)
    for bad in (1, True, 2.5, "auto"):
        with pytest.raises(ValueError, match="uncertainty must be 0"):
            series.reconstruct_sirt(iterations=5, uncertainty=bad)
    with pytest.raises(ValueError, match="random_state seeds"):
        series.reconstruct_sirt(iterations=5, random_state=3)
    with pytest.raises(ValueError, match="random_state must be"):
        series.reconstruct_sirt(iterations=5, uncertainty=3, random_state=-1)
    with pytest.raises(ValueError, match="had a background subtracted"):
        series.reconstruct_mlem(iterations=5, uncertainty=3, background_windows="auto")


def test_quantification_refuses_a_variance_on_some_lines_only():
    series = make_series(N_X, 3)
    recs = series.reconstruct_sirt(iterations=5, padding_px=0, uncertainty=3, random_state=0)
    plain = series.reconstruct_sirt(iterations=5, padding_px=0)
    with pytest.raises(ValueError, match=r"reconstructions \[1\] have no"):
        series.quantify_cross_section([recs[0], plain[1]])
    with pytest.raises(ValueError, match="factor_uncertainty must be"):
        series.quantify_cross_section(recs, factor_uncertainty=[0.1, -0.1])
    with pytest.raises(ValueError, match="factor_uncertainty has no entry for Au_Ma"):
        series.quantify_cross_section(recs, factor_uncertainty={"Ag": 0.05})
    relabelled = [r.deepcopy() for r in recs]  # HEBT's lines share the ADF term
    for rec in relabelled:
        rec.metadata.Reconstruction.algorithm = "HEBT"
    with pytest.raises(ValueError, match="share the ADF"):
        series.quantify_cross_section(relabelled)
    with pytest.raises(ValueError, match="these carry none"):
        series.quantify_cross_section(plain, factor_uncertainty=0.05)
    with_factors = series.quantify_cross_section(recs, factor_uncertainty={"Ag": 0.05,
                                                                          "Au": 0.05})
    without = series.quantify_cross_section(recs)
    inside = without[0].data > 0
    assert np.all(variances_of(with_factors)[:, inside] > variances_of(without)[:, inside])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_elements=st.integers(2, 4), atomic=st.booleans())
def test_first_order_variance_matches_monte_carlo_for_small_noise(seed, n_elements, atomic):
    """The delta method is exact to first order: at 1 % noise it matches sampling."""
    rng = np.random.default_rng(seed)
    volumes = rng.uniform(0.5, 2.0, (n_elements, 5))
    factors = rng.uniform(0.5, 2.0, n_elements)
    weights = rng.uniform(10, 200, n_elements) if atomic else None
    relative = rng.uniform(0, 0.01, n_elements)
    variances = (0.01 * volumes) ** 2
    predicted = np.stack(fraction_variances(list(volumes), list(variances), factors,
                                            atomic_weights=weights,
                                            factor_uncertainty=relative))
    draws = 4000
    noisy = volumes + rng.standard_normal((draws,) + volumes.shape) * np.sqrt(variances)
    noisy_factors = factors * (1 + relative * rng.standard_normal((draws, n_elements)))
    sampled = np.stack([composition_fractions(v, f, atomic_weights=weights)
                        for v, f in zip(noisy, noisy_factors)]).var(axis=0)
    # 4000 draws: a sample variance is good to sqrt(2/4000) = 2.2 %; 4 sigma, plus the
    # second-order terms at 1 % noise.
    np.testing.assert_allclose(predicted, sampled, rtol=0.12)


def test_fractions_of_a_denominator_lost_in_noise_have_no_first_order_variance():
    volumes = [np.array([10.0, 10.0]), np.array([10.0, 1.0])]
    # The second voxel's total (11) has a standard deviation of 14: a ratio of it has no
    # first-order variance; the first (20, sd 1.4) has one.
    variances = [np.array([1.0, 100.0]), np.array([1.0, 100.0])]
    result = fraction_variances(volumes, variances, [1.0, 1.0])
    assert np.isfinite(result[0][0]) and np.isnan(result[0][1]) and np.isnan(result[1][1])


def test_joint_tv_bootstrap_runs_the_lines_together_eager_equals_lazy():
    """Joint TV couples the lines, so each bootstrap task holds all of them and gives their
    covariance too: runs of 2 slices with a filter's halo give, lazy, what the eager pass
    gives, and the fractions' variance uses the covariance (eager = lazy again)."""
    settings = dict(iterations=30, tv_weight=0.03, joint_tv=True, padding_px=0,
                    uncertainty=3, random_state=4, gaussian_sigma=0.5)
    series = make_series(N_X, 5)
    eager = series.reconstruct_poisson_tv(**settings, show_progressbar=False)
    lazy = make_series(N_X, 5, lazy=True).reconstruct_poisson_tv(**settings,
                                                                 slices_per_block=2)
    covariance = eager[0].metadata.Signal.Noise_properties.Covariance.Au_Ma
    lazy_covariance = lazy[0].metadata.Signal.Noise_properties.Covariance.Au_Ma
    assert lazy_covariance._lazy and "covariance" in eager[0].metadata.Reconstruction.Uncertainty
    lazy = compute_together(lazy)
    np.testing.assert_allclose(variances_of(lazy), variances_of(eager), rtol=1e-5,
                               atol=1e-6 * variances_of(eager).max())
    np.testing.assert_allclose(lazy_covariance.data.compute(), covariance.data, rtol=1e-5,
                               atol=1e-6 * variances_of(eager).max())
    # Cauchy-Schwarz per voxel (sample moments obey it exactly).
    bound = np.sqrt(np.prod(variances_of(eager), axis=0))
    assert np.all(np.abs(covariance.data) <= bound * (1 + 1e-4) + 1e-6)
    fractions = series.quantify_cross_section(eager, threshold=1.0)
    assert "covariances" in fractions[0].metadata.Quantification.Uncertainty.propagation
    lazy_fractions = series.quantify_cross_section(lazy, threshold=1.0)
    np.testing.assert_allclose(variances_of(lazy_fractions), variances_of(fractions), atol=1e-6)
    # Without the covariance the lines would be taken as independent: refused.
    del eager[0].metadata.Signal.Noise_properties.Covariance
    with pytest.raises(ValueError, match="not the covariances.*share one total variation"):
        series.quantify_cross_section(eager)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_elements=st.integers(2, 4))
def test_first_order_variance_with_covariances_matches_monte_carlo(seed, n_elements):
    """Correlated volumes (a random covariance per voxel): the delta method with the
    covariances matches sampling at 1 % noise, and leaving them out does not."""
    rng = np.random.default_rng(seed)
    n_voxels = 5
    volumes = rng.uniform(0.5, 2.0, (n_elements, n_voxels))
    factors = rng.uniform(0.5, 2.0, n_elements)
    mixing = rng.uniform(-1.0, 1.0, (n_voxels, n_elements, n_elements))
    mixing += 2.0 * np.eye(n_elements)  # well conditioned; strongly correlated off-diagonal
    covariance = (0.01 ** 2) * np.einsum("vij,vkj->vik", mixing, mixing) * np.einsum(
        "iv,kv->vik", volumes, volumes)
    variances = [covariance[:, i, i] for i in range(n_elements)]
    pairs = {(i, j): covariance[:, i, j] for i in range(n_elements)
             for j in range(i + 1, n_elements)}
    predicted = np.stack(fraction_variances(list(volumes), variances, factors,
                                            covariances=pairs))
    independent = np.stack(fraction_variances(list(volumes), variances, factors))
    draws = 4000
    chol = np.linalg.cholesky(covariance)  # (voxels, n, n)
    noise = np.einsum("vij,dvj->div", chol, rng.standard_normal((draws, n_voxels,
                                                                  n_elements)))
    sampled = np.stack([composition_fractions(volumes + n, factors) for n in noise]).var(axis=0)
    # As the independent case: 2.2 % sampling error per variance, 4 sigma, plus the
    # second-order terms.
    np.testing.assert_allclose(predicted, sampled, rtol=0.12)
    # The covariances matter here: leaving them out moves some voxel's variance by more
    # than 10 % (compared with the first-order value, not the sample, whose own 2.2 %
    # error made this flaky: hypothesis found seed 527 at 0.118 against the sample;
    # 0.124 against the first-order value, the smallest of 450 draws; most are 0.2-0.9).
    assert np.max(np.abs(independent / predicted - 1)) > 0.1


def _hebt_run(seed, dose, alpha, iterations, n_x=N_X, n_slices=N_SLICES, lazy=False,
              **kwargs):
    """HEBT of a realisation: spectra and ADF (projections of Ag + 1.8 Au, 100 counts per
    unit, Poisson) both drawn anew; quantified over every voxel with mass (``z_A`` makes
    the totals ~1e-3, so the SIRT tests' threshold of 1 would leave nothing)."""
    from hyperspy_hebt.simulation import core_shell_phantom, project_volume, synthetic_adf_series

    core, shell = core_shell_phantom(n_x, n_slices)
    mass = (0.2 * core + 0.8 * shell) + 1.8 * (0.8 * core + 0.2 * shell)
    series = make_series(n_x, n_slices, seed=100 + seed, dose=dose)
    tilts = series.tilt_angles
    adf = synthetic_adf_series(100 * project_volume(mass, tilts), tilts, seed=500 + seed)
    if lazy:
        series = series.as_lazy()
    recs = series.reconstruct_hebt(adf, alpha=alpha, iterations=iterations, padding_px=0,
                                   show_progressbar=False, **kwargs)
    return series, adf, recs


@pytest.mark.parametrize("dose, alpha, iterations", [(1.0, 0.7, 50), (0.05, 0.9, 100)])
def test_hebt_bootstrap_predicts_the_spread_of_independent_repeats(dose, alpha, iterations,
                                                                    caplog):
    """HEBT's lines share the ADF term: repeated together with the ADF (about the fit's
    W sum_A Xb_A, at its residual there) and quantified with their covariances. Measured
    with 24 + 24: predicted / actual standard deviation 0.94 / 0.92 (volumes) and 0.97
    (fractions) at the paper's dose and alpha 0.7; 0.97 / 0.98 and 1.00 at a twentieth of
    it and alpha 0.9. The issue's bound is 20 %."""
    caplog.set_level(logging.ERROR)
    volumes, fractions = [], []
    for seed in range(REALISATIONS):
        series, _, recs = _hebt_run(seed, dose, alpha, iterations)
        volumes.append(np.stack([r.data for r in recs]))
        fractions.append(np.stack([f.data for f in
                                   series.quantify_cross_section(recs, threshold=None)]))
    series, _, recs = _hebt_run(77, dose, alpha, iterations, uncertainty=24, random_state=0)
    quantified = series.quantify_cross_section(recs, threshold=None)
    assert "Covariance" in quantified[0].metadata.Quantification.Uncertainty.propagation
    interior = interior_voxels(N_X, N_SLICES)
    volume_ratio = calibration_ratio(variances_of(recs), np.std(volumes, axis=0, ddof=1),
                                     interior)
    fraction_ratio = calibration_ratio(variances_of(quantified),
                                       np.std(fractions, axis=0, ddof=1), interior)
    assert np.allclose(volume_ratio, 1, atol=CALIBRATION), volume_ratio
    assert np.allclose(fraction_ratio, 1, atol=CALIBRATION), fraction_ratio


def test_hebt_bootstrap_eager_equals_lazy_with_covariances_and_refusals(caplog):
    caplog.set_level(logging.ERROR)
    settings = dict(dose=0.3, alpha=0.7, iterations=30, n_x=16, n_slices=4,
                    uncertainty=4, random_state=3)
    series, adf, eager = _hebt_run(1, **settings)
    _, _, lazy = _hebt_run(1, lazy=True, slices_per_block=2, **settings)
    assert lazy[0]._lazy
    lazy = compute_together(lazy)
    for e, z in zip(eager, lazy):
        for name in ("variance", "Covariance.Au_Ma"):
            if name.startswith("Covariance") and e is eager[1]:
                continue  # the pair's covariance is on its first line only
            mine = e.metadata.get_item(f"Signal.Noise_properties.{name}").data
            theirs = z.metadata.get_item(f"Signal.Noise_properties.{name}").data
            np.testing.assert_allclose(theirs, mine, rtol=0, atol=1e-5 * np.abs(mine).max())
    record = eager[0].metadata.Reconstruction.Uncertainty
    assert "ADF units (Xb_A) squared" in record.variance and "HEBT" in record.adf_noise
    covariance = eager[0].metadata.Signal.Noise_properties.Covariance.Au_Ma.data
    assert np.abs(covariance).max() > 0  # the shared ADF term correlates the lines
    with pytest.raises(ValueError, match="uncertainty with unlisted_mass=True"):
        series.reconstruct_hebt(adf, alpha=0.7, iterations=5, unlisted_mass=True,
                                uncertainty=4)
