"""The automatic choice never hands back an element at 0 % because a fitted ratio is 0.

Before plain SIRT was a candidate, ``reconstruct_hebt(alpha="auto")`` on data whose ADF
does not see one element picked alpha 0, returned SIRT's maps scaled by the fitted
ratios (0 for that element) and quantified them with HEBT's factors: the element read
0.0 wt% everywhere.
"""

import logging

import numpy as np
import pytest

from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

LINES = ["Ag_La", "Au_Ma"]


@pytest.fixture(scope="module")
def blind_adf():
    """A clean acquisition whose ADF sees only the Au: the Ag ratio fits to 0."""
    particle = core_shell_particle(32, 4, pixel_size_nm=3.0)
    acquisition = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 200))
    adf = acquisition.adf.deepcopy()
    au = np.asarray(acquisition.line_intensities[1].data, dtype=np.float32)
    adf.data = 500.0 * au
    return acquisition, adf


def test_a_violated_model_makes_the_choice_sirt(blind_adf, caplog):
    acquisition, adf = blind_adf
    series = acquisition.series
    common = dict(intensities=acquisition.line_intensities, xray_lines=LINES,
                  gaussian_sigma=0.8)
    check = series.check_hebt_model(adf, **common)
    assert check["verdict"] == "violated" and check["response_ratios"]["Ag_La"] == 0
    with caplog.at_level(logging.WARNING, logger="hyperspy_hebt"):
        chosen = series.reconstruct_hebt(adf, alpha="auto", iterations=50, **common)
    assert "chose SIRT" in caplog.text
    record = chosen[0].metadata.Reconstruction
    assert record.algorithm == "SIRT" and record.iterations == 50
    choice = record.AutomaticChoice
    assert choice.chosen == "SIRT, 50 iterations"
    assert choice.hebt_model_verdict == "violated"
    assert "violated" in choice.reason and "Ag_La" in choice.reason
    # HEBT was not tried: the scores hold SIRT only (a run stopped early says so).
    assert set(record.CrossValidation.table.method) == {"SIRT"}
    assert set(record.CrossValidation.stopped_early_settings) <= {"SIRT"}
    # The maps are SIRT's, the same as asking for SIRT.
    sirt = series.reconstruct_sirt(iterations=50, **common)
    for a, b in zip(chosen, sirt):
        np.testing.assert_allclose(a.data, b.data, rtol=0, atol=1e-6 * b.data.max())
    # Quantified with f_A, and Ag is where the phantom has it, not 0 %.
    fractions = series.quantify_cross_section(chosen)
    assert fractions[0].metadata.Quantification.factor_name == "f_A"
    inside = sum(f.data for f in fractions) > 0
    assert fractions[0].data[inside].mean() > 0.2


def test_sirt_is_a_candidate_on_clean_data_too(blind_adf):
    acquisition, _ = blind_adf
    series = acquisition.series
    rec = series.reconstruct_hebt(acquisition.adf, alpha="auto", iterations=50,
                                  intensities=acquisition.line_intensities, xray_lines=LINES,
                                  gaussian_sigma=0.8)
    record = rec[0].metadata.Reconstruction
    assert record.AutomaticChoice.hebt_model_verdict == "consistent"
    assert record.AutomaticChoice.candidates.startswith("SIRT, HEBT alpha 0.5")
    assert set(record.CrossValidation.table.method) == {"SIRT", "HEBT"}
    # Whichever wins, the algorithm recorded is the one whose factors quantify it.
    assert record.algorithm == record.AutomaticChoice.chosen.split(",")[0]
    # The reason quotes the loser's best score summed over the lines, as the winner's is:
    # SIRT's rows carry alpha NaN, and NaN keys once left each line a "setting" of its own.
    table = record.CrossValidation.table
    rows = list(zip(table.method, table.iterations, table.alpha, table.score))
    summed: dict = {}
    for method, n, alpha, score in rows:
        key = (method, n, None if np.isnan(alpha) else alpha)
        summed[key] = summed.get(key, 0.0) + score
    best_sirt = min(v for k, v in summed.items() if k[0] == "SIRT")
    best_hebt = min(v for k, v in summed.items() if k[0] == "HEBT")
    loser = best_hebt if record.algorithm == "SIRT" else best_sirt
    assert f"best {'HEBT' if record.algorithm == 'SIRT' else 'SIRT'} {loser:.4g})" in \
        record.AutomaticChoice.reason
