"""etspy's alignment applied to the spectra (hyperspy_hebt.alignment.align_like_etspy)."""

import logging
from pathlib import Path

import numpy as np
import pytest

from hyperspy_hebt.etspy_bridge import _load, align_like_etspy
from hyperspy_hebt.image_shifts import shift_block
from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

LINES = ["Ag_La", "Au_Ma"]


def drifting_acquisition():
    """A particle drifting 1 px per tilt (random walk), 21 tilts: the fixture's source."""
    tilts = np.linspace(-70, 70, 21)
    drift = np.cumsum(np.random.default_rng(3).normal(0, 1.0, (21, 2)), axis=0)
    particle = core_shell_particle(32, 32, pixel_size_nm=3.0, core_radius=0.2,
                                   shell_radius=0.3)
    return simulate_acquisition(particle, LINES, tilt_angles_deg=tilts,
                                energy_axis_kev=(0.0, 0.02, 200), drift_px=drift, seed=5)


FIXTURE = Path(__file__).parent / "data" / "etspy_aligned_adf.hspy"


@pytest.fixture(scope="module")
def acquisition():
    return drifting_acquisition()


def _centres(images):
    """Centre of mass (y, x) of each tilt's image."""
    images = np.clip(np.asarray(images, dtype=float), 0, None)
    ys, xs = np.indices(images.shape[1:])
    totals = images.sum(axis=(1, 2))
    return np.column_stack([(images * ys).sum(axis=(1, 2)) / totals,
                            (images * xs).sum(axis=(1, 2)) / totals])


def test_the_fixture_holds_this_simulation_aligned_by_etspy(acquisition):
    """Guard the fixture: its images are this test's ADF moved by etspy's own record
    (5 % of the maximum: etspy shifts by Fourier interpolation, we linearly)."""
    raw = np.load(FIXTURE.parent / "etspy_raw_adf.npz")
    np.testing.assert_array_equal(raw["images"], np.asarray(acquisition.adf.data, np.float32))
    aligned, adf = align_like_etspy(acquisition.series, FIXTURE)
    ours = shift_block(raw["images"], np.asarray(aligned.metadata.Alignment.shifts_px), 0.0)
    inner = (slice(None), slice(6, -6), slice(6, -6))
    assert np.abs(ours[inner] - adf.data[inner]).max() < 0.06 * adf.data.max()


def test_spectra_follow_the_adf_etspy_aligned(acquisition, caplog):
    series = acquisition.series
    before = series.data.copy()
    with caplog.at_level(logging.WARNING):
        aligned, adf = align_like_etspy(series, FIXTURE)
    assert "etspy" not in caplog.text  # HyperSpy's "not installed" notice is not passed on
    np.testing.assert_array_equal(series.data, before)  # the user's signal is untouched
    record = aligned.metadata.Alignment
    assert record.method == "etspy" and adf.metadata.Alignment.method == "etspy"
    # The total is etspy's per-tilt shifts plus trans_stack(xshift=1, yshift=-0.5).
    np.testing.assert_allclose(np.asarray(record.shifts_px),
                               np.asarray(record.etspy_shifts_px) + [0.5, 1.0])
    np.testing.assert_allclose(adf.axes_manager["tilt"].axis, series.tilt_angles)
    assert adf.axes_manager["x"].scale == series.axes_manager["x"].scale
    # The EDS maps, moved by the record, sit where etspy put the ADF: their centres of
    # mass agree within 0.3 px at every tilt (before: the drift, up to 5 px apart).
    maps = sum(np.asarray(m.data) for m in aligned.get_lines_intensity(
        integration_windows=1.0))
    raw_maps = sum(np.asarray(m.data) for m in series.get_lines_intensity(
        integration_windows=1.0))
    after = np.abs(_centres(maps) - _centres(adf.data)).max()
    moved = np.abs(_centres(raw_maps) - _centres(adf.data)).max()
    assert after < 0.3 and moved > 2.0, (after, moved)
    # etspy's stack, aligned, has the particle still: its centres spread < 1 px.
    assert np.ptp(_centres(adf.data), axis=0).max() < 1.0
    # A reconstruction takes the record's invalid pixels out, as after align_tilt_series.
    rec = aligned.reconstruct_sirt(iterations=5, xray_lines=LINES, show_progressbar=False)
    assert rec[0].metadata.Reconstruction.invalid_pixels.startswith("alignment")


def test_a_live_etspy_stack_where_etspy_is_installed(acquisition):
    etspy = pytest.importorskip("etspy")  # not a dependency (astra-toolbox, CUDA runtime)
    stack = etspy.TomoStack(np.asarray(acquisition.adf.data, np.float32),
                            tilts=acquisition.series.tilt_angles)
    aligned_stack = stack.stack_register("PC")
    aligned, _ = align_like_etspy(acquisition.series, aligned_stack)
    np.testing.assert_allclose(np.asarray(aligned.metadata.Alignment.shifts_px),
                               np.asarray(aligned_stack.shifts.data))


def test_stacks_of_other_series_are_refused(acquisition, tmp_path):
    saved = _load(FIXTURE)
    series = acquisition.series
    with pytest.raises(ValueError, match="tilts .* are not this series'"):
        align_like_etspy(series.inav[:, :, :-1], FIXTURE)
    with pytest.raises(ValueError, match="images of shape"):
        align_like_etspy(series.inav[:-2], FIXTURE)
    rotated = saved.deepcopy()
    rotated.metadata.Tomography.tiltaxis = 3.0
    with pytest.raises(ValueError, match="rotated by 3 degrees"):
        align_like_etspy(series, rotated)
    cropped = saved.deepcopy()
    cropped.metadata.Tomography.cropped = True
    with pytest.raises(ValueError, match="cropped"):
        align_like_etspy(series, cropped)
    plain = saved.deepcopy()
    del plain.metadata.Tomography
    with pytest.raises(ValueError, match="not an etspy TomoStack"):
        align_like_etspy(series, plain)
    with pytest.raises(FileNotFoundError, match="no file"):
        align_like_etspy(series, tmp_path / "missing.hspy")
