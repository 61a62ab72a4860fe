"""The phantom-study machinery on a coarse sweep (the full sweep's results are in the README)."""

import csv

import pytest

from hyperspy_hebt.study import (
    COLUMNS,
    PAPER_R_SQUARED,
    PAPER_RATIOS,
    calibrate_to_paper,
    run_paper_study,
)


def test_calibration_reproduces_the_papers_data_statistics():
    calibration = calibrate_to_paper(seed=0)
    assert calibration.r_squared_unfiltered == pytest.approx(PAPER_R_SQUARED, abs=0.002)
    assert 0 < calibration.adf_collection_efficiency <= 1
    assert 1e-3 < calibration.solid_angle_sr < 1.0


def test_coarse_study_writes_csv_figures_and_claims(tmp_path):
    lines = []
    result = run_paper_study(tmp_path, sirt_iterations=(5, 50, 300), alphas=(0.0, 0.7, 0.8),
                             hebt_iterations=(200,), progress=lines.append)
    with open(tmp_path / "study.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == 2 * 3 + 2 * 3  # (SIRT n + HEBT alpha) x elements
    for name in ("fig4_sirt_x.png", "fig6_sirt_weight_fraction.png", "fig8_hebt_x.png",
                 "fig13_hebt_weight_fraction.png", "claims.txt"):
        assert (tmp_path / name).stat().st_size > 0
    # The ratio calibrated on the unfiltered maps, fitted again on the filtered ones.
    assert result.response_ratios["Ag_La"] == pytest.approx(PAPER_RATIOS["Ag_La"], rel=0.03)
    assert any("quantified HEBT (alpha 0.8, n 200)" in claim for claim in result.claims)
    # The paper's claims that hold at this coarse sweep (measured: all of them). Ag's
    # SIRT semi-convergence is left out: its SSIM at n=50 and n=300 agree to three
    # decimals here (0.959), so the claim turns on rounding, not on the physics.
    held = {name: ok for name, (ok, detail) in result.claims.items() if detail}
    assert len(held) == len(result.claims) == 7
    fragile = "Ag: EDS-SIRT SSIM peaks inside the sweep (semi-convergence)"
    assert all(ok for name, ok in held.items() if name != fragile), result.claims
    assert "Calibrated to the paper's data" in lines[0]
