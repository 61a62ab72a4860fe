"""HEBT's model check: every failure mode triggers its finding; clean data pass."""

import logging

import numpy as np
import pytest

from hyperspy_hebt.diagnostics import check_linear_adf, clipped_fraction
from hyperspy_hebt.simulation import Phantom, core_shell_particle, simulate_acquisition

LINES = ["Ag_La", "Au_Ma"]


@pytest.fixture(scope="module")
def clean():
    particle = core_shell_particle(32, 4, pixel_size_nm=3.0)
    return simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 200))


def _check(acquisition, adf=None, **kwargs):
    return acquisition.series.check_hebt_model(
        acquisition.adf if adf is None else adf, intensities=acquisition.line_intensities,
        xray_lines=LINES, gaussian_sigma=0.8, **kwargs)


def test_clean_data_are_consistent_and_reconstruct_silently(clean, caplog):
    report = _check(clean)
    assert report["verdict"] == "consistent" and report["problems"] == []
    assert report["r_squared"] > 0.99
    assert report["residual"].data.shape == clean.adf.data.shape
    assert [a.name for a in report["residual"].axes_manager.navigation_axes] == ["x", "y",
                                                                               "tilt"]
    assert report["residual_per_tilt"].data.shape == (31,)
    with caplog.at_level(logging.WARNING, logger="hyperspy_hebt"):
        rec = clean.series.reconstruct_hebt(clean.adf, iterations=3,
                                            intensities=clean.line_intensities,
                                            xray_lines=LINES, gaussian_sigma=0.8)
    assert rec[0].metadata.Reconstruction.Diagnostics.verdict == "consistent"
    assert not caplog.records


def test_saturated_adf_is_flagged(clean, caplog):
    adf = clean.adf.deepcopy()
    adf.data = np.minimum(adf.data, 0.7 * adf.data.max())  # detector saturates at 70 %
    report = _check(clean, adf)
    assert report["verdict"] == "violated"
    assert report["saturated_adf_fraction"] > 0.01
    assert any("saturation" in p for p in report["problems"])
    with caplog.at_level(logging.WARNING, logger="hyperspy_hebt"):
        rec = clean.series.reconstruct_hebt(adf, iterations=3, exclude_clipped=False,
                                            intensities=clean.line_intensities,
                                            xray_lines=LINES)
    assert rec[0].metadata.Reconstruction.Diagnostics.verdict == "violated"
    assert "linear-ADF model looks violated" in caplog.text
    # By default the saturated pixels are left out, which the diagnostics say.
    rec = clean.series.reconstruct_hebt(adf, iterations=3, intensities=clean.line_intensities,
                                        xray_lines=LINES)
    record = rec[0].metadata.Reconstruction
    assert record.Diagnostics.verdict == "consistent"
    assert record.excluded_adf_fraction == pytest.approx(report["saturated_adf_fraction"])
    assert any("excluded" in p for p in record.Diagnostics.problems)


def test_unlisted_layer_is_flagged():
    # A 12 nm Pt cap (FIB protection) scatters into the ADF but has no listed line.
    # (A 9 nm carbon film changes R^2 by less than 0.003: too light to matter.)
    particle = core_shell_particle(32, 4, pixel_size_nm=3.0, shell_radius=0.35)
    fractions = dict(particle.weight_fractions)
    cap = np.zeros((4, 32, 32))
    cap[:, 28:32, :] = 1.0
    fractions["Pt"] = cap
    acquisition = simulate_acquisition(Phantom(fractions, 3.0, particle.regions), LINES,
                                       energy_axis_kev=(0.0, 0.02, 200))
    report = _check(acquisition)
    assert report["verdict"] == "violated"
    assert report["r_squared"] < 0.85  # measured 0.69
    assert any("changes steadily" in p for p in report["problems"])


def test_unlisted_element_in_the_core_is_not_seen():
    """A limit worth knowing: Pt that sits only where Au does is absorbed by the Au
    ratio (R^2 stays 0.996); the ratios are distorted (8x apart instead of 1.1x)."""
    particle = core_shell_particle(32, 4, pixel_size_nm=3.0,
                                   core_composition={"Pt": 0.6, "Au": 0.3, "Ag": 0.1})
    acquisition = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 200))
    report = _check(acquisition)
    assert report["r_squared"] > 0.99
    ratios = report["response_ratios"]
    assert ratios["Au_Ma"] / ratios["Ag_La"] > 5


def test_black_clipped_adf_is_doubtful(clean):
    adf = clean.adf.deepcopy()
    adf.data = np.maximum(adf.data, 0.2 * adf.data.max())  # a raised, clipped floor
    report = _check(clean, adf)
    assert report["verdict"] != "consistent"
    assert any("floor" in p for p in report["problems"])


def test_small_ratio_and_tilt_trend_on_arrays():
    rng = np.random.default_rng(0)
    eds = rng.uniform(1, 2, (3, 20, 8, 10))  # (lines, tilts, y, x)
    ratios = np.array([10.0, 0.5, 12.0])
    adf = np.tensordot(ratios, eds, axes=1)
    check = check_linear_adf(eds, adf, ratios, 0.999, names=["A", "B", "C"])
    assert check.small_ratios == [1] and check.verdict == "violated"
    assert "20x below the median" in check.problems[0]
    # Stray counts that grow with tilt: the residual trends across the series.
    drift = adf + np.linspace(0, 8, 20)[:, None, None] ** 2
    check = check_linear_adf(eds, drift, np.array([10.0, 11.0, 12.0]), 0.97)
    assert any("changes steadily" in p for p in check.problems)


def test_clipped_fraction_textbook():
    rng = np.random.default_rng(1)
    natural = rng.normal(100, 10, 100000)
    assert clipped_fraction(natural, "top") == 0.0
    saturated = np.minimum(natural, 110)  # 16 % above 110 pile up at 110
    assert clipped_fraction(saturated, "top") == pytest.approx(0.159, abs=0.01)
    with pytest.raises(ValueError, match="end must be"):
        clipped_fraction(natural, "middle")


def test_saturation_binned_away_is_still_seen(clean):
    """Binning 2 x 2 averages saturated pixels with their neighbours: no pile-up is
    left for the check to find, but the ADF as recorded (carried in the metadata)
    still says it saturated."""
    from hyperspy_hebt.diagnostics import AS_RECORDED_KEY, adf_as_recorded

    adf = clean.adf.deepcopy()
    adf.data = np.minimum(adf.data, 0.95 * adf.data.max())
    recorded = adf_as_recorded(adf.data)
    assert recorded["saturated_fraction"] > 0.1  # measured 0.118; 0 once binned 2 x 2
    series = clean.series.rebin(scale=(2, 2, 1, 1))
    binned = adf.rebin(scale=(1, 2, 2))
    lines = [np.asarray(m).reshape(31, 2, 2, 16, 2).sum(axis=(2, 4))
             for m in clean.line_intensities]
    common = dict(intensities=lines, xray_lines=LINES)
    blind = series.check_hebt_model(binned, **common)
    assert not any("saturated" in p for p in blind["problems"])
    binned.metadata.set_item(AS_RECORDED_KEY, recorded)
    seen = series.check_hebt_model(binned, **common)
    assert seen["verdict"] == "violated"
    assert any("as recorded were saturated" in p for p in seen["problems"])


def test_hot_pixels_are_left_out(clean):
    """Three pixels stuck at full scale bend the ratio fit; they are found (and only
    they: the clean ADF has none) and left out, giving the clean ratios back."""
    from hyperspy_hebt.diagnostics import hot_pixel_mask

    stack = np.moveaxis(np.asarray(clean.adf.data, dtype=float), 1, 0)  # (slices, tilts, x)
    assert not hot_pixel_mask(stack).any()
    adf = clean.adf.deepcopy()
    full_scale = 10 * float(adf.data.max())  # the detector's full scale, far above the data
    for tilt, y, x in ((3, 1, 5), (15, 2, 20), (27, 0, 28)):
        adf.data[tilt, y, x] = full_scale
    stuck = np.moveaxis(np.asarray(adf.data, dtype=float), 1, 0)
    found = hot_pixel_mask(stuck)
    assert found.sum() == 3 and found[1, 3, 5] and found[2, 15, 20] and found[0, 27, 28]
    import dask.array as da

    assert np.array_equal(hot_pixel_mask(da.from_array(stuck, chunks=(2, 31, 32))).compute(),
                          found)
    common = dict(iterations=3, intensities=clean.line_intensities, xray_lines=LINES)
    reference = clean.series.reconstruct_hebt(clean.adf, **common)[0].metadata.Reconstruction
    kept = clean.series.reconstruct_hebt(adf, exclude_clipped=False, **common)
    left_out = clean.series.reconstruct_hebt(adf, **common)[0].metadata.Reconstruction
    assert left_out.excluded_adf_fraction == pytest.approx(3 / adf.data.size)
    for line in LINES:
        clean_ratio = reference.response_ratios[line]
        # Measured: left out, the ratios move by under 3e-5 (the fit's rounding and
        # the three pixels' own share); kept, by 1.9 % (Ag), and R^2 falls to 0.64.
        assert left_out.response_ratios[line] == pytest.approx(clean_ratio, rel=1e-3)
    bent = kept[0].metadata.Reconstruction.response_ratios
    assert max(abs(bent[line] / reference.response_ratios[line] - 1) for line in LINES) > 0.01
