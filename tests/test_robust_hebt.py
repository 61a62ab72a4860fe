"""Robust HEBT: each remedy restores HEBT when its failure is present and costs nothing
otherwise."""

import logging

import numpy as np
import pytest

from hyperspy_hebt.simulation import Phantom, paper_phantom, simulate_acquisition
from hyperspy_hebt.study import calibrate_to_paper

LINES = ["Ag_La", "Au_Ma"]
SIGMA = {"x": 0.8, "tilt": 0.8}


@pytest.fixture(scope="module")
def setup():
    calibration = calibrate_to_paper(seed=0)
    phantom = paper_phantom()

    def acquire(phantom):
        return simulate_acquisition(phantom, LINES, solid_angle_sr=calibration.solid_angle_sr,
                                    adf_collection_efficiency=calibration.adf_collection_efficiency,
                                    energy_axis_kev=(0.0, 0.02, 200))

    return phantom, acquire(phantom), acquire


def rmse(series, recs, phantom):
    fractions = series.quantify_cross_section(recs)
    truth = np.stack([phantom.weight_fractions[e] for e in ("Ag", "Au")])
    return float(np.sqrt(np.mean((np.stack([f.data for f in fractions]) - truth) ** 2)))


def run(acquisition, phantom, adf=None, **options):
    series = acquisition.series
    recs = series.reconstruct_hebt(acquisition.adf if adf is None else adf, alpha=0.7,
                                   iterations=200, intensities=acquisition.line_intensities,
                                   xray_lines=LINES, gaussian_sigma=SIGMA, **options)
    if options.get("unlisted_mass"):
        recs = recs[:-1]
    return rmse(series, recs, phantom), recs


def sirt_rmse(acquisition, phantom):
    series = acquisition.series
    return rmse(series, series.reconstruct_sirt(iterations=100,
                                                intensities=acquisition.line_intensities,
                                                xray_lines=LINES, gaussian_sigma=SIGMA),
                phantom)


def test_remedies_cost_nothing_on_clean_data(setup):
    phantom, clean, _ = setup
    plain, _ = run(clean, phantom, exclude_clipped=False)
    # Measured: 0.0614 for plain HEBT, 0.0614 (offset), 0.0612-0.0626 (extra volume),
    # 0.0613 (physics ratios).
    for options in ({}, {"adf_offset": True}, {"unlisted_mass": True}, {"ratio_floor": 0.1},
                    {"response_ratios": "physics"}):
        value, _ = run(clean, phantom, **options)
        assert value <= 1.03 * plain, options
    assert plain < sirt_rmse(clean, phantom)  # HEBT's advantage to be kept


def test_excluding_saturated_pixels_restores_hebt(setup, caplog):
    phantom, clean, _ = setup
    adf = clean.adf.deepcopy()
    adf.data = np.minimum(adf.data, 0.6 * adf.data.max())
    with caplog.at_level(logging.WARNING, logger="hyperspy_hebt"):
        broken, _ = run(clean, phantom, adf, exclude_clipped=False)
    assert "saturation" in caplog.text
    repaired, recs = run(clean, phantom, adf)
    clean_value, _ = run(clean, phantom)
    assert recs[0].metadata.Reconstruction.excluded_adf_fraction > 0.05
    # Measured RMSE: saturated 0.1616, excluded 0.0641, clean 0.0614, SIRT 0.0686.
    assert repaired < broken
    assert repaired <= 1.05 * clean_value
    assert repaired < sirt_rmse(clean, phantom)


def test_fitting_an_adf_offset_restores_hebt(setup):
    phantom, clean, _ = setup
    adf = clean.adf.deepcopy()
    dark = 0.2 * float(adf.data.max())
    adf.data = adf.data + dark
    broken, recs = run(clean, phantom, adf)
    assert recs[0].metadata.Reconstruction.Diagnostics.verdict != "consistent"
    assert any("dark offset" in p for p in recs[0].metadata.Reconstruction.Diagnostics.problems)
    repaired, recs = run(clean, phantom, adf, adf_offset=True)
    clean_value, _ = run(clean, phantom)
    # Measured: 0.1155 without the offset, 0.0638 with it (b fitted within 3 % of the dark).
    assert recs[0].metadata.Reconstruction.adf_offset == pytest.approx(dark, rel=0.05)
    assert repaired < 0.7 * broken
    assert repaired <= 1.05 * clean_value


@pytest.mark.slow
def test_physics_ratios_restore_hebt_under_soft_saturation(setup):
    """An ADF that compresses towards the top of its range (tanh, 24 % short at the
    brightest pixel) piles nothing up, so no pixel can be excluded and R^2 stays 0.99;
    but the per-line fit bends the ratios (Au's falls, Ag's rises) and HEBT loses to
    SIRT. The cross sections fix the ratios' pattern and only the scale is fitted."""
    phantom, clean, _ = setup
    adf = np.asarray(clean.adf.data, float)
    top = 0.8 * adf.max()
    soft = clean.adf._deepcopy_with_new_data((top * np.tanh(adf / top)).astype(np.float32))
    fitted, recs = run(clean, phantom, adf=soft)
    diagnostics = recs[0].metadata.Reconstruction.Diagnostics
    physics, _ = run(clean, phantom, adf=soft, response_ratios="physics")
    sirt = sirt_rmse(clean, phantom)
    # Measured RMSE: fitted ratios 0.088, physics ratios 0.0663, SIRT 0.0686 (clean HEBT
    # 0.0614); the fitted pattern is 1.8x off the cross sections' (1.01 on clean data).
    assert fitted > sirt > physics
    assert diagnostics.verdict == "doubtful" and diagnostics.physics_ratio_spread > 1.5
    assert any("depart from the cross sections" in p for p in diagnostics.problems)
    # Cross-validation fits each fold's ratios the same way.
    series = clean.series
    auto = series.reconstruct_hebt(soft, alpha="auto", iterations=200, response_ratios="physics",
                                   intensities=clean.line_intensities, xray_lines=LINES,
                                   gaussian_sigma=SIGMA)
    record = auto[0].metadata.Reconstruction
    if record.algorithm == "HEBT":
        # The folds fit the dose constant of the physics ratios (not every ratio).
        assert record.response_ratio_source.startswith("cross sections")
    else:
        assert record.AutomaticChoice.chosen.startswith("SIRT")
    # Measured: SIRT is chosen at 200 iterations (held-out EDS maps are predicted no
    # better with the bent ADF term; before SIRT was a candidate, alpha 0 won with RMSE
    # 0.0687): within the 10 % of the best setting tried here (0.0663).
    assert rmse(series, auto, phantom) < 1.1 * physics


def test_unlisted_mass_volume_helps_but_sirt_stays_better(setup):
    """A limit worth knowing: the ADF-only volume takes up a Pt cap's signal in part
    (RMSE 0.19 -> 0.11), but the ADF alone cannot tell the cap from the particle, so
    SIRT (0.069) stays better; cross-validation then chooses SIRT."""
    phantom, _, acquire = setup
    fractions = dict(phantom.weight_fractions)
    cap = np.zeros((97, 97))
    cap[88:97] = 1.0
    fractions["Pt"] = cap
    capped = Phantom(fractions, 1.5, phantom.regions)
    acquisition = acquire(capped)
    without, _ = run(acquisition, capped)
    with_volume, recs = run(acquisition, capped, unlisted_mass=True)
    assert with_volume < 0.7 * without
    assert with_volume > sirt_rmse(acquisition, capped)
    series = acquisition.series
    full = series.reconstruct_hebt(acquisition.adf, iterations=5, unlisted_mass=True,
                                   intensities=acquisition.line_intensities, xray_lines=LINES)
    assert full[-1].metadata.Reconstruction.signal == "unlisted ADF mass"
    assert full[-1].metadata.General.title.endswith("(ADF only)")
    with pytest.raises(ValueError, match="volume of unlisted mass"):
        series.quantify_cross_section(full)


def test_option_errors(setup):
    _, clean, _ = setup
    series = clean.series
    common = dict(intensities=clean.line_intensities, xray_lines=LINES, iterations=2)
    with pytest.raises(ValueError, match="ratio_floor must lie in"):
        series.reconstruct_hebt(clean.adf, ratio_floor=2.0, **common)
    with pytest.raises(TypeError, match="'physics' \\(the cross sections' pattern"):
        series.reconstruct_hebt(clean.adf, response_ratios="fit", **common)
    no_energy = series.deepcopy()
    del no_energy.metadata.Acquisition_instrument.TEM.beam_energy
    with pytest.raises(ValueError, match="'physics' needs the cross sections: the beam"):
        no_energy.reconstruct_hebt(clean.adf, response_ratios="physics", **common)
    # Without the energy the fit still runs; the diagnostics say the check did not.
    rec = no_energy.reconstruct_hebt(clean.adf, **common)
    assert rec[0].metadata.Reconstruction.Diagnostics.physics_check.startswith("not run")
    with pytest.raises(ValueError, match="do not pass response_ratios with it"):
        series.reconstruct_hebt(clean.adf, adf_offset=True,
                                response_ratios={"Ag_La": 1.0, "Au_Ma": 1.0}, **common)
