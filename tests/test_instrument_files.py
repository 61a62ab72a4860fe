"""Real instrument files (Bruker .bcf, Velox .emd) as the readers really return them.

A tilt series is made of copies of one file named by angle: loading, axis names,
metadata and element lists are real, the "object" is not (every tilt is the same
image), so nothing here judges a reconstruction's quality.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import INSTRUMENT_FILES

from hyperspy_hebt import load_tilt_series
from hyperspy_hebt._reconstruction.layout import TiltSeriesLayout
from hyperspy_hebt.line_survey import survey_lines

FILES = INSTRUMENT_FILES
TILTS = (-40, -20, 0, 20, 40)

pytestmark = pytest.mark.skipif(not FILES.is_dir(),
                                reason="../shared/data/instrument_files is not beside the repo")


def copies(tmp_path, name, tilts=TILTS):
    folder = tmp_path / Path(name).stem
    folder.mkdir()
    suffix = Path(name).suffix
    for angle in tilts:
        shutil.copy(FILES / name, folder / f"tilt_{angle}{suffix}")
    return str(folder / f"*{suffix}")


@pytest.fixture(scope="module")
def bruker(tmp_path_factory):
    return copies(tmp_path_factory.mktemp("bruker"), "test_TEM.bcf")


def test_bruker_scan_axes_become_x_and_y(bruker):
    series, adf = load_tilt_series(bruker, tilt_from="filename")
    names = [a.name for a in series.axes_manager.navigation_axes]
    assert names == ["x", "y", "tilt"]
    # rosettasciio says width (fast) and height (slow): the mapping is recorded.
    assert series.original_metadata.tilt_series.renamed_axes.as_dictionary() == {
        "width": "x", "height": "y"}
    assert [a.name for a in adf.axes_manager.signal_axes] == ["x", "y"]
    assert adf.original_metadata.tilt_series.renamed_axes.width == "x"
    # The default rotation axis ("y") and alignment's (x, y, tilt) are found.
    layout = TiltSeriesLayout.from_signal(series)
    assert layout.slice_axis.name == "y" and layout.detector_axis.name == "x"
    np.testing.assert_allclose(series.tilt_angles, TILTS)
    # The calibration is the reader's, untouched.
    assert series.axes_manager["x"].units == "µm"
    assert series.axes_manager["x"].scale == pytest.approx(0.000771004754204027)


def test_bruker_series_reconstructs_and_aligns(bruker):
    from hyperspy_hebt.alignment import align_tilt_series

    series, adf = load_tilt_series(bruker, tilt_from="filename", elements=["O", "Ti"])
    small = series.rebin(scale=(4, 4, 1, 1))
    small_adf = adf.rebin(scale=(1, 4, 4))
    # This raised "alignment needs navigation axes (x, y, tilt)" on Bruker series.
    aligned, aligned_adf = align_tilt_series(small, small_adf, method="com")
    rec = aligned.reconstruct_sirt(iterations=5, padding_px=0)
    assert [r.metadata.Sample.xray_lines[0] for r in rec] == ["O_Ka", "Ti_Ka"]
    assert [a.name for a in rec[0].axes_manager.navigation_axes] == ["y"]
    assert [a.name for a in rec[0].axes_manager.signal_axes] == ["x", "z"]


def test_user_elements_replace_the_files_list(bruker):
    series, _ = load_tilt_series(bruker, tilt_from="filename", elements=["O", "Ti"])
    assert list(series.metadata.Sample.elements) == ["O", "Ti"]
    assert list(series.metadata.Sample.xray_lines) == ["O_Ka", "Ti_Ka"]
    assert series.original_metadata.tilt_series.file_elements == ["Cu", "O", "Pd", "Ti"]
    lines, _ = load_tilt_series(bruker, tilt_from="filename", xray_lines=["Ti_La"])
    assert list(lines.metadata.Sample.xray_lines) == ["Ti_La"]
    assert list(lines.metadata.Sample.elements) == ["Ti"]
    # Without a list the file's stays.
    untouched, _ = load_tilt_series(bruker, tilt_from="filename")
    assert list(untouched.metadata.Sample.elements) == ["Cu", "O", "Pd", "Ti"]
    with pytest.raises(ValueError, match="elements"):
        load_tilt_series(bruker, tilt_from="filename", elements=["Xx"])
    with pytest.raises(TypeError, match="elements must be a list"):
        load_tilt_series(bruker, tilt_from="filename", elements="Fe")


def test_survey_names_missing_and_unlisted_lines(bruker):
    series, _ = load_tilt_series(bruker, tilt_from="filename", elements=["O", "Ti", "Fe"])
    survey = survey_lines(series)
    # No Fe in this specimen; Cu (the grid) and Pd are in the file's list and spectrum.
    assert survey.missing == ["Fe_Ka"]
    candidates = [c for peak in survey.unlisted for c in peak["candidates"]]
    assert "Cu_Ka" in candidates and "Pd_La" in candidates
    messages = " ".join(survey.messages())
    assert "Fe_Ka has no significant counts" in messages
    assert "O_Ka" not in survey.missing and "Ti_Ka" not in survey.missing
    full, _ = load_tilt_series(bruker, tilt_from="filename")
    listed = {r["xray_line"] for r in survey_lines(full).listed}
    assert listed == {"Cu_Ka", "O_Ka", "Pd_La", "Ti_Ka"} and not survey_lines(full).missing
    # A sum spectrum computed by the caller (with the line maps, in one pass) is used as is.
    total = series.data.sum(axis=(0, 1, 2))
    given = survey_lines(series, sum_spectrum=np.asarray(total))
    assert given.missing == survey.missing and given.unlisted == survey.unlisted
    with pytest.raises(ValueError, match="sum_spectrum must hold one value per channel"):
        survey_lines(series, sum_spectrum=np.asarray(total)[:-1])


def test_velox_spectrum_image_loads(tmp_path):
    pattern = copies(tmp_path, "velox_SI_16x16.emd", tilts=(-30, 0, 30))
    series, adf = load_tilt_series(pattern, tilt_from="filename", lazy=False)
    # The file also holds four per-detector sum spectra: the map is the one chosen.
    assert series.axes_manager.navigation_shape == (16, 16, 3)
    assert [a.name for a in series.axes_manager.navigation_axes] == ["x", "y", "tilt"]
    assert adf.axes_manager.signal_shape == (16, 16)
    assert sorted(series.metadata.Sample.elements) == ["C", "Ca", "Cu", "O"]
    separate, _ = load_tilt_series(pattern, tilt_from="filename", lazy=False,
                                   detectors="separate")
    assert len(separate) == 4
    # The four Super-X detectors add up to the summed series, count for count.
    np.testing.assert_array_equal(sum(s.data.astype(np.int64) for s in separate),
                                  series.data.astype(np.int64))
    assert separate[2].original_metadata.tilt_series.detector_index == 2
    with pytest.raises(ValueError, match="detectors must be one of"):
        load_tilt_series(pattern, tilt_from="filename", detectors="first")


def test_velox_reduced_file_says_why_it_cannot_be_used(tmp_path):
    pattern = copies(tmp_path, "velox_SI_16x16_reduced.emd", tilts=(-30, 30))
    with pytest.raises(ValueError, match="0 EDS spectrum images.*reduced or pruned"):
        load_tilt_series(pattern, tilt_from="filename")


def test_command_line_on_a_bruker_series(bruker, tmp_path, capsys):
    """The README's reconstruct command on Bruker files, defaults apart from binning:
    it crashed on the readers' axis names and added the user's elements to the file's."""
    import json

    from hyperspy_hebt.cli import main

    out = tmp_path / "results"
    assert main(["reconstruct", bruker, "--tilt-from", "filename", "--elements", "O", "Ti",
                 "Fe", "--bin", "4", "--align", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["elements"] == ["Fe", "O", "Ti"]
    assert summary["file_elements"] == ["Cu", "O", "Pd", "Ti"]
    assert summary["renamed_axes"] == {"width": "x", "height": "y"}
    assert summary["line_survey"]["missing"] == ["Fe_Ka"]
    assert set(summary["composition"]["inside"]["mean"]) == {"Fe", "O", "Ti"}
    assert "automatic_choice" in summary
    printed = capsys.readouterr().out
    assert "Fe_Ka has no significant counts" in printed


def test_command_line_corrects_absorption_with_the_velox_files_detectors(tmp_path, capsys):
    """--absorption on real Velox files: the four Super-X detectors of the file's own list,
    the automatic choice made first (uncorrected) and rerun corrected, all in the summary."""
    import json

    from hyperspy_hebt.cli import main

    pattern = copies(tmp_path, "velox_SI_16x16.emd", tilts=(-40, -20, 0, 20, 40))
    out = tmp_path / "results"
    assert main(["reconstruct", pattern, "--tilt-from", "filename", "--elements", "O", "Ca",
                 "--absorption", "--density", "3.3", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    applied = summary["absorption"]
    assert applied["detectors"]["elevation_deg"] == [18.0] * 4
    assert applied["detectors"]["azimuth_deg"] == [45.0, 135.0, 225.0, 315.0]
    assert applied["density_g_cm3"] == 3.3 and applied["outer_iterations"] >= 1
    assert "uncorrected maps" in summary["absorption_choice"]
    assert summary["iterations_used"] > 0 and summary["automatic_choice"]["chosen"]
    printed = capsys.readouterr().out
    assert "Correcting absorption" in printed and "Absorption corrected in" in printed
    # Bad settings are the user's input: a message and exit code 2, no traceback.
    assert main(["reconstruct", pattern, "--tilt-from", "filename", "--elements", "O", "Ca",
                 "--density", "3.3", "--out", str(tmp_path / "other")]) == 2
    assert "--absorption-exact are for --absorption" in capsys.readouterr().err


def test_command_line_corrects_absorption_for_the_poisson_methods(tmp_path, capsys):
    """--absorption with --method tv (the weight chosen uncorrected, then rerun corrected)
    and --method fused (a given weight: corrected at once), on the real Velox files."""
    import json

    from hyperspy_hebt.cli import main

    pattern = copies(tmp_path, "velox_SI_16x16.emd", tilts=(-40, -20, 0, 20, 40))
    common = ["reconstruct", pattern, "--tilt-from", "filename", "--elements", "O", "Ca",
              "--absorption", "--density", "3.3", "--iterations", "60", "--quiet"]
    assert main(common + ["--method", "tv", "--out", str(tmp_path / "tv")]) == 0
    summary = json.loads((tmp_path / "tv" / "summary.json").read_text())
    assert summary["algorithm"] == "Joint Poisson-TV"
    assert summary["absorption"]["detectors"]["azimuth_deg"] == [45.0, 135.0, 225.0, 315.0]
    assert "chosen on the uncorrected maps" in summary["absorption_choice"]
    assert str(summary["tv_weight_used"]) in summary["absorption_choice"] or \
        f"{summary['tv_weight_used']:g}" in summary["absorption_choice"]
    assert main(common + ["--method", "fused", "--tv-weight", "0.1",
                          "--out", str(tmp_path / "fused")]) == 0
    summary = json.loads((tmp_path / "fused" / "summary.json").read_text())
    assert summary["algorithm"] == "Fused" and summary["absorption"]["outer_iterations"] >= 1
    assert "absorption_choice" not in summary
