"""reconstruct_sirt on TomographicEDSSpectrum: outputs, eager/lazy/distributed, inputs, errors."""

import dask
import dask.array
import hyperspy.api as hs
import numpy as np
import pytest
import scipy.ndimage as ndi
from helpers import TILTS, make_series

from hyperspy_hebt.simulation import core_shell_phantom

ITERATIONS = 20


def test_output_layout_and_metadata(series):
    series.metadata.set_item("Sample.description", "Ag-Au core-shell")
    rec = series.reconstruct_sirt(iterations=ITERATIONS)
    assert [r.metadata.Sample.xray_lines for r in rec] == [["Ag_La"], ["Au_Ma"]]
    ag = rec[0]
    assert type(ag).__name__ == "Signal2D"
    assert ag.data.shape == (3, 16, 16) and ag.data.dtype == np.float32
    nav, (x, z) = ag.axes_manager.navigation_axes, ag.axes_manager.signal_axes
    assert [nav[0].name, x.name, z.name] == ["y", "x", "z"]
    assert x.scale == z.scale == series.axes_manager["x"].scale == nav[0].scale
    assert x.offset == series.axes_manager["x"].offset
    assert z.offset == pytest.approx(-7.5 * z.scale)  # centred on the rotation axis
    md = ag.metadata
    assert md.Sample.elements == ["Ag"] and md.Sample.description == "Ag-Au core-shell"
    assert md.Acquisition_instrument.TEM.beam_energy == 200.0
    assert md.Signal.signal_type == ""
    assert md.General.title == "SIRT reconstruction of Ag_La"
    r = md.Reconstruction
    assert (r.algorithm, r.iterations, r.relaxation, r.positivity) == ("SIRT", ITERATIONS, 1.0,
                                                                       True)
    np.testing.assert_allclose(r.tilt_angles_deg, TILTS)
    assert r.xray_line == "Ag_La" and r.rotation_axis == "y" and r.scan_axis == "x"
    assert r.intensities.source == "integration"
    lo, hi = r.intensities.integration_window
    assert lo < 2.9844 < hi


def test_reconstruction_finds_the_particle():
    series = make_series(n_x=24, n_slices=2, noise=False, tilts=np.linspace(-75, 75, 31))
    rec = series.reconstruct_sirt(iterations=100)
    core, shell = core_shell_phantom(24, 2)
    for signal, truth in zip(rec, (0.2 * core + 0.8 * shell, 0.8 * core + 0.2 * shell)):
        data = signal.data
        corr = np.corrcoef(data.ravel(), truth.ravel())[0, 1]
        # Noiseless but with the +-75 deg wedge, spectral background in the
        # window and an independent projector: measured 0.986 (Ag), 0.990 (Au).
        assert corr > 0.95


def test_input_unchanged_and_positivity(series):
    data = series.data.copy()
    metadata = series.metadata.as_dictionary()
    rec = series.reconstruct_sirt(iterations=ITERATIONS, gaussian_sigma=0.8,
                                  background_windows="auto")
    np.testing.assert_array_equal(series.data, data)
    assert series.metadata.as_dictionary() == metadata
    assert all(r.data.min() >= 0 for r in rec)
    unconstrained = series.reconstruct_sirt(iterations=ITERATIONS, positivity=False,
                                            background_windows="auto")
    assert min(r.data.min() for r in unconstrained) < 0


def _forbid_compute(*args, **kwargs):
    raise AssertionError("a lazy reconstruction must not compute anything")


def test_lazy_equals_eager(tmp_path):
    series = make_series(n_x=12, n_slices=8)
    # padding_px given: "auto" would read the maps to look at the scan's edges.
    eager = series.reconstruct_sirt(iterations=ITERATIONS, gaussian_sigma=0.8, padding_px=0)
    series.save(tmp_path / "series.zspy")
    lazy_series = hs.load(tmp_path / "series.zspy", lazy=True)
    with dask.config.set(scheduler=_forbid_compute):
        lazy = lazy_series.reconstruct_sirt(iterations=ITERATIONS, gaussian_sigma=0.8,
                                            slices_per_block=4, padding_px=0)
    assert all(r._lazy for r in lazy)
    # two blocks of 4 slices: the y-filter (radius 3) crosses the border via map_overlap
    assert lazy[0].data.numblocks == (2, 1, 1)
    for e, lz in zip(eager, lazy):
        lz.compute()
        # Identical arithmetic per slice; SIMD lanes may round differently.
        np.testing.assert_allclose(lz.data, e.data, rtol=0, atol=1e-5 * e.data.max())
        assert (lz.metadata.Reconstruction.as_dictionary()
                == e.metadata.Reconstruction.as_dictionary())


def test_lazy_non_finite_intensities_fail_at_compute(series):
    maps = [np.asarray(m.data, dtype=float) for m in series.get_lines_intensity()]
    maps[0][2, 1, 5] = np.inf
    lazy = series.as_lazy().reconstruct_sirt(
        iterations=ITERATIONS, intensities=[dask.array.from_array(m) for m in maps],
        xray_lines=["Ag_La", "Au_Ma"])
    with pytest.raises(ValueError, match="NaN or infinite"):
        lazy[0].compute()


def test_distributed_equals_eager(series):
    distributed = pytest.importorskip("distributed")
    eager = series.reconstruct_sirt(iterations=ITERATIONS)
    lazy = series.as_lazy().reconstruct_sirt(iterations=ITERATIONS, slices_per_block=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        results = client.compute([r.data for r in lazy], sync=True)
    for e, d in zip(eager, results):
        np.testing.assert_allclose(d, e.data, rtol=0, atol=1e-5 * e.data.max())


def test_gaussian_filter_matches_scipy(series):
    windows = series.estimate_integration_windows(xray_lines=["Ag_La"])
    (intensity,) = series.get_lines_intensity(["Ag_La"], integration_windows=windows)
    filtered = ndi.gaussian_filter(intensity.data.astype(np.float32), sigma=(0.9, 0, 0.9))
    by_hand = series.reconstruct_sirt(iterations=ITERATIONS, intensities=[filtered],
                                      xray_lines=["Ag_La"])
    by_option = series.reconstruct_sirt(iterations=ITERATIONS, xray_lines=["Ag_La"],
                                        gaussian_sigma={"tilt": 0.9, "x": 0.9})
    np.testing.assert_allclose(by_option[0].data, by_hand[0].data, rtol=1e-5,
                               atol=1e-5 * by_hand[0].data.max())
    assert by_option[0].metadata.Reconstruction.gaussian_sigma.as_dictionary() == {
        "tilt": 0.9, "x": 0.9}


@pytest.mark.parametrize("lazy", [False, True])
def test_user_intensities_equal_integration(lazy):
    series = make_series(lazy=lazy)
    maps = series.get_lines_intensity(integration_windows=2.0)
    from_maps = series.reconstruct_sirt(iterations=ITERATIONS, intensities=maps)
    integrated = series.reconstruct_sirt(iterations=ITERATIONS)
    for a, b in zip(from_maps, integrated):
        assert a.metadata.Reconstruction.intensities.source == "user"
        np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
    arrays = [np.asarray(m.data) for m in maps]
    named = series.reconstruct_sirt(iterations=ITERATIONS, intensities=arrays,
                                    xray_lines=["Ag_La", "Au_Ma"])
    assert named[1].metadata.Sample.xray_lines == ["Au_Ma"]


def test_rotation_axis_x_is_the_transposed_problem(series):
    reference = series.reconstruct_sirt(iterations=ITERATIONS)
    swapped = series.deepcopy()
    swapped.axes_manager["x"].name = "tmp"
    swapped.axes_manager["y"].name = "x"
    swapped.axes_manager["tmp"].name = "y"
    rec = swapped.reconstruct_sirt(iterations=ITERATIONS, rotation_axis="x")
    assert rec[0].axes_manager.navigation_axes[0].name == "x"
    assert rec[0].metadata.Reconstruction.rotation_axis == "x"
    np.testing.assert_array_equal(rec[0].data, reference[0].data)


@pytest.mark.parametrize("lazy", [False, True])
def test_single_slice_series(lazy):
    from hyperspy_hebt.simulation import project_volume, synthetic_tilt_series

    core, shell = core_shell_phantom(20)
    series = synthetic_tilt_series(
        {"Ag_La": 30 * project_volume(0.2 * core + 0.8 * shell, TILTS)}, TILTS,
        energy_axis_kev=(0.0, 0.02, 300), lazy=lazy,
    )
    (rec,) = series.reconstruct_sirt(iterations=ITERATIONS)
    assert rec.axes_manager.navigation_dimension == 0
    assert rec.data.shape == (20, 20)


@pytest.mark.parametrize("slices_per_block", [1, 8])
def test_fewer_slices_than_the_filter_halo(slices_per_block):
    """Two slices, sigma 0.8 along them (a halo of 3): dask refused the overlap ("depth 3
    is larger than your array 2") and the reconstruct command stopped on such a series.
    Lazy now equals eager, which is scipy's filter of the whole array."""
    from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

    acquisition = simulate_acquisition(core_shell_particle(16, 2, pixel_size_nm=3.0),
                                       ["Ag_La"], energy_axis_kev=(0.0, 0.02, 200))
    series = acquisition.series
    options = dict(iterations=ITERATIONS, gaussian_sigma={"y": 0.8, "x": 0.8})
    eager = series.reconstruct_sirt(**options)
    lazy = series.as_lazy().reconstruct_sirt(slices_per_block=slices_per_block, **options)
    np.testing.assert_allclose(np.asarray(lazy[0].data), eager[0].data, rtol=0,
                               atol=1e-5 * eager[0].data.max())


def test_relaxation_and_iterations_recorded(series):
    rec = series.reconstruct_sirt(iterations=7, relaxation=1.5, xray_lines=["Au_Ma"])
    assert len(rec) == 1
    assert rec[0].metadata.Reconstruction.iterations == 7
    assert rec[0].metadata.Reconstruction.relaxation == 1.5


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(iterations=0), ValueError, "iterations must be a positive integer"),
        (dict(relaxation=2.5), ValueError, "relaxation"),
        (dict(rotation_axis="z"), ValueError, r"rotation_axis='z' must name exactly one"),
        (dict(xray_lines=["Ag_Ka"]), ValueError, r"\['Ag_Ka'\] are not within the energy axis"),
        (dict(xray_lines="Ag_La"), TypeError, "list of line names"),
        (dict(intensities=[np.zeros((9, 3, 15))], xray_lines=["Ag_La"]), ValueError,
         r"intensities\[0\] has data shape \(9, 3, 15\)"),
        (dict(intensities=[np.zeros((9, 3, 16))]), ValueError, "pass xray_lines"),
        (dict(intensities=[np.zeros((9, 3, 16))], xray_lines=["Ag_La", "Au_Ma"]), ValueError,
         "2 names for 1 intensities"),
        (dict(intensities=[np.full((9, 3, 16), np.nan)], xray_lines=["Ag_La"]), ValueError,
         "NaN"),
        (dict(intensities=["Ag"], xray_lines=["Ag_La"]), TypeError, "signal or an array"),
        (dict(gaussian_sigma=-1), ValueError, "gaussian_sigma must be a finite number >= 0"),
        (dict(gaussian_sigma={"energy": 1.0}), ValueError, "keys must be navigation axis names"),
        (dict(gaussian_sigma="wide"), TypeError, "gaussian_sigma must be a number"),
        (dict(integration_windows=[[2.9, 3.1]]), ValueError, r"shape \(2, 2\)"),
        (dict(background_windows="yes"), ValueError, "background_windows must be None, 'auto'"),
        (dict(background_windows=[[1, 2, 3, 4]]), ValueError, r"shape \(2, 4\)"),
        (dict(slices_per_block=0), ValueError, "slices_per_block"),
    ],
)
def test_errors(series, kwargs, error, message):
    data = series.data.copy()
    with pytest.raises(error, match=message):
        series.reconstruct_sirt(**kwargs)
    np.testing.assert_array_equal(series.data, data)


def test_error_without_lines_or_tilt_axis(series):
    bare = series.deepcopy()
    del bare.metadata.Sample
    with pytest.raises(ValueError, match="add_elements"):
        bare.reconstruct_sirt()
    untitled = series.deepcopy()
    untitled.axes_manager["tilt"].name = "angle"
    with pytest.raises(ValueError, match="No navigation axis is named 'tilt'"):
        untitled.reconstruct_sirt()


def test_error_non_uniform_scan_axis(series):
    bent = series.deepcopy()
    bent.axes_manager["x"].convert_to_non_uniform_axis()
    axis = bent.axes_manager["x"]
    axis.axis = (axis.axis ** 1.01 if axis.axis.min() > 0
                 else np.cumsum(np.linspace(1, 2, axis.size)))
    with pytest.raises(ValueError, match="scan axis 'x' must be uniform"):
        bent.reconstruct_sirt()


def test_projector_built_once_for_many_blocks():
    """The system matrix is cached per process: blocks reuse it, not rebuild it."""
    from hyperspy_hebt.tomography import get_projector

    series = make_series(n_x=10, n_slices=6, tilts=np.array([-41.0, -13.0, 7.0, 29.0, 53.0]))
    get_projector.cache_clear()
    rec = series.as_lazy().reconstruct_sirt(iterations=3, slices_per_block=1)
    assert rec[0].data.numblocks[0] == 6
    dask.compute(*[r.data for r in rec], scheduler="threads")
    info = get_projector.cache_info()
    assert info.misses == 1 and info.hits >= 11  # 2 lines x 6 blocks, one build


def test_window_overlaps_and_negative_maps_are_reported(series, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="hyperspy_hebt"):
        series.reconstruct_sirt(iterations=2, integration_windows=2.0)
    # Au Mb (2.20 keV) lies inside the 2-FWHM window of Au Ma (2.12 keV).
    assert "integration window of Au_Ma" in caplog.text and "Au_Mb" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hyperspy_hebt"):
        series.reconstruct_sirt(iterations=2, integration_windows=1.0)
    assert not caplog.records  # 1-FWHM windows stay clear of the neighbours
    caplog.clear()
    # Background windows put on the peak tops: "background" above the mean peak level.
    on_peaks = [[e - 0.01, e + 0.01, e - 0.01, e + 0.01] for e in (2.9844, 2.1229)]
    with caplog.at_level(logging.WARNING, logger="hyperspy_hebt"):
        # Negative in total, the map is refused now (issue 13), after the warnings.
        with pytest.raises(ValueError, match="The Ag_La map is negative in total"):
            series.reconstruct_sirt(iterations=2, integration_windows=1.0,
                                    background_windows=on_peaks)
    assert "background window of Ag_La" in caplog.text  # sits on Ag La itself
    assert "background-subtracted map of Ag_La is negative" in caplog.text


def test_normalise_tilts_undoes_shadowing():
    from hyperspy_hebt.simulation import core_shell_particle, simulate_acquisition

    tilts = np.linspace(-70, 70, 15)
    shadow = 1 - 0.4 * np.clip(np.sin(np.deg2rad(tilts)), 0, None)
    particle = core_shell_particle(24, 2, pixel_size_nm=3.0)
    clean = simulate_acquisition(particle, ["Ag_La", "Au_Ma"], tilt_angles_deg=tilts,
                                 energy_axis_kev=(0.0, 0.02, 200))
    shadowed = simulate_acquisition(particle, ["Ag_La", "Au_Ma"], tilt_angles_deg=tilts,
                                    energy_axis_kev=(0.0, 0.02, 200), eds_tilt_factors=shadow)
    kwargs = dict(iterations=30, integration_windows=1.0)
    from hyperspy_hebt.simulation import alloy_density

    reference = particle.weight_fractions["Ag"] * alloy_density(particle.weight_fractions)
    plain = shadowed.series.reconstruct_sirt(**kwargs)[0].data
    fixed = shadowed.series.reconstruct_sirt(normalise_tilts=True, **kwargs)
    factors = np.array(fixed[0].metadata.Reconstruction.intensities.tilt_normalisation)
    # The factors follow 1 / shadowing up to a constant (Poisson noise: 3 %).
    np.testing.assert_allclose(factors * shadow / np.mean(factors * shadow), 1, atol=0.03)

    def error(volume):
        scale = (volume * reference).sum() / (volume**2).sum()
        return np.linalg.norm(scale * volume - reference) / np.linalg.norm(reference)

    unshadowed = clean.series.reconstruct_sirt(**kwargs)[0].data
    # Relative error against the phantom, 15 tilts of a 24-px particle: measured 0.263
    # without shadowing, 0.368 shadowed, 0.267 shadowed and normalised.
    assert error(fixed[0].data) < 1.05 * error(unshadowed)
    assert error(plain) > 1.2 * error(unshadowed)
    with pytest.raises(ValueError, match="normalise them first"):
        shadowed.series.reconstruct_sirt(iterations="auto", normalise_tilts=True)


def test_thickness_holds_the_reconstruction_in_the_slab(series):
    """thickness_nm: voxels farther than half of it from z = 0 stay 0, eager and lazy,
    SIRT and HEBT, recorded; bad values are refused."""
    scale = series.axes_manager["x"].scale  # nm per pixel
    rec = series.reconstruct_sirt(iterations=5, thickness_nm=6 * scale, padding_px=0)
    z = rec[0].axes_manager["z"].axis / scale
    outside = np.abs(z) > 3 + 1e-6
    assert np.all(rec[0].data[:, outside, :] == 0) and rec[0].data[:, ~outside, :].max() > 0
    record = rec[0].metadata.Reconstruction
    assert record.thickness_nm == pytest.approx(6 * scale) and record.thickness_px == 6
    assert record.support.startswith("slab")
    lazy = series.as_lazy().reconstruct_sirt(iterations=5, thickness_nm=6 * scale,
                                             padding_px=0)
    np.testing.assert_allclose(lazy[0].data.compute(), rec[0].data, rtol=0,
                               atol=1e-5 * rec[0].data.max())
    adf = series.get_lines_intensity()[0].data * 10.0
    hebt = series.reconstruct_hebt(adf, iterations=5, thickness_nm=6 * scale, padding_px=0)
    assert np.all(hebt[0].data[:, outside, :] == 0)
    assert series.reconstruct_sirt(iterations=5)[0].metadata.Reconstruction.support.startswith(
        "none")
    for bad, error in ((0.0, ValueError), (-5.0, ValueError), ("thin", TypeError),
                       (1e6, ValueError), (0.1 * scale, ValueError)):
        with pytest.raises(error, match="thickness_nm"):
            series.reconstruct_sirt(iterations=2, thickness_nm=bad)
