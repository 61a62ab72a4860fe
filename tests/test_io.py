"""load_tilt_series: real .hspy/.zspy files, Bruker/Velox-shaped readers, angles, errors."""

from pathlib import Path

import hyperspy.api as hs
import numpy as np
import pytest
from helpers import TILTS, make_series

from hyperspy_hebt import LazyTomographicEDSSpectrum, TomographicEDSSpectrum, load_tilt_series
from hyperspy_hebt.io import tilt_angle_from_filename


@pytest.mark.parametrize(
    "name, angle",
    [("-35.bcf", -35.0), ("+12.5deg.emd", 12.5), ("tilt_+10.emd", 10.0),
     ("series2_tilt-35.5.bcf", -35.5), ("tilt_m20.hspy", -20.0), ("Tilt_p7p5.zspy", 7.5),
     ("0.bcf", 0.0), ("lamella_TILT=45.emd", 45.0)],
)
def test_angle_from_filename(name, angle):
    assert tilt_angle_from_filename(f"/data/{name}") == angle


@pytest.mark.parametrize("name", ["map.bcf", "sample3_map-2.bcf"])
def test_angle_from_filename_errors(name):
    with pytest.raises(ValueError, match="Cannot read a tilt angle"):
        tilt_angle_from_filename(name)


def write_per_tilt_files(folder, extension="hspy", with_adf=True, metadata_tilt=True):
    """One spectrum image (and ADF image) per tilt, names carrying the angle."""
    series = make_series(n_x=8, n_slices=2)
    paths, adf_paths = [], []
    for i, angle in enumerate(TILTS):
        spectrum = series.inav[:, :, i].deepcopy()
        spectrum.set_signal_type("EDS_TEM")
        if metadata_tilt:
            spectrum.metadata.set_item("Acquisition_instrument.TEM.Stage.tilt_alpha", angle)
        path = folder / f"tilt_{angle:+g}.{extension}"
        spectrum.save(path)
        paths.append(path)
        if with_adf:
            adf = hs.signals.Signal2D(spectrum.data.sum(-1).astype(float))
            adf.metadata.General.title = "HAADF"
            adf_path = folder / f"adf_tilt_{angle:+g}.{extension}"
            adf.save(adf_path)
            adf_paths.append(adf_path)
    return series, paths, adf_paths


@pytest.mark.parametrize("extension", ["hspy", "zspy"])
@pytest.mark.parametrize("lazy", [True, False])
def test_hspy_files_with_separate_adf(tmp_path, extension, lazy):
    series, paths, adf_paths = write_per_tilt_files(tmp_path, extension)
    shuffled = [paths[i] for i in (3, 0, 8, 1, 5, 2, 7, 4, 6)]
    shuffled_adf = [adf_paths[i] for i in (3, 0, 8, 1, 5, 2, 7, 4, 6)]
    loaded, adf = load_tilt_series(shuffled, tilt_from="filename", adf_paths=shuffled_adf,
                                   lazy=lazy)
    assert type(loaded) is (LazyTomographicEDSSpectrum if lazy else TomographicEDSSpectrum)
    np.testing.assert_allclose(loaded.tilt_angles, TILTS)
    np.testing.assert_array_equal(np.asarray(loaded.data), series.data)
    np.testing.assert_allclose(np.asarray(adf.data), series.data.sum(-1))
    np.testing.assert_allclose(adf.axes_manager["tilt"].axis, TILTS)
    assert adf._lazy == lazy
    assert [p.split("/")[-1] for p in loaded.original_metadata.tilt_series.files][0] == \
        "tilt_-70.hspy".replace("hspy", extension)
    # The loaded series reconstructs with its ADF series as is.
    rec = loaded.reconstruct_hebt(adf, iterations=2)
    assert len(rec) == 2


def test_angles_from_metadata_and_explicit_list(tmp_path):
    _, paths, _ = write_per_tilt_files(tmp_path, with_adf=False)
    from_metadata, adf = load_tilt_series(str(tmp_path / "tilt_*.hspy"))
    assert adf is None
    np.testing.assert_allclose(from_metadata.tilt_angles, TILTS)
    explicit, _ = load_tilt_series(paths, tilt_angles=TILTS + 1.0, lazy=False)
    np.testing.assert_allclose(explicit.tilt_angles, TILTS + 1.0)
    called = load_tilt_series(
        paths, tilt_from=lambda path, s: 2 * tilt_angle_from_filename(path) / 2)
    np.testing.assert_allclose(called[0].tilt_angles, TILTS)


def _bruker_like(path, lazy=True, **kwargs):
    """What rosettasciio's bcf reader returns: the HAADF image, then the EDS SI."""
    angle = tilt_angle_from_filename(path)
    image = hs.signals.Signal2D(np.full((2, 8), 100.0 + angle))
    image.metadata.General.title = "HAADF"
    sem = hs.signals.Signal1D(np.ones((2, 8, 50)))
    sem.axes_manager[-1].units = "keV"
    sem.set_signal_type("EDS_TEM")
    sem.metadata.set_item("Acquisition_instrument.TEM.Stage.tilt_alpha", angle)
    return [image, sem]


def _velox_like(path, lazy=True, **kwargs):
    """Velox .emd: several images (BF, HAADF, element maps) and the spectrum image."""
    signals = _bruker_like(path)
    bf = hs.signals.Signal2D(np.zeros((2, 8)))
    bf.metadata.General.title = "BF"
    fe = hs.signals.Signal2D(np.zeros((2, 8)))
    fe.metadata.General.title = "Fe"
    return [bf, fe] + signals


@pytest.mark.parametrize("reader, suffix", [(_bruker_like, "bcf"), (_velox_like, "emd")])
def test_instrument_files_shaped_like_rosettasciio_output(tmp_path, monkeypatch, reader, suffix):
    # No Bruker or Velox sample file can be made here (rosettasciio cannot write
    # them and the machines have no internet): the reader's output is mimicked.
    paths = []
    for angle in (-40, 0, 40):
        path = tmp_path / f"{angle}.{suffix}"
        path.write_bytes(b"")
        paths.append(path)
    monkeypatch.setattr(hs, "load", reader)
    series, adf = load_tilt_series(str(tmp_path / f"*.{suffix}"))
    np.testing.assert_allclose(series.tilt_angles, [-40, 0, 40])
    np.testing.assert_allclose(adf.data[:, 0, 0], [60, 100, 140])  # the HAADF, not BF


def test_errors(tmp_path, monkeypatch):
    _, paths, adf_paths = write_per_tilt_files(tmp_path, metadata_tilt=False)
    with pytest.raises(FileNotFoundError, match="no file matches"):
        load_tilt_series(str(tmp_path / "*.bcf"))
    with pytest.raises(FileNotFoundError, match="do not exist"):
        load_tilt_series([tmp_path / "nothing.hspy"])
    with pytest.raises(ValueError, match="Stage.tilt_alpha repeats"):
        load_tilt_series(paths)
    with pytest.raises(ValueError, match="8 values for 9 files"):
        load_tilt_series(paths, tilt_angles=TILTS[:-1])
    with pytest.raises(ValueError, match="must not repeat"):
        load_tilt_series(paths, tilt_angles=np.r_[TILTS[:-1], TILTS[0]])
    with pytest.raises(ValueError, match=r"\|angle\| < 90"):
        load_tilt_series(paths, tilt_angles=np.r_[TILTS[:-1], 95.0])
    with pytest.raises(ValueError, match="tilt_from must be"):
        load_tilt_series(paths, tilt_from="header")
    with pytest.raises(ValueError, match="adf_paths has 8 files for 9"):
        load_tilt_series(paths, tilt_from="filename", adf_paths=adf_paths[:-1])
    with pytest.raises(ValueError, match="holds 0 EDS spectrum images"):
        load_tilt_series(adf_paths, tilt_from="filename")
    monkeypatch.setattr(hs, "load", lambda path, **k: _bruker_like(path)[1:]
                        if Path(path).name == "40.bcf" else _bruker_like(path))
    for angle in (-40, 0, 40):
        (tmp_path / f"{angle}.bcf").write_bytes(b"")
    with pytest.raises(ValueError, match="hold no ADF image while the others do"):
        load_tilt_series(str(tmp_path / "*.bcf"))
