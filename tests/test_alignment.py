"""Alignment, ADF-to-EDS registration and shadowing normalisation on messy simulated series."""

import numpy as np
import pytest

from hyperspy_hebt import load_tilt_series
from hyperspy_hebt._reconstruction.field import full_coverage_padding
from hyperspy_hebt.alignment import (
    align_tilt_series,
    cross_correlation_shifts,
    estimate_tilt_axis_rotation,
    estimate_tilt_axis_shift,
    normalise_tilt_totals,
    register_adf_to_eds,
)
from hyperspy_hebt.simulation import (
    core_shell_particle,
    project_volume,
    simulate_acquisition,
    write_acquisition_files,
)

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
    record = aligned.metadata.Alignment
    assert record.rotation_deg == pytest.approx(estimate)
    # The search says how sure it is (best / median cost; refused above 0.6).
    assert record.rotation_source == "estimated" and record.rotation_search_cost_ratio < 0.6
    if rotation == 4.0:
        # A search range that stops short of the true angle is refused, not clipped:
        # on a real series "auto" returned exactly the end of its range, 10.00 deg.
        with pytest.raises(ValueError, match="end of the searched range"):
            estimate_tilt_axis_rotation(np.asarray(acquisition.adf.data), search_deg=2.0)


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
    # The line is named, and the tilt given as an angle (tilt index 3 is -60 deg).
    with pytest.raises(ValueError, match=r"\(Ag_La\) has a total of zero or fewer counts at "
                                         r"tilts \[-60.0\] deg"):
        normalise_tilt_totals(maps)
    with pytest.raises(ValueError, match="rotation_deg must be finite"):
        align_tilt_series(series, adf, rotation_deg=np.nan)
    with pytest.raises(ValueError, match="a number or 'auto'"):
        align_tilt_series(series, adf, rotation_deg="guess")
    aligned, _ = align_tilt_series(series, adf, method="xcorr")
    assert aligned.metadata.Alignment.method == "xcorr"
    np.testing.assert_array_equal(series.data, before)


@pytest.mark.parametrize("axis_offset", [0.0, 2.5])
def test_tilt_axis_position_is_found_after_phase_correlation(particle, axis_offset):
    """Phase correlation aligns every tilt on the middle one, so the tilt axis stays where
    that tilt had it (here: the drift at the middle tilt plus a constant offset)."""
    drift = DRIFT + np.array([0.0, axis_offset])
    acquisition = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 50),
                                       drift_px=drift)

    def axis_error(aligned):
        # The constant part of the remaining x drift is the axis offset; the cos and
        # sin parts are a translation of the object, which is consistent data.
        error = np.array(aligned.metadata.Alignment.shifts_px)[:, 1] + drift[:, 1]
        return np.linalg.lstsq(TRAJECTORY, error, rcond=None)[0][2]

    kept, _ = align_tilt_series(acquisition.series, acquisition.adf, method="xcorr")
    found, _ = align_tilt_series(acquisition.series, acquisition.adf, method="xcorr",
                                 axis_shift_px="auto")
    # Measured: 0.94 and 1.57 px off after phase correlation alone, 0.05 with "auto".
    assert abs(axis_error(kept)) > 0.9
    assert abs(axis_error(found)) < 0.2
    record = found.metadata.Alignment
    assert record.axis_shift_source == "estimated"
    assert record.axis_search_residual_shifted < record.axis_search_residual_unshifted
    # Centre-of-mass alignment already centres the axis: the search agrees (0.004 px).
    com, _ = align_tilt_series(acquisition.series, acquisition.adf, axis_shift_px="auto")
    assert abs(com.metadata.Alignment.axis_shift_px) < 0.1


def extended_layer_images(axis_offset_px: int, n_x=48, slices=8, seed=3):
    """ADF images of a 13-px layer with random dots, far wider than the scan (a lamella),
    its tilt axis ``axis_offset_px`` to the right of the scan's middle; Poisson noise."""
    tilts = np.linspace(-70, 70, 29)
    margin = full_coverage_padding(tilts, n_x, n_x) + 8
    width = n_x + 2 * margin
    rng = np.random.default_rng(seed)
    z = np.arange(n_x) - (n_x - 1) / 2
    x = np.arange(width) - (width - 1) / 2
    layer = (np.abs(z) <= 6)[:, None] & np.ones(width, bool)
    volume = np.repeat(layer[None], slices, 0).astype(np.float32) * 0.5
    for s in range(slices):
        for _ in range(width // 6):
            cx, cz, r = rng.uniform(-width / 2, width / 2), rng.uniform(-5, 5), \
                rng.uniform(1.0, 2.5)
            volume[s] += 1.5 * (((x[None] - cx) ** 2 + (z[:, None] - cz) ** 2) <= r * r) * layer
    start = margin - axis_offset_px
    images = project_volume(volume, tilts)[..., start:start + n_x].transpose(1, 0, 2)
    return tilts, rng.poisson(images / images.max() * 2000).astype(float)


@pytest.mark.parametrize("axis_offset", [3, -2])
def test_tilt_axis_position_of_an_object_wider_than_the_field(axis_offset):
    tilts, images = extended_layer_images(axis_offset)
    shift, record = estimate_tilt_axis_shift(images, tilts)
    # The grid is padded for the layer beyond the field; measured within 0.002 px.
    assert record["padding_px"] > 0
    assert shift == pytest.approx(-axis_offset, abs=0.1)


def test_tilt_axis_search_errors(particle):
    tilts, images = extended_layer_images(3)
    with pytest.raises(ValueError, match=r"beyond the searched \+-2 px"):
        estimate_tilt_axis_shift(images, tilts, search_px=2)
    with pytest.raises(ValueError, match="search_px must lie in"):
        estimate_tilt_axis_shift(images, tilts, search_px=30)
    with pytest.raises(ValueError, match="29 tilt angles for 28 images"):
        estimate_tilt_axis_shift(images[1:], tilts)
    with pytest.raises(ValueError, match="valid must have the images' shape"):
        estimate_tilt_axis_shift(images, tilts, valid=np.ones(images.shape[1:], bool))
    with pytest.raises(ValueError, match="no signal above their background"):
        estimate_tilt_axis_shift(np.ones_like(images), tilts)
    acquisition = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 50))
    with pytest.raises(ValueError, match="axis_shift_px must be a number or 'auto'"):
        align_tilt_series(acquisition.series, acquisition.adf, axis_shift_px="centre")
    with pytest.raises(ValueError, match="axis_shift_px must be finite"):
        align_tilt_series(acquisition.series, acquisition.adf, axis_shift_px=np.inf)


def test_registration_on_maps_that_miss_the_adfs_mass_is_unsure(caplog):
    """The ADF sees a second particle that no listed line shows: the centres of mass
    then measure that, not the scan delay, and the offsets change with tilt."""
    import logging

    particle = core_shell_particle(40, 40, pixel_size_nm=3.0, core_radius=0.16,
                                   shell_radius=0.3)
    acquisition = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 200))
    adf = acquisition.adf.deepcopy()
    brightest = float(adf.data.max())
    for i, theta in enumerate(np.deg2rad(acquisition.series.tilt_angles)):
        # A heavy particle 15 px off the axis (in depth): it moves with sin(theta).
        x = int(round(20 + 15 * np.sin(theta)))
        adf.data[i, 2:10, x - 4:x + 4] += 2 * brightest
    with caplog.at_level(logging.WARNING, logger="hyperspy_hebt"):
        registered = register_adf_to_eds(acquisition.series, adf, integration_windows=1.0)
    assert registered.metadata.Registration.confidence == "low"
    assert "registration is unsure" in caplog.text and "spread more than" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hyperspy_hebt"):
        clean = register_adf_to_eds(acquisition.series, acquisition.adf,
                                    integration_windows=1.0)
    assert clean.metadata.Registration.confidence == "high" and not caplog.records


def test_a_large_steady_offset_is_named_as_such(caplog):
    """A 2 px delay on a 32 px field is over 5 % of it: unsure, but for that reason only
    (session 12 found the message blaming mass the maps do not show)."""
    import logging

    particle = core_shell_particle(32, 8, pixel_size_nm=3.0, core_radius=0.2,
                                   shell_radius=0.35)
    acquisition = simulate_acquisition(particle, LINES, energy_axis_kev=(0.0, 0.02, 200),
                                       adf_offset_px=(1.5, -2.0))
    with caplog.at_level(logging.WARNING, logger="hyperspy_hebt"):
        registered = register_adf_to_eds(acquisition.series, acquisition.adf,
                                         integration_windows=1.0)
    assert registered.metadata.Registration.confidence == "low"
    assert "over 5% of the field (8 x 32 px)" in caplog.text
    assert "spread more than" not in caplog.text
