"""The signal classes: registration, round trips that must keep the class, exspy methods."""

import copy

import hyperspy.api as hs
import numpy as np
import pytest
from helpers import TILTS, make_series

from hyperspy_hebt import LazyTomographicEDSSpectrum, TomographicEDSSpectrum

SIGNAL_TYPE = "EDS_TEM_Tomography"


def assert_tomographic(signal, lazy=False, tilts=TILTS):
    expected = LazyTomographicEDSSpectrum if lazy else TomographicEDSSpectrum
    assert type(signal) is expected
    assert signal.metadata.Signal.signal_type == SIGNAL_TYPE
    np.testing.assert_allclose(signal.tilt_angles, tilts)
    assert signal.axes_manager["tilt"].units == "degrees"


def test_registered_with_hyperspy():
    from hyperspy.extensions import ALL_EXTENSIONS

    entries = {k: v for k, v in ALL_EXTENSIONS["signals"].items() if "Tomographic" in k}
    assert entries["TomographicEDSSpectrum"]["signal_type"] == SIGNAL_TYPE
    assert entries["LazyTomographicEDSSpectrum"]["lazy"] is True
    # A type string of our own: "EDS_TEM" must still give exspy's class.
    s = hs.signals.Signal1D(np.zeros((2, 3, 10)))
    s.set_signal_type("EDS_TEM")
    assert type(s).__name__ == "EDSTEMSpectrum"
    s.set_signal_type(SIGNAL_TYPE)
    assert type(s) is TomographicEDSSpectrum
    s.set_signal_type("EDS_STEM_Tomography")  # alias
    assert type(s) is TomographicEDSSpectrum
    assert s.metadata.Signal.signal_type == SIGNAL_TYPE


def test_lazy_round_trip(series):
    lazy = series.as_lazy()
    assert_tomographic(lazy, lazy=True)
    lazy.compute()
    assert_tomographic(lazy)
    np.testing.assert_array_equal(lazy.data, series.data)


@pytest.mark.parametrize("extension", ["hspy", "zspy"])
@pytest.mark.parametrize("lazy_load", [False, True])
def test_save_load(series, tmp_path, extension, lazy_load):
    path = tmp_path / f"series.{extension}"
    series.save(path)
    loaded = hs.load(path, lazy=lazy_load)
    assert_tomographic(loaded, lazy=lazy_load)
    np.testing.assert_array_equal(np.asarray(loaded.data), series.data)
    assert loaded.metadata.Sample.xray_lines == ["Ag_La", "Au_Ma"]


def test_non_uniform_tilts_survive_save(tmp_path):
    tilts = np.array([-62.5, -20.0, 0.0, 3.0, 47.25])
    series = make_series(n_x=8, n_slices=2, tilts=tilts)
    assert not series.axes_manager["tilt"].is_uniform
    series.save(tmp_path / "s.zspy")
    assert_tomographic(hs.load(tmp_path / "s.zspy", lazy=True), lazy=True, tilts=tilts)


def test_slicing_copy_transpose_map_rebin_stack(series):
    assert_tomographic(series.inav[2:10, :, :])
    assert_tomographic(series.isig[1.0:5.0])
    assert_tomographic(copy.deepcopy(series))
    assert_tomographic(series.deepcopy())
    swapped = series.transpose(signal_axes=[3], navigation_axes=[1, 0, 2])
    assert_tomographic(swapped)
    assert [a.name for a in swapped.axes_manager.navigation_axes] == ["y", "x", "tilt"]
    assert_tomographic(series.T.T)
    doubled = series.map(lambda spectrum: 2 * spectrum, inplace=False)
    assert_tomographic(doubled)
    np.testing.assert_array_equal(doubled.data, 2 * series.data)
    assert_tomographic(hs.stack([series, series], axis="x"))


@pytest.mark.parametrize("lazy", [False, True])
def test_rebin_keeps_non_uniform_tilt_axis(lazy):
    tilts = np.array([-60.0, -25.0, 0.0, 10.0, 45.0])
    series = make_series(n_x=8, n_slices=2, tilts=tilts, lazy=lazy)
    before = np.asarray(series.data).copy()
    binned = series.rebin(scale=(2, 1, 1, 2))
    assert_tomographic(binned, lazy=lazy, tilts=tilts)
    assert binned.data.shape == (5, 2, 4, 150)
    expected = before.reshape(5, 2, 4, 2, 150, 2).sum(axis=(3, 5))
    np.testing.assert_array_equal(np.asarray(binned.data), expected)
    np.testing.assert_array_equal(np.asarray(series.data), before)
    assert not series.axes_manager["tilt"].is_uniform
    with pytest.raises(NotImplementedError, match="tilt"):
        series.rebin(scale=(1, 1, 5, 1))


def test_exspy_methods_work(series):
    series.add_elements(["Cu"])
    assert "Cu" in series.metadata.Sample.elements
    series.add_lines(["Cu_Ka"])
    assert "Cu_Ka" in series.metadata.Sample.xray_lines
    windows = series.estimate_background_windows(xray_lines=["Ag_La", "Au_Ma"])
    plain = series.get_lines_intensity(["Ag_La", "Au_Ma"], integration_windows=2.0)
    corrected = series.get_lines_intensity(
        ["Ag_La", "Au_Ma"], integration_windows=2.0, background_windows=windows
    )
    assert plain[0].data.shape == (len(TILTS), 3, 16)
    # The synthetic background (0.05 counts per channel) is removed: less signal remains.
    assert corrected[0].data.sum() < plain[0].data.sum()
    # The energy resolution is read from our metadata ("auto"), not exspy's type check.
    energy, fwhm = series._get_line_energy("Ag_La", FWHM_MnKa="auto")
    assert energy == pytest.approx(2.9844) and 0.05 < fwhm < 0.2


def test_take_off_angle_per_tilt(series):
    series.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.azimuth_angle", 0.0)
    series.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.elevation_angle", 18.0)
    # Azimuth 0: the stage tilt adds to the elevation.
    np.testing.assert_allclose(series.get_take_off_angle(), 18.0 + TILTS, atol=1e-9)


def _markers(signal, kind):
    return [m for m in signal._plot.signal_plot.ax_markers if type(m).__name__ == kind]


def test_plot(series):
    """exspy's plot, inherited: the spectrum at the current pixel and tilt, each line
    marked where it is, and the integration windows where they will be integrated."""
    series.plot(True)
    ax = series._plot.signal_plot.ax
    assert ax.get_xlabel() == "Energy axis (keV)"
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), series.inav[0, 0, 0].data)
    assert list(series._xray_markers["names"]) == ["Ag_La", "Au_Ma"]
    series._plot.close()
    series.plot(integration_windows=2.0)
    (windows,) = _markers(series, "VerticalLines")
    np.testing.assert_allclose(windows.kwargs["offsets"],
                               np.ravel(series.estimate_integration_windows(2.0)))


def test_plot_background_windows(series):
    background = series.estimate_background_windows()
    series.plot(background_windows=background)
    (edges,) = _markers(series, "VerticalLines")
    # Four edges per line (two windows each side of the peak), where they were estimated.
    np.testing.assert_allclose(edges.kwargs["offsets"], np.ravel(background))
    assert len(_markers(series, "Lines")) == 2  # the line markers and the background fits


def test_tilt_angles_read_only(series):
    with pytest.raises(ValueError):
        series.tilt_angles[0] = 3.0
    with pytest.raises(AttributeError):
        series.tilt_angles = TILTS


def test_set_tilt_angles(series):
    new = TILTS + 1.0
    series.set_tilt_angles(new)
    np.testing.assert_allclose(series.tilt_angles, new)
    uniform = np.linspace(-40, 40, len(TILTS))
    series.set_tilt_angles(uniform)
    assert series.axes_manager["tilt"].is_uniform
    np.testing.assert_allclose(series.tilt_angles, uniform)


def test_set_tilt_angles_names_the_slowest_axis():
    s = hs.signals.Signal1D(np.zeros((4, 3, 5, 10)))
    s.set_signal_type(SIGNAL_TYPE)
    with pytest.raises(AttributeError, match="set_tilt_angles"):
        _ = s.tilt_angles
    s.set_tilt_angles([-30, -10, 10, 30])
    assert s.axes_manager.navigation_axes[-1].name == "tilt"
    np.testing.assert_allclose(s.tilt_angles, [-30, -10, 10, 30])


@pytest.mark.parametrize(
    "angles, message",
    [
        (TILTS[:-1], "has 8 values but the tilt axis"),
        (np.r_[TILTS[:-1], 0.0], "must not repeat"),
        (np.r_[TILTS[:-1], np.inf], "finite"),
        (np.r_[TILTS[:-1], 90.0], r"\|angle\| < 90"),
        (TILTS[::-1], "strictly increasing"),
    ],
)
def test_set_tilt_angles_errors(series, angles, message):
    with pytest.raises(ValueError, match=message):
        series.set_tilt_angles(angles)
    np.testing.assert_allclose(series.tilt_angles, TILTS)
