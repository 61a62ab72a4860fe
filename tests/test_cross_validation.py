"""Held-out-tilt cross-validation picks settings close to the oracle, and SIRT when HEBT breaks."""

import numpy as np
import pytest

from hyperspy_hebt.cross_validation import poisson_deviance
from hyperspy_hebt.simulation import Phantom, paper_phantom, simulate_acquisition
from hyperspy_hebt.study import calibrate_to_paper

LINES = ["Ag_La", "Au_Ma"]
ITERATIONS = (50, 200, 500)
ALPHAS = (0.7, 0.9)
SIGMA = {"x": 0.8, "tilt": 0.8}


def test_poisson_deviance_textbook():
    rng = np.random.default_rng(0)
    mean = np.full(200000, 20.0)
    # For Poisson counts of mean 20 the expected deviance per pixel is ~1.0.
    assert poisson_deviance(rng.poisson(mean), mean) == pytest.approx(1.0, abs=0.05)
    assert poisson_deviance(rng.poisson(mean), 1.5 * mean) > 3
    with pytest.raises(ValueError, match="score='mse'"):
        poisson_deviance(np.array([-1.0, 2.0]), np.array([1.0, 1.0]))


@pytest.fixture(scope="module")
def calibration():
    return calibrate_to_paper(seed=0)


def _case(calibration, phantom, adf_change=None, **robust):
    acquisition = simulate_acquisition(phantom, LINES,
                                       solid_angle_sr=calibration.solid_angle_sr,
                                       adf_collection_efficiency=calibration.adf_collection_efficiency,
                                       energy_axis_kev=(0.0, 0.02, 200))
    adf = acquisition.adf if adf_change is None else adf_change(acquisition.adf)
    series = acquisition.series
    common = dict(intensities=acquisition.line_intensities, xray_lines=LINES,
                  gaussian_sigma=SIGMA)
    result = series.cross_validate(adf, iterations=ITERATIONS, alphas=ALPHAS, **common,
                                   **robust)
    truth = np.stack([phantom.weight_fractions[e] for e in ("Ag", "Au")])
    rmse = {}
    for n in ITERATIONS:
        fractions = series.quantify_cross_section(series.reconstruct_sirt(iterations=n,
                                                                           **common))
        rmse[("SIRT", n)] = np.sqrt(np.mean((np.stack([f.data for f in fractions]) - truth) ** 2))
        for alpha in ALPHAS:
            fractions = series.quantify_cross_section(series.reconstruct_hebt(
                adf, alpha=alpha, iterations=n, **common, **robust))
            rmse[("HEBT", alpha, n)] = np.sqrt(np.mean((np.stack([f.data for f in fractions])
                                                        - truth) ** 2))
    best = result.best
    chosen = ((best["method"], best["iterations"]) if best["method"] == "SIRT"
              else (best["method"], best["alpha"], best["iterations"]))
    return result, rmse[chosen], min(rmse.values())


def _saturate(adf):
    out = adf.deepcopy()
    out.data = np.minimum(out.data, 0.6 * out.data.max())
    return out


def _pt_cap():
    phantom = paper_phantom()
    fractions = dict(phantom.weight_fractions)
    cap = np.zeros((97, 97))
    cap[88:97] = 1.0  # 13.5 nm of Pt with no listed line
    fractions["Pt"] = cap
    return Phantom(fractions, 1.5, phantom.regions)


# 13-23 s each on 2 cores (every setting of the grid against the paper phantom's
# truth): marked, still run by the README's command and in CI; -m "not slow" skips them.
@pytest.mark.slow
@pytest.mark.parametrize(
    "case, robust, expected",
    [
        ("clean", {}, "HEBT"),
        # Saturated pixels left in: HEBT's model is broken and SIRT is chosen ...
        ("saturated ADF", {"exclude_clipped": False}, "SIRT"),
        # ... left out (the default): the repaired HEBT wins again.
        ("saturated ADF", {}, "HEBT"),
        ("unlisted Pt cap", {}, "SIRT"),
    ],
)
def test_choice_is_close_to_the_oracle(calibration, case, robust, expected):
    phantom = _pt_cap() if case == "unlisted Pt cap" else paper_phantom()
    result, chosen, oracle = _case(calibration, phantom,
                                   _saturate if case == "saturated ADF" else None, **robust)
    # The issue's bound: within 10 % of the best weight-fraction RMSE in the grid
    # (measured 1.00-1.03, README).
    assert chosen <= 1.1 * oracle
    assert result.best["method"] == expected


@pytest.mark.slow
def test_auto_settings_are_recorded(calibration):
    acquisition = simulate_acquisition(paper_phantom(), LINES,
                                       solid_angle_sr=calibration.solid_angle_sr,
                                       adf_collection_efficiency=calibration.adf_collection_efficiency,
                                       energy_axis_kev=(0.0, 0.02, 200))
    series = acquisition.series
    common = dict(intensities=acquisition.line_intensities, xray_lines=LINES,
                  gaussian_sigma=0.8)
    sirt = series.reconstruct_sirt(iterations="auto", **common)
    record = sirt[0].metadata.Reconstruction.CrossValidation
    assert record.best_method == "SIRT" and sirt[0].metadata.Reconstruction.iterations in (
        20, 50, 100, 200, 500)
    assert len(record.table.score) == 2 * 5
    hebt = series.reconstruct_hebt(acquisition.adf, alpha="auto", iterations=200, **common)
    r = hebt[0].metadata.Reconstruction
    # Clean data: HEBT's model holds and HEBT wins (README: alpha 0.9 on this phantom),
    # with plain SIRT among the candidates and alpha 0 no longer one.
    assert r.AutomaticChoice.hebt_model_verdict == "consistent"
    assert r.algorithm == "HEBT" and r.AutomaticChoice.chosen.startswith("HEBT")
    assert r.alpha == r.CrossValidation.best_alpha and r.iterations == 200
    assert set(r.CrossValidation.table.method) == {"SIRT", "HEBT"}
    assert {a for a in r.CrossValidation.table.alpha if a == a} == {0.5, 0.7, 0.8, 0.9}
    small = series.cross_validate(acquisition.adf, iterations=(20, 50), alphas=(0.8,),
                                  slices=1, **common)
    assert small.slices == [0]  # the paper phantom is a single slice
    line_best = small.setting("Ag_La")
    assert set(line_best) == {"method", "alpha", "tv_weight", "iterations"}
    assert np.isnan(line_best["tv_weight"])  # no Poisson-TV scored here
    assert small.best["iterations"] in (20, 50)
    fig = small.plot()
    assert len(fig.axes) == 2


def test_errors(calibration):
    acquisition = simulate_acquisition(paper_phantom(), LINES, energy_axis_kev=(0.0, 0.02, 200))
    series = acquisition.series
    common = dict(intensities=acquisition.line_intensities, xray_lines=LINES)
    with pytest.raises(ValueError, match="HEBT needs the ADF"):
        series.cross_validate(None, **common)
    with pytest.raises(ValueError, match="holdout must be an integer from 2 to 15"):
        series.cross_validate(acquisition.adf, holdout=16, **common)
    with pytest.raises(ValueError, match="methods must be drawn from"):
        series.cross_validate(acquisition.adf, methods=("fbp",), **common)
    with pytest.raises(ValueError, match="iterations must be a positive integer or 'auto'"):
        series.reconstruct_sirt(iterations="best", **common)
    with pytest.raises(ValueError, match="alpha must be a number or 'auto'"):
        series.reconstruct_hebt(acquisition.adf, alpha="best", **common)
    with pytest.raises(ValueError, match="pass response_ratios None or 'physics' with it"):
        series.reconstruct_hebt(acquisition.adf, alpha="auto", response_ratios={"Ag_La": 1.0,
                                                                                "Au_Ma": 1.0},
                                **common)
    with pytest.raises(ValueError, match="response_ratios must be None or 'physics'"):
        series.cross_validate(acquisition.adf, response_ratios="fit", **common)
    with pytest.raises(ValueError, match="score must be"):
        series.cross_validate(acquisition.adf, score="chi2", **common)


def test_auto_on_a_lazy_series_reads_the_spectra_once():
    from helpers import count_block_reads, make_series

    from hyperspy_hebt import compute_together

    eager = make_series()
    series = make_series(lazy=True)
    reads = count_block_reads(series)
    rec = series.reconstruct_sirt(iterations="auto")
    assert rec[0]._lazy
    results = compute_together(rec)
    # One pass over the spectra serves the scores, the padding check and both results.
    assert len(reads) == series.data.npartitions
    reference = eager.reconstruct_sirt(iterations="auto")
    for r, e in zip(results, reference):
        assert r.metadata.Reconstruction.intensities.source == "integration"
        assert r.metadata.Reconstruction.iterations == e.metadata.Reconstruction.iterations
        np.testing.assert_allclose(r.data, e.data, rtol=0, atol=1e-5 * e.data.max())


def test_early_stopping_keeps_the_scores_and_the_choice(capsys):
    """At a few counts per pixel the held-out score is best after few iterations and
    rises after: the run stops there, the scores it did compute are the full run's,
    and the choice is the same."""
    from hyperspy_hebt.cross_validation import cross_validate_stacks
    from hyperspy_hebt.simulation import core_shell_phantom, project_volume

    tilts = np.linspace(-70, 70, 16)
    core, shell = core_shell_phantom(24, 3)
    rng = np.random.default_rng(1)
    expected = np.stack([project_volume(0.05 * (core + 0.3 * shell), tilts),
                         project_volume(0.05 * shell, tilts)])
    eds = rng.poisson(expected).astype(np.float32)
    common = dict(methods=("sirt",), iterations=(5, 10, 20, 50, 100, 200, 500), alphas=(),
                  holdout=4, sigma=None)
    full = cross_validate_stacks(eds, None, LINES, tilts, **common)
    early = cross_validate_stacks(eds, None, LINES, tilts, stop_early=True, **common)
    assert full.stopped_early == {}
    stop = early.stopped_early["SIRT"]
    assert stop < 500  # measured: stops after 20 (best 5) instead of running to 500
    scores = {(r["iterations"], r["xray_line"]): r["score"] for r in full.rows}
    assert len(early.rows) < len(full.rows)
    for row in early.rows:
        assert row["iterations"] <= stop
        assert row["score"] == pytest.approx(scores[(row["iterations"], row["xray_line"])],
                                             rel=1e-6)
    # One progress bar for the stage (issue 17), silent unless asked; a run stopped early
    # still ends it at its total (here 500 iterations of one setting).
    capsys.readouterr()
    cross_validate_stacks(eds, None, LINES, tilts, stop_early=True, **common)
    assert "cross-validation" not in capsys.readouterr().err
    cross_validate_stacks(eds, None, LINES, tilts, stop_early=True, show_progressbar=True,
                          **common)
    shown = capsys.readouterr().err
    assert "cross-validation" in shown and "500/500" in shown
    assert early.best["iterations"] == full.best["iterations"] < stop


def test_early_stopping_on_the_summed_score():
    """One setting for every line (HEBT, the automatic choice between methods) is
    chosen by the summed score, so a run may stop when that sum rises even while one
    line would still improve alone; the choice is the full run's."""
    from hyperspy_hebt.cross_validation import cross_validate_stacks
    from hyperspy_hebt.simulation import core_shell_phantom, project_volume

    tilts = np.linspace(-70, 70, 16)
    core, shell = core_shell_phantom(24, 3)
    rng = np.random.default_rng(1)
    # A bright line whose best count is 10 and a sparse one (0.04 counts per pixel)
    # whose best is 5: the sum is best at 5.
    expected = np.stack([project_volume(0.3 * (core + 0.3 * shell), tilts),
                         project_volume(0.01 * core, tilts)])
    eds = rng.poisson(expected).astype(np.float32)
    common = dict(methods=("sirt",), iterations=(5, 10, 20, 50, 100, 200, 500), alphas=(),
                  holdout=4, sigma=None, stop_early=True)
    full = cross_validate_stacks(eds, None, LINES, tilts, **{**common, "stop_early": False})
    each = cross_validate_stacks(eds, None, LINES, tilts, **common)
    summed = cross_validate_stacks(eds, None, LINES, tilts, stop_on="sum", **common)
    # Measured: each line's watch stops after 50 (the bright line's best, 10, then two
    # worse checkpoints), the sum's after 20 (best 5, worse at 10 and 20).
    assert summed.stopped_early["SIRT"] < each.stopped_early["SIRT"]
    assert summed.best["iterations"] == each.best["iterations"] == full.best["iterations"]
    with pytest.raises(ValueError, match="stop_on"):
        cross_validate_stacks(eds, None, LINES, tilts, stop_on="max", **common)
