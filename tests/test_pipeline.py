"""python -m hyperspy_hebt reconstruct: files on disk -> volumes, figures, summary."""

import json

import hyperspy.api as hs
import numpy as np
import pytest

from hyperspy_hebt.cli import main
from hyperspy_hebt.io import load_tilt_series
from hyperspy_hebt.pipeline import reconstruct_files
from hyperspy_hebt.simulation import (
    core_shell_particle,
    simulate_acquisition,
    write_acquisition_files,
)
from hyperspy_hebt.tomography import backends

TILTS = np.linspace(-75, 75, 31)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    rng = np.random.default_rng(2)
    drift = np.cumsum(rng.normal(0, 0.7, (31, 2)), axis=0)
    particle = core_shell_particle(32, 32, pixel_size_nm=3.0, core_radius=0.2,
                                   shell_radius=0.35)
    acquisition = simulate_acquisition(particle, ["Ag_La", "Au_Ma"],
                                       energy_axis_kev=(0.0, 0.02, 200), drift_px=drift,
                                       adf_offset_px=(1.0, -2.0))
    path = tmp_path_factory.mktemp("raw")
    write_acquisition_files(acquisition, path)
    return path


@pytest.fixture
def loaded(monkeypatch):
    """The blocks of spectra the run reads, filled in when it loads the series."""
    from helpers import count_block_reads

    from hyperspy_hebt import pipeline

    record = {}

    def counting_loader(*args, **kwargs):
        series, adf = load_tilt_series(*args, **kwargs)
        record["reads"], record["blocks"] = count_block_reads(series), series.data.npartitions
        return series, adf

    monkeypatch.setattr(pipeline, "load_tilt_series", counting_loader)
    return record


@pytest.mark.slow
def test_command_line_writes_everything(folder, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["reconstruct", str(folder / "tilt_*.hspy"), "--adf",
                 str(folder / "adf_tilt_*.hspy"), "--tilt-from", "filename", "--elements",
                 "Ag", "Au", "--method", "hebt", "--alpha", "0.8", "--iterations", "60",
                 "--bin", "2",
                 "--align", "--rotation", "0", "--axis-shift", "auto", "--register",
                 "--normalise", "--fit-lines", "--backend", "auto", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["xray_lines"] == ["Ag_La", "Au_Ma"]
    assert summary["line_fit"]["verdict"] == "consistent"
    assert summary["bin_factor"] == 2 and summary["method"] == "hebt"
    # Binned 2 x 2, the (1, -2) px ADF offset is (0.5, -1): registration undoes it.
    np.testing.assert_allclose(summary["adf_registration_px"], [-0.5, 1.0], atol=0.25)
    assert summary["response_ratio_r_squared"] > 0.9
    assert len(summary["alignment"]["shifts_px"]) == 31
    assert summary["alignment"]["rotation_deg"] == 0.0
    # Centre-of-mass alignment already centres the tilt axis; the search agrees.
    assert abs(summary["alignment"]["axis_shift_px"]) < 0.25
    # Aligned: the shifted-in pixels are left out; an isolated particle needs no padding.
    assert summary["padding_px"] == 0 and 0 < summary["invalid_pixel_fraction"] < 0.2
    assert summary["backend"] == ("cupy" if backends.cupy_status()[0] else "cpu")
    composition = summary["mean_weight_fraction_inside"]
    assert composition["Ag"] + composition["Au"] == pytest.approx(1.0)
    for name in ("orthoslices.png", "render_3d.png", "Au_weight_fraction_HEBT.zspy",
                 "Au_weight_fraction_HEBT.tif", "HEBT_reconstruction_of_Ag_La.zspy"):
        assert (out / name).exists(), name
    volume = hs.load(out / "Au_weight_fraction_HEBT.zspy")
    assert volume.data.shape == (16, 16, 16) and volume.axes_manager["x"].scale == 6.0
    # The fractions are computed in the reconstructions' memory once those are saved:
    # the saved reconstructions are still the reconstructions, and quantify to the
    # saved fractions.
    recs = [hs.load(out / f"HEBT_reconstruction_of_{line}.zspy") for line in ("Ag_La", "Au_Ma")]
    series, _ = load_tilt_series(str(folder / "tilt_*.hspy"), tilt_from="filename",
                                 elements=["Ag", "Au"])
    again = series.quantify_cross_section(recs)
    assert recs[1].data.max() > 1.5  # reconstructed counts, not fractions in [0, 1]
    np.testing.assert_allclose(again[1].data, volume.data, rtol=0, atol=1e-6)
    printed = capsys.readouterr().out
    assert "Mean weight fractions inside the particle" in printed
    # One line per stage with its time; no progress-bar lines in a log.
    assert all(line.startswith("[") for line in printed.splitlines())
    assert "Completed" not in printed
    assert summary["composition"]["inside"]["voxels"] == summary["particle_voxels"] > 0
    assert summary["line_survey"]["missing"] == []
    assert (out / "composition.png").exists()
    # tomviz files: one channel per line and per element, the same numbers as the volumes.
    import h5py

    # Channels are named by element, the reconstructions' too (one line per element).
    for name, channels, saved in (("reconstructions.emd", ["Ag", "Au"], recs[1]),
                                  ("weight_fractions.emd", ["Ag", "Au"], volume)):
        with h5py.File(out / name, "r") as f:
            group = f["data/tomography"]
            assert list(group["tomviz_scalars"]) == channels
            # tomviz's layout is (x, y, z); the signals' arrays are (y, z, x).
            np.testing.assert_array_equal(group["tomviz_scalars"][channels[1]][()],
                                          np.transpose(saved.data, (2, 0, 1)))
        assert str(out / name) in summary["outputs"]


@pytest.mark.slow
def test_sirt_without_alignment_and_errors(folder, tmp_path):
    summary = reconstruct_files(str(folder / "tilt_*.hspy"), tmp_path, xray_lines=["Au_Ma",
                                                                                  "Ag_La"],
                                method="sirt", iterations=20, tilt_from="filename",
                                progress=lambda line: None, formats=["tif"])
    assert "response_ratios" not in summary and "alignment" not in summary
    # Only the formats asked for (each costs the volumes' size on disk again).
    volumes = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".tif", ".zspy",
                                                                        ".emd"))
    assert volumes == ["Ag_weight_fraction_SIRT.tif", "Au_weight_fraction_SIRT.tif",
                       "SIRT_reconstruction_of_Ag_La.tif", "SIRT_reconstruction_of_Au_Ma.tif"]
    for formats in ([], ["tif", "tif"], ["png"], "hdf5"):
        with pytest.raises(ValueError, match="formats must name some of"):
            reconstruct_files(str(folder / "tilt_*.hspy"), tmp_path / "refused",
                              elements=["Ag"], formats=formats)
    with pytest.raises(ValueError, match="need the ADF images"):
        reconstruct_files(str(folder / "tilt_*.hspy"), tmp_path, elements=["Ag"],
                          method="hebt", tilt_from="filename", progress=lambda line: None)
    with pytest.raises(ValueError, match="Give elements or xray_lines"):
        reconstruct_files(str(folder / "tilt_*.hspy"), tmp_path, tilt_from="filename")
    with pytest.raises(ValueError, match="method must be"):
        reconstruct_files(str(folder / "tilt_*.hspy"), tmp_path, elements=["Ag"],
                          method="fbp")
    with pytest.raises(ValueError, match="bin_factor"):
        reconstruct_files(str(folder / "tilt_*.hspy"), tmp_path, elements=["Ag"],
                          bin_factor=0)


def test_defaults_choose_and_say_why(folder, tmp_path, loaded):
    """The CLI's defaults (method, alpha and iterations "auto") on the HEBT-friendly
    simulation, with the ADF files: the choice, its reason and the verdict are kept;
    the spectra are read once (line survey, line maps and every reconstruction)."""
    summary = reconstruct_files(str(folder / "tilt_*.hspy"), tmp_path,
                                adf_paths=str(folder / "adf_tilt_*.hspy"),
                                elements=["Ag", "Au"], bin_factor=2, tilt_from="filename",
                                regions=["Au dominates", "not Au dominates"],
                                progress=lambda line: None)
    choice = summary["automatic_choice"]
    assert choice["candidates"].startswith("SIRT, HEBT alpha")
    assert choice["hebt_model_verdict"] in ("consistent", "doubtful", "violated")
    assert summary["algorithm"] in ("SIRT", "HEBT") and choice["reason"]
    table = summary["composition"]
    assert set(table) == {"inside", "Au dominates", "not Au dominates"}
    assert (table["Au dominates"]["voxels"] + table["not Au dominates"]["voxels"]
            == table["inside"]["voxels"])
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["automatic_choice"]["chosen"] == choice["chosen"]
    assert len(loaded["reads"]) == loaded["blocks"]


def test_command_line_errors_are_messages(folder, tmp_path, capsys):
    assert main(["reconstruct", str(tmp_path / "none_*.bcf"), "--elements", "Fe",
                 "--out", str(tmp_path / "o")]) == 2
    assert "error: paths: no file matches" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reconstruct", str(folder / "tilt_*.hspy"), "--padding", "abc"])
    assert "argument --padding: expected an integer or 'auto', got 'abc'" in \
        capsys.readouterr().err


def test_uncertainty_through_the_files(folder, tmp_path, loaded):
    """--uncertainty: the maps' variance made in the same pass over the spectra, saved with
    every volume, tabulated (HEBT's with its lines' covariance); refused with fitted lines."""
    out = tmp_path / "results"
    assert main(["reconstruct", str(folder / "tilt_*.hspy"), "--tilt-from", "filename",
                 "--elements", "Ag", "Au", "--method", "sirt", "--iterations", "10",
                 "--bin", "2", "--normalise", "--uncertainty", "3", "--quiet",
                 "--out", str(out)]) == 0
    assert len(loaded["reads"]) == loaded["blocks"]  # each block of spectra read once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["uncertainty"]["replicates"] == 3
    inside = summary["composition"]["inside"]
    assert all(0 < value < 0.5 for value in inside["voxel_uncertainty"].values())
    for name in ("Au_weight_fraction_SIRT.zspy", "SIRT_reconstruction_of_Au_Ma.zspy"):
        volume = hs.load(out / name)
        variance = volume.metadata.Signal.Noise_properties.variance
        assert variance.data.shape == volume.data.shape
        assert np.nanmax(variance.data) > 0
    # The command's own 1-FWHM integration records each line's window share (through the
    # per-tilt normalisation), and the quantification divided by it.
    share = volume.metadata.Reconstruction.intensities.window_share
    assert 0.6 < share < 0.85
    fractions = hs.load(out / "Au_weight_fraction_SIRT.zspy").metadata.Quantification
    assert fractions.window_share == share
    assert fractions.window_share_source == "measured for the integration window"
    # HEBT: its lines repeated with the ADF, their covariance saved with the first line.
    summary = reconstruct_files(str(folder / "tilt_*.hspy"), tmp_path / "hebt",
                                adf_paths=str(folder / "adf_tilt_*.hspy"),
                                elements=["Ag", "Au"], method="hebt", alpha=0.7,
                                iterations=10, bin_factor=2, tilt_from="filename",
                                uncertainty=3, progress=lambda line: None)
    assert summary["algorithm"] == "HEBT" and summary["uncertainty"]["replicates"] == 3
    assert all(0 < value < 0.5 for value in
               summary["composition"]["inside"]["voxel_uncertainty"].values())
    first = hs.load(tmp_path / "hebt" / "HEBT_reconstruction_of_Ag_La.zspy")
    covariance = first.metadata.Signal.Noise_properties.Covariance.Au_Ma
    assert covariance.data.shape == first.data.shape
    with pytest.raises(ValueError, match="fitted lines"):
        reconstruct_files(str(folder / "tilt_*.hspy"), tmp_path / "fit", elements=["Ag", "Au"],
                          method="sirt", fit_lines=True, uncertainty=3,
                          tilt_from="filename")
    with pytest.raises(ValueError, match="uncertainty must be 0"):
        reconstruct_files(str(folder / "tilt_*.hspy"), tmp_path / "one", elements=["Ag"],
                          uncertainty=1, tilt_from="filename")


def test_adf_offset_through_the_files(folder, tmp_path):
    """--adf-offset: a dark level written into the ADF files is fitted (HEBT's ratios, the
    fused model's ADF model), recorded in the summary and taken off; refused with SIRT."""
    dark_folder = tmp_path / "dark"
    dark_folder.mkdir()
    level = None
    for path in sorted(folder.glob("adf_tilt_*.hspy")):
        image = hs.load(path)
        level = 0.3 * float(image.data.mean()) if level is None else level
        image.data = image.data + level
        image.save(dark_folder / path.name)
    common = dict(adf_paths=str(dark_folder / "adf_tilt_*.hspy"), elements=["Ag", "Au"],
                  bin_factor=2, tilt_from="filename", progress=lambda line: None,
                  adf_offset=True)
    files = str(folder / "tilt_*.hspy")
    found = {}
    for adf_folder in (folder, dark_folder):
        paths = dict(common, adf_paths=str(adf_folder / "adf_tilt_*.hspy"))
        found[adf_folder] = [
            reconstruct_files(files, tmp_path / f"fused_{adf_folder.name}", method="fused",
                              tv_weight=0.1, iterations=40, **paths)["adf_offset"],
            reconstruct_files(files, tmp_path / f"hebt_{adf_folder.name}", method="hebt",
                              alpha=0.7, iterations=20, **paths)["adf_offset"]]
    # The level, summed over the 2 x 2 binned pixels, on top of what the clean ADF's fit
    # finds (24597 fused, -17006 HEBT: the simulated ADF is not exactly linear). Exactly so:
    # the fits regress the ADF on the EDS maps or volumes, which a constant does not move.
    for clean, dark in zip(found[folder], found[dark_folder]):
        assert dark - clean == pytest.approx(4 * level, rel=1e-6), found
    with pytest.raises(ValueError, match="method 'sirt' does not use the ADF"):
        reconstruct_files(files, tmp_path / "sirt", method="sirt", **common)
    with pytest.raises(TypeError, match="adf_offset must be True or False"):
        reconstruct_files(files, tmp_path / "bad", **dict(common, adf_offset="yes"))


def test_poisson_tv_through_the_files(folder, tmp_path):
    """--method tv: joint Poisson + TV of the counts from the EDS alone (no ADF files
    given), unfiltered, its weight in the summary; refused with adf_offset."""
    out = tmp_path / "tv"
    assert main(["reconstruct", str(folder / "tilt_*.hspy"), "--tilt-from", "filename",
                 "--elements", "Ag", "Au", "--method", "tv", "--tv-weight", "0.1",
                 "--iterations", "40", "--bin", "2", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algorithm"] == "Joint Poisson-TV" and summary["tv_weight_used"] == 0.1
    assert summary["iterations_used"] == 40
    inside = summary["composition"]["inside"]["mean"]
    assert inside["Ag"] + inside["Au"] == pytest.approx(1.0)
    volume = hs.load(out / "Joint_Poisson-TV_reconstruction_of_Au_Ma.zspy")
    assert volume.metadata.Reconstruction.gaussian_sigma.as_dictionary() == {}  # no filter
    files = str(folder / "tilt_*.hspy")
    with pytest.raises(ValueError, match="method 'tv' does not use the ADF"):
        reconstruct_files(files, tmp_path / "off", elements=["Ag"], method="tv",
                          adf_offset=True, tilt_from="filename")
