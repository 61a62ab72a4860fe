"""Alignment, ADF-to-EDS registration and shadowing normalisation on messy simulated series."""

import numpy as np
import pytest

from hyperspy_hebt import load_tilt_series
from hyperspy_hebt.alignment import (align_tilt_series, cross_correlation_shifts,
                                     estimate_tilt_axis_rotation, normalise_tilt_totals,
                                     register_adf_to_eds)
from hyperspy_hebt.simulation import (core_shell_particle, simulate_acquisition,
                                      write_acquisition_files)

TILTS = np.linspace(-75, 75, 31)
LINES = ["Ag_La", "Au_Ma"]
RNG = np.random.default_rng(1)
DRIFT = np.cumsum(RNG.normal(0, 1.0, (31, 2)), axis=0)  # a random walk, ~1 px per tilt
DRIFT -= DRIFT.mean(axis=0)
ADF_OFFSET = np.array([1.5, -2.0])
SHADOW = 1 - 0.35 * np.clip(np.sin(np.deg2rad(TILTS)), 0, None) ** 2  # holder on one side
THETA = np.deg2rad(TILTS)
TRAJECTORY = np.column_stack([np.cos(THETA), np.sin(THETA), np.ones_like(THETA)])


def observable(shift_error_x, shift_error_y):
    """Drift along span{1, cos, sin} in x (and a constant in y) is indistinguishable
    from the object's own rotation about another axis: remove it before comparing."""
    x = shift_error_x - TRAJECTORY @ np.linalg.lstsq(TRAJECTORY, shift_error_x, rcond=None)[0]
    return x, shift_error_y - shift_error_y.mean()


@pytest.fixture(scope="module")
def particle():
    # 40 px (3 nm) with 40 slices: the whole particle stays in the field at every tilt.
    return core_shell_particle(40, 40, pixel_size_nm=3.0)


@pytest.fixture(scope="module")
def files(particle, tmp_path_factory):
    acquisition = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 200),
                                       drift_px=DRIFT, adf_offset_px=ADF_OFFSET,
                                       eds_tilt_factors=SHADOW)
    folder = tmp_path_factory.mktemp("series")
    paths, adf_paths = write_acquisition_files(acquisition, folder, wrong_tilt_alpha=0.0)
    return folder, paths, adf_paths


def test_messy_series_from_files_to_weight_fractions(particle, files):
    folder, _, _ = files
    with pytest.raises(ValueError, match="Stage.tilt_alpha repeats"):
        load_tilt_series(str(folder / "tilt_*.hspy"))  # every file says 0 degrees
    series, adf = load_tilt_series(str(folder / "tilt_*.hspy"), tilt_from="filename",
                                   adf_paths=str(folder / "adf_tilt_*.hspy"))
    np.testing.assert_allclose(series.tilt_angles, TILTS)

    registered = register_adf_to_eds(series, adf)
    offset = np.median(np.array(registered.metadata.Registration.offsets_px), axis=0)
    # ADF and EDS weight the elements differently: measured error 0.03 px.
    np.testing.assert_allclose(offset, -ADF_OFFSET, atol=0.5)

    aligned, aligned_adf = align_tilt_series(series, registered)
    shifts = np.array(aligned.metadata.Alignment.shifts_px)
    error_x, error_y = observable(shifts[:, 1] + DRIFT[:, 1], shifts[:, 0] + DRIFT[:, 0])
    # The issue asks for 0.5 px; measured 0.07 (x) and 0.03 (y).
    assert np.abs(error_x).max() < 0.5 and np.abs(error_y).max() < 0.5
    assert aligned._lazy and series.metadata.get_item("Alignment") is None

    maps = aligned.get_lines_intensity(integration_windows=1.0)
    normalised = normalise_tilt_totals(maps)
    factors = np.array(normalised[0].metadata.Normalisation.factors)
    # Equal totals undo the shadowing up to Poisson noise and pixels lost at the edge.
    np.testing.assert_allclose(factors * SHADOW / np.mean(factors * SHADOW), 1, atol=0.03)

    kwargs = dict(xray_lines=LINES, gaussian_sigma=0.8)
    recs = aligned.reconstruct_hebt(aligned_adf, iterations=100, intensities=normalised,
                                    **kwargs)
    # The pixels the shifts brought in from outside the images carry no weight.
    record = recs[0].metadata.Reconstruction
    assert record.invalid_pixels == "alignment" and 0 < record.invalid_pixel_fraction < 0.2
    ag, au = aligned.quantify_cross_section(recs)
    naive = series.quantify_cross_section(series.reconstruct_hebt(
        adf, iterations=100, intensities=series.get_lines_intensity(integration_windows=1.0),
        **kwargs))
    clean = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 200))
    reference = clean.series.quantify_cross_section(clean.series.reconstruct_hebt(
        clean.adf, iterations=100,
        intensities=clean.series.get_lines_intensity(integration_windows=1.0), **kwargs))[1]
    au.compute()
    naive[1].compute()
    truth = particle.weight_fractions["Au"]
    errors = {name: registered_rmse(data, truth) for name, data in
              (("aligned", au.data), ("naive", naive[1].data), ("clean", reference.data))}
    # Measured RMSE of the Au weight fraction: aligned 0.048, clean series 0.044,
    # naive (no registration, alignment or normalisation) 0.134.
    assert errors["aligned"] < 1.25 * errors["clean"]
    assert errors["aligned"] < 0.5 * errors["naive"]


def registered_rmse(volume, truth):
    """RMSE after the best translation: drift along span{1, cos, sin} moves the whole
    object, which no alignment can tell from the object's own position."""
    from scipy.ndimage import shift
    from skimage.registration import phase_cross_correlation

    offset, _, _ = phase_cross_correlation(truth, volume, upsample_factor=10,
                                           normalization=None)
    return float(np.sqrt(np.mean((shift(volume, offset, order=1) - truth) ** 2)))


@pytest.mark.parametrize("rotation", [4.0, -6.0, 0.0])
def test_tilt_axis_rotation_is_estimated_under_drift(rotation):
    # A margin around the particle: drift must not push it out of the field.
    particle = core_shell_particle(40, 40, pixel_size_nm=3.0, core_radius=0.16,
                                   shell_radius=0.3)
    acquisition = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 50),
                                       tilt_axis_rotation_deg=rotation, drift_px=DRIFT)
    estimate = estimate_tilt_axis_rotation(np.asarray(acquisition.adf.data))
    # The estimate is the correcting angle; measured errors under 0.05 deg.
    assert estimate == pytest.approx(-rotation, abs=0.2)
    aligned, _ = align_tilt_series(acquisition.series, acquisition.adf, rotation_deg="auto")
    assert aligned.metadata.Alignment.rotation_deg == pytest.approx(estimate)


def test_rotation_of_a_featureless_sphere_is_refused():
    sphere = core_shell_particle(40, 40, pixel_size_nm=3.0, core_radius=0.3, shell_radius=0.3)
    acquisition = simulate_acquisition(sphere, LINES, energy_axis_kev=(0.0, 0.02, 50),
                                       tilt_axis_rotation_deg=4.0, drift_px=DRIFT)
    with pytest.raises(ValueError, match="cannot be estimated"):
        estimate_tilt_axis_rotation(np.asarray(acquisition.adf.data))


def test_known_tilt_axis_rotation_is_undone(particle):
    acquisition = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 200),
                                       tilt_axis_rotation_deg=4.0)
    straight = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 200))
    _, aligned = align_tilt_series(acquisition.series, acquisition.adf, rotation_deg=-4.0)
    _, reference = align_tilt_series(straight.series, straight.adf)
    inner = (slice(None), slice(8, 32), slice(8, 32))  # away from the rotated corners
    # Two linear interpolations (simulation, correction) blur edges: measured 2.6 %.
    difference = np.linalg.norm(aligned.data[inner] - reference.data[inner])
    assert difference / np.linalg.norm(reference.data[inner]) < 0.05
    assert aligned.metadata.Alignment.rotation_deg == -4.0


def test_cross_correlation_for_objects_larger_than_the_field(particle):
    acquisition = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 200),
                                       drift_px=DRIFT)
    shifts = cross_correlation_shifts(np.asarray(acquisition.adf.data))
    error_x, error_y = observable(shifts[:, 1] + DRIFT[:, 1], shifts[:, 0] + DRIFT[:, 0])
    # Chained neighbour correlations accumulate errors: measured 0.78 (x), 0.98 (y) px.
    assert np.abs(error_x).max() < 1.5 and np.abs(error_y).max() < 1.5


def test_errors_and_inputs_unchanged(particle):
    acquisition = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 200))
    series, adf = acquisition.series, acquisition.adf
    before = series.data.copy()
    with pytest.raises(ValueError, match="method must be 'com' or 'xcorr'"):
        align_tilt_series(series, adf, method="sift")
    with pytest.raises(ValueError, match="adf has shape"):
        align_tilt_series(series, adf.inav[:-1])
    with pytest.raises(ValueError, match=r"navigation axes \(x, y, tilt\)"):
        align_tilt_series(series.transpose(signal_axes=[3], navigation_axes=[1, 0, 2]), adf)
    maps = series.get_lines_intensity()
    maps[0].data[3] = 0
    with pytest.raises(ValueError, match=r"tilts \[3\] with no counts"):
        normalise_tilt_totals(maps)
    with pytest.raises(ValueError, match="rotation_deg must be finite"):
        align_tilt_series(series, adf, rotation_deg=np.nan)
    with pytest.raises(ValueError, match="a number or 'auto'"):
        align_tilt_series(series, adf, rotation_deg="guess")
    aligned, _ = align_tilt_series(series, adf, method="xcorr")
    assert aligned.metadata.Alignment.method == "xcorr"
    np.testing.assert_array_equal(series.data, before)
