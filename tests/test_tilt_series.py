"""stack_tilt_series: sorting, laziness, metadata, and every bad input."""

import hyperspy.api as hs
import numpy as np
import pytest
from helpers import TILTS, make_series

from hyperspy_hebt import LazyTomographicEDSSpectrum, TomographicEDSSpectrum, stack_tilt_series


def per_tilt_spectra(lazy=False):
    """Split a series into EDS_TEM spectrum images as a microscope writes them."""
    series = make_series(n_x=8, n_slices=2)
    spectra = []
    for i, angle in enumerate(TILTS):
        s = series.inav[:, :, i].deepcopy()
        s.set_signal_type("EDS_TEM")
        s.metadata.General.title = f"map {i}"
        s.metadata.set_item("Acquisition_instrument.TEM.Stage.tilt_alpha", float(angle))
        s.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.live_time", 10.0 + i)
        s.metadata.set_item("Acquisition_instrument.TEM.beam_energy", 200.0)
        spectra.append(s.as_lazy() if lazy else s)
    return series, spectra


@pytest.mark.parametrize("lazy", [False, True])
def test_stack_sorts_and_keeps_laziness(lazy):
    series, spectra = per_tilt_spectra(lazy)
    order = np.array([4, 0, 8, 2, 6, 1, 7, 3, 5])
    before = [np.asarray(s.data).copy() for s in spectra]
    stacked = stack_tilt_series([spectra[i] for i in order], TILTS[order])
    assert type(stacked) is (LazyTomographicEDSSpectrum if lazy else TomographicEDSSpectrum)
    np.testing.assert_allclose(stacked.tilt_angles, TILTS)
    np.testing.assert_array_equal(np.asarray(stacked.data), series.data)
    assert [a.name for a in stacked.axes_manager.navigation_axes] == ["x", "y", "tilt"]
    om = stacked.original_metadata.tilt_series
    np.testing.assert_array_equal(np.array(order)[om.acquisition_order], np.arange(9))
    for s, data in zip(spectra, before):  # inputs untouched
        np.testing.assert_array_equal(np.asarray(s.data), data)
        assert s.metadata.Signal.signal_type == "EDS_TEM"


def test_stack_metadata_common_kept_differing_listed(tmp_path):
    _, spectra = per_tilt_spectra()
    stacked = stack_tilt_series(spectra, TILTS)
    tem = stacked.metadata.Acquisition_instrument.TEM
    assert tem.beam_energy == 200.0
    assert not tem.has_item("Detector.EDS.live_time")
    per_tilt = stacked.original_metadata.tilt_series.per_tilt_metadata
    np.testing.assert_allclose(
        per_tilt.Acquisition_instrument.TEM.Detector.EDS.live_time, 10.0 + np.arange(9)
    )
    np.testing.assert_allclose(per_tilt.Acquisition_instrument.TEM.Stage.tilt_alpha, TILTS)
    assert stacked.metadata.General.title == "Tilt series of map 0"
    assert stacked.metadata.Sample.xray_lines == ["Ag_La", "Au_Ma"]
    stacked.save(tmp_path / "stack.hspy")
    loaded = hs.load(tmp_path / "stack.hspy")
    np.testing.assert_allclose(
        loaded.original_metadata.tilt_series.per_tilt_metadata.Acquisition_instrument.TEM.Stage.tilt_alpha,
        TILTS,
    )


def test_stack_line_scans_gives_single_slice_series():
    _, spectra = per_tilt_spectra()
    lines = [s.inav[:, 0] for s in spectra]
    stacked = stack_tilt_series(lines, TILTS)
    assert stacked.axes_manager.navigation_shape == (8, 9)
    assert [a.name for a in stacked.axes_manager.navigation_axes] == ["x", "tilt"]


def _recalibrated(spectra, index, change):
    spectra = list(spectra)
    spectra[index] = spectra[index].deepcopy()
    change(spectra[index])
    return spectra


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda sp: (sp, TILTS[:-1]), "8 values for 9 spectrum images"),
        (lambda sp: (sp, np.r_[TILTS[:-1], TILTS[0]]), "must not repeat"),
        (lambda sp: (sp, np.r_[TILTS[:-1], np.nan]), "finite"),
        (lambda sp: (sp, np.r_[TILTS[:-1], -90.0]), r"\|angle\| < 90"),
        (lambda sp: ([], []), "spectra is empty"),
        (lambda sp: (_recalibrated(sp, 3, lambda s: None)[:3] + [sp[3].isig[:-1]] + sp[4:], TILTS),
         r"spectra\[3\] \(tilt -10 deg\) has data shape"),
        (lambda sp: (_recalibrated(sp, 2, lambda s: setattr(s.axes_manager[-1], "scale", 0.021)),
                     TILTS), r"spectra\[2\] \(tilt -30 deg\) has energy axis"),
        (lambda sp: (_recalibrated(sp, 5, lambda s: setattr(s.axes_manager[-1], "units", "eV")),
                     TILTS), "energy axis"),
        (lambda sp: (_recalibrated(sp, 1, lambda s: setattr(s.axes_manager["x"], "scale", 3.0)),
                     TILTS), r"spectra\[1\] \(tilt -50 deg\) has navigation axis"),
    ],
)
def test_stack_errors(build, message):
    _, spectra = per_tilt_spectra()
    args = build(spectra)
    with pytest.raises(ValueError, match=message):
        stack_tilt_series(*args)


def test_stack_type_errors():
    _, spectra = per_tilt_spectra()
    with pytest.raises(TypeError, match=r"spectra\[0\] \(tilt -70 deg\) must be a HyperSpy signal"):
        stack_tilt_series([np.zeros((2, 8, 300))] + spectra[1:], TILTS)
    image = hs.signals.Signal2D(np.zeros((8, 8)))
    with pytest.raises(TypeError, match="one signal axis"):
        stack_tilt_series([image] + spectra[1:], TILTS)


def test_scan_axis_names_are_standardised():
    import hyperspy.api as hs

    from hyperspy_hebt.tilt_series import standardise_scan_axes

    image = hs.signals.Signal2D(np.zeros((4, 5)))
    image.axes_manager[0].name, image.axes_manager[1].name = "Width", "HEIGHT"
    assert standardise_scan_axes(image) == {"Width": "x", "HEIGHT": "y"}
    assert [a.name for a in image.axes_manager.signal_axes] == ["x", "y"]
    assert standardise_scan_axes(image) == {}  # already standard
    unnamed = hs.signals.Signal1D(np.zeros((3, 4, 8)))  # navigation (x, y), no names
    assert standardise_scan_axes(unnamed) == {"unnamed axis 0 (fastest first)": "x",
                                              "unnamed axis 1 (fastest first)": "y"}
    assert [a.name for a in unnamed.axes_manager.navigation_axes] == ["x", "y"]
    other = hs.signals.Signal2D(np.zeros((4, 5)))
    other.axes_manager[0].name, other.axes_manager[1].name = "u", "v"
    assert standardise_scan_axes(other) == {}  # names it does not know are left alone
    swapped = hs.signals.Signal2D(np.zeros((4, 5)))
    swapped.axes_manager[0].name, swapped.axes_manager[1].name = "height", "y"
    with pytest.raises(ValueError, match="would both be named"):
        standardise_scan_axes(swapped)
