"""The README's reconstruct command, defaults, on a series with the faults of real data.

Each assertion is a failure seen on a real Bruker series of a FIB lamella (issue 12):
the reader's axis names crashed the run, the file's 15-element list was reconstructed
instead of the user's five, and the automatic choice returned HEBT at alpha 0 with an
element at 0.0 wt% because a fitted response ratio was 0.
"""

import json

import numpy as np
import pytest

from hyperspy_hebt.cli import main
from hyperspy_hebt.simulation import simulate_lamella_series

LISTED = ["O", "Mg", "Si", "S", "Fe"]


@pytest.fixture(scope="module")
def lamella(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lamella")
    return folder, simulate_lamella_series(folder, n_x=32, n_slices=16,
                                           tilt_angles_deg=np.linspace(-60, 60, 12),
                                           energy_channels=1024, pixel_size_nm=10.0)


def test_simulator_carries_the_faults(lamella):
    import hyperspy.api as hs

    folder, series = lamella
    # About 14 counts per pixel, plus stray lines and the zero peak.
    assert 12 < series.mean_counts_per_pixel < 20
    spectrum = hs.load(series.spectrum_paths[0])
    assert [a.name for a in spectrum.axes_manager.navigation_axes] == ["width", "height"]
    assert len(spectrum.metadata.Sample.elements) == 15
    adf = np.stack([hs.load(path).data for path in series.adf_paths])
    assert (adf == 0).mean() > 0.01  # vacuum clipped at black
    assert (adf == adf.max()).sum() >= 1  # hot pixels at full scale
    assert np.ptp(series.drift_px, axis=0).max() > 9  # 10-20 px of drift with the jump
    assert set(series.elements) == {"O", "Mg", "Si", "S", "Fe", "Pt", "Ga"}


def test_defaults_give_an_honest_answer(lamella, tmp_path, capsys):
    folder, series = lamella
    out = tmp_path / "results"
    assert main(["reconstruct", str(folder / "tilt_*.hspy"), "--adf",
                 str(folder / "adf_tilt_*.hspy"), "--tilt-from", "filename", "--elements",
                 *LISTED, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["renamed_axes"] == {"width": "x", "height": "y"}
    assert sorted(summary["elements"]) == sorted(LISTED)
    assert len(summary["file_elements"]) == 15
    # The cap (Pt, Ga) and the stray Cu/Ti are seen and named, not silently used.
    candidates = " ".join(summary["line_survey"]["unlisted_candidates"])
    for line in ("Pt_Ma", "Cu_Ka", "Ti_Ka"):
        assert line in candidates, line
    assert summary["line_survey"]["missing"] == []
    # The unlisted cap breaks HEBT's model: the choice is SIRT, with the reason.
    choice = summary["automatic_choice"]
    assert choice["hebt_model_verdict"] == "violated"
    assert summary["algorithm"] == "SIRT" and choice["chosen"].startswith("SIRT")
    assert "violated" in choice["reason"]
    # No element at 0 or 100 % on average in the specimen.
    mean = summary["composition"]["inside"]["mean"]
    assert set(mean) == set(LISTED)
    assert all(0.02 < value < 0.8 for value in mean.values()), mean
    assert any("chose SIRT" in w for w in summary["warnings"])
    printed = capsys.readouterr().out
    assert "Chose SIRT" in printed


def test_fused_method_reports_the_adf_model_it_cannot_trust(lamella, tmp_path):
    """--method fused on the same series: the unlisted cap and the clipped ADF break the
    ADF model; the summary says so (verdict, R^2, warning) and the result is still the
    lines' counts, quantified with f_A; the maps are not filtered (Poisson counts)."""
    folder, _ = lamella
    out = tmp_path / "fused"
    assert main(["reconstruct", str(folder / "tilt_*.hspy"), "--adf",
                 str(folder / "adf_tilt_*.hspy"), "--tilt-from", "filename", "--elements",
                 *LISTED, "--method", "fused", "--tv-weight", "0.1", "--iterations", "40",
                 "--align", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algorithm"] == "Fused" and summary["iterations_used"] == 40
    assert summary["tv_weight_used"] == 0.1 and summary["gamma_used"] == 1.0
    assert summary["fused_model"]["verdict"] == "violated"
    assert summary["fused_model"]["r_squared"] < 0.85
    assert any("fused model's ADF fit looks violated" in w for w in summary["warnings"])
    mean = summary["composition"]["inside"]["mean"]
    assert set(mean) == set(LISTED)
    import hyperspy.api as hs

    volume = hs.load(str(next(out.glob("*reconstruction_of_Fe*.zspy"))))
    assert volume.metadata.Reconstruction.algorithm == "Fused"
    assert not volume.metadata.Reconstruction.as_dictionary().get("gaussian_sigma")
    with pytest.raises(SystemExit):
        main(["reconstruct", str(folder / "tilt_*.hspy"), "--tilt-from", "filename",
              "--elements", *LISTED, "--method", "fused", "--gamma", "steep",
              "--out", str(tmp_path / "bad")])
    from hyperspy_hebt.pipeline import reconstruct_files

    files = str(folder / "tilt_*.hspy")
    with pytest.raises(ValueError, match="gamma must be a number >= 1 or 'fit'"):
        reconstruct_files(files, tmp_path / "bad", elements=LISTED, method="fused",
                          gamma="steep")
