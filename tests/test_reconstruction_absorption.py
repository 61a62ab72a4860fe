"""Absorption-corrected reconstructions through the signal methods (_reconstruction.absorption,
detectors): simulated spectra of an absorbing grain, and the detector geometry
the real Bruker and Velox files carry."""

import shutil

import numpy as np
import pytest
from helpers import INSTRUMENT_FILES, absorbed_grain
from scipy import ndimage

from hyperspy_hebt._reconstruction.intensities import window_shares
from hyperspy_hebt.detectors import checked_detectors, detectors_of
from hyperspy_hebt.io import load_tilt_series
from hyperspy_hebt.physics.absorption import attenuation_per_px, mass_attenuation_table
from hyperspy_hebt.simulation import (
    attenuated_projections,
    project_volume,
    synthetic_adf_series,
    synthetic_tilt_series,
    thin_film_adf_counts,
    thin_film_line_counts,
)

ELEMENTS = ["O", "Mg", "Si", "Fe"]
LINES = ["O_Ka", "Mg_Ka", "Si_Ka", "Fe_Ka"]
SUPER_X = [(45.0, 18.0), (135.0, 18.0), (225.0, 18.0), (315.0, 18.0)]
TILTS = np.linspace(-70, 70, 9)
N = 20
ENERGY_AXIS = (0.0, 0.02, 400)


class Series:
    """Spectrum-image series of the grain, absorbed toward the detectors and not absorbed."""

    def __init__(self, n=N, detectors=tuple(SUPER_X)):
        # Each detector's share of the counts, kept apart (4, slices, tilts, x) per line.
        self.phantom, counts, _, self.per_detector = absorbed_grain(
            n, tuple(TILTS), tuple(detectors), 3e9)
        ph = self.phantom
        self.absorbed = {line: s.sum(0) for line, s in self.per_detector.items()}
        self.thin = {line: project_volume(counts[line], TILTS) for line in LINES}
        adf_counts = thin_film_adf_counts(ph.weight_fractions, 200.0,
                                          pixel_size_nm=ph.pixel_size_nm,
                                          density=ph.density_g_cm3)
        self.adf = synthetic_adf_series(project_volume(adf_counts, TILTS), TILTS,
                                        pixel_size_nm=ph.pixel_size_nm, noise=False)

    def signal(self, absorbed=True, lazy=False, detector=None):
        sinograms = (self.thin if not absorbed else self.absorbed if detector is None
                     else {line: s[detector] for line, s in self.per_detector.items()})
        return synthetic_tilt_series(sinograms, TILTS,
                                     pixel_size_nm=self.phantom.pixel_size_nm,
                                     energy_axis_kev=ENERGY_AXIS, noise=False, lazy=lazy)

    def errors_wt_percent(self, fractions):
        """Phase-mean error per element (wt%), one voxel in from each phase's edge."""
        out = {}
        for name, region in self.phantom.regions.items():
            core = ndimage.binary_erosion(region)
            out[name] = {e: 100 * (float(np.asarray(fractions[j].data)[core].mean())
                                   - float(self.phantom.weight_fractions[e][region].mean()))
                         for j, e in enumerate(ELEMENTS)}
        return out


@pytest.fixture(scope="module")
def series():
    return Series()


SIRT = dict(iterations=60, xray_lines=LINES, padding_px=0, show_progressbar=False)


@pytest.mark.parametrize("lazy", [False, True])
def test_sirt_corrected_within_target(series, lazy):
    s = series.signal(lazy=lazy)
    plain = series.errors_wt_percent(s.quantify_cross_section(s.reconstruct_sirt(**SIRT)))
    recs = s.reconstruct_sirt(**SIRT, absorption_correction=True, density=3.6,
                              detectors=SUPER_X)
    fixed = series.errors_wt_percent(s.quantify_cross_section(recs))
    # Uncorrected, through exspy's integration of the spectra: O -3.5 / -5.7 wt%, Fe +2.2
    # / +5.4 (matrix / inclusion).
    assert plain["matrix"]["O"] < -2.5 and plain["inclusion"]["Fe"] > 3
    # Issue 15's target is 1.5 wt% for every element in every phase; measured <= 1.03
    # (inclusion O), where the same reconstruction of unabsorbed spectra reads 0.69 low.
    for phase, by_element in fixed.items():
        for element, error in by_element.items():
            assert abs(error) < 1.5, (phase, element, error)
    # The passes are in memory; the result is the ordinary kernels' (lazy stays lazy).
    assert all(r._lazy == lazy for r in recs)
    record = recs[0].metadata.Reconstruction.Absorption
    assert 1 <= record.outer_iterations <= 4 and record.largest_change <= 0.002
    assert record.mode.startswith("fast")
    # 20 voxels: 10 coarse voxels across are too few (only 0.53 of the grain a voxel
    # inside its surface there; O then read 1.8 wt% low): the passes ran on the fine grid.
    assert record.ray_factor_grid_coarsening == 1
    assert record.composition_grid.startswith("the reconstruction's own grid: on one 2x")
    assert len(record.mean_fractions_per_pass) == record.outer_iterations + 1
    if not lazy:
        exact = s.reconstruct_sirt(**SIRT, absorption_correction="exact", density=3.6,
                                   detectors=SUPER_X)
        exact_record = exact[0].metadata.Reconstruction.Absorption
        assert exact_record.mode == "exact" and exact_record.ray_factor_grid_coarsening == 1
        assert exact_record.composition_grid.endswith("(absorption_correction='exact')")
    assert record.detectors.azimuth_deg == [45.0, 135.0, 225.0, 315.0]
    assert record.detectors.source == "given (equal shares)"
    assert record.density_g_cm3 == 3.6
    shares = record.mean_transmitted_share.as_dictionary()
    assert shares["O_Ka"] < shares["Mg_Ka"] < shares["Si_Ka"] < shares["Fe_Ka"] <= 1
    # The user's signal is not modified.
    assert "Absorption" not in s.metadata.as_dictionary().get("Reconstruction", {})


POISSON = {
    "ML-EM": ("reconstruct_mlem", dict(iterations=60)),
    "Poisson-TV": ("reconstruct_poisson_tv", dict(iterations=200, tv_weight=0.003)),
    "Joint Poisson-TV": ("reconstruct_poisson_tv", dict(iterations=200, tv_weight=0.003,
                                                        joint_tv=True)),
    "Fused": ("reconstruct_fused", dict(iterations=200, tv_weight=0.003)),
}


@pytest.mark.parametrize("algorithm", list(POISSON))
def test_poisson_solvers_corrected_as_if_unabsorbed(series, algorithm):
    """The Poisson solvers with the ray factors as their likelihood's weights
    (Problem.line_weights). Against the same method on the unabsorbed spectra (its own
    blur on the 20-voxel grain's inclusion left aside: ML-EM at 60 iterations reads the
    inclusion's O 1.41 wt% low unabsorbed), measured: within 0.34 wt% (ML-EM), 0.11
    (Poisson + TV), 0.31 (joint) and 0.29 (the fused model, with the grain's unabsorbed
    ADF); uncorrected, the matrix's O is 3.2-3.3 low of it."""
    method, settings = POISSON[algorithm]
    options = dict(xray_lines=LINES, padding_px=0, show_progressbar=False, **settings)
    absorbed, thin = series.signal(), series.signal(absorbed=False)
    adf = (series.adf,) if algorithm == "Fused" else ()

    def errors(signal, recs):
        return series.errors_wt_percent(signal.quantify_cross_section(recs))

    reference = errors(thin, getattr(thin, method)(*adf, **options))
    plain = errors(absorbed, getattr(absorbed, method)(*adf, **options))
    recs = getattr(absorbed, method)(*adf, absorption_correction=True, density=3.6,
                                     detectors=SUPER_X, **options)
    fixed = errors(absorbed, recs)
    assert recs[0].metadata.Reconstruction.algorithm == algorithm
    assert plain["matrix"]["O"] - reference["matrix"]["O"] < -2.5
    for phase, by_element in fixed.items():
        for element, error in by_element.items():
            assert abs(error - reference[phase][element]) < 0.5, (phase, element, error)
    assert 1 <= recs[0].metadata.Reconstruction.Absorption.outer_iterations <= 4


def test_poisson_solvers_corrected_lazy_equal_eager(series):
    """Each line's own ray weights travel with its maps through the lazy blocks (measured:
    equal for joint TV; 3e-7 of the maximum for the fused model)."""
    options = dict(xray_lines=LINES, padding_px=0, show_progressbar=False, iterations=50,
                   tv_weight=0.003, absorption_correction=True, density=3.6,
                   detectors=SUPER_X)
    runs = (("reconstruct_poisson_tv", (), dict(joint_tv=True)),
            ("reconstruct_fused", (series.adf,), {}))
    for method, args, extra in runs:
        eager = getattr(series.signal(), method)(*args, **options, **extra)
        lazy = getattr(series.signal(lazy=True), method)(*args, slices_per_block=5,
                                                         **options, **extra)
        for e, z in zip(eager, lazy):
            assert z._lazy
            np.testing.assert_allclose(np.asarray(z.data), e.data, rtol=0,
                                       atol=1e-5 * e.data.max())


def test_poisson_solvers_refuse_what_the_correction_cannot_do_yet(series):
    s = series.signal()
    options = dict(xray_lines=LINES, padding_px=0, absorption_correction=True, density=3.6,
                   detectors=SUPER_X)
    with pytest.raises(ValueError, match="needs numbers for iterations and tv_weight"):
        s.reconstruct_poisson_tv(iterations=20, **options)  # tv_weight "auto"
    with pytest.raises(ValueError, match="needs numbers for iterations and tv_weight"):
        s.reconstruct_mlem(iterations="auto", **options)
    with pytest.raises(ValueError, match="uncertainty with absorption_correction"):
        s.reconstruct_mlem(iterations=5, uncertainty=3, **options)
    with pytest.raises(ValueError, match="needs numbers for iterations and tv_weight"):
        s.reconstruct_fused(series.adf, iterations=20, **options)


def test_corrected_lazy_series_runs_on_a_cluster(series):
    """The corrected reconstruction of a lazy series is an ordinary graph (the passes ran
    when it was built): computed by a dask.distributed cluster, it equals the eager one."""
    distributed = pytest.importorskip("distributed")
    arguments = dict(SIRT, absorption_correction=True, density=3.6, detectors=SUPER_X,
                     slices_per_block=4)
    eager = series.signal().reconstruct_sirt(**arguments)
    lazy = series.signal(lazy=True).reconstruct_sirt(**arguments)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        results = client.compute([r.data for r in lazy], sync=True)
    for e, d in zip(eager, results):
        np.testing.assert_allclose(d, e.data, rtol=0, atol=1e-5 * e.data.max())


@pytest.mark.slow
def test_composition_passes_on_a_coarser_grid_agree_with_the_fine_ones():
    """A 40-voxel grain (20 coarse voxels across, 0.74 of it a voxel inside its surface
    there), one detector, lazy: the default runs the composition passes on the 2x coarser
    grid and agrees with "exact" (passes on the fine grid) within 0.09 wt% (measured; 0.3
    asserted). Both are within 0.7 wt% of the same SIRT of unabsorbed spectra (the
    inclusion's Fe and Mg; 1.0 asserted), from 6.2 wt% (O) uncorrected. (At 32 voxels,
    0.69 and so on the fine grid by default, the two agreed within 0.13 wt%.)"""
    detectors = [(0.0, 18.0)]
    grain = Series(40, tuple(detectors))
    s = grain.signal(lazy=True)
    thin = grain.signal(absorbed=False)
    reference = grain.errors_wt_percent(thin.quantify_cross_section(
        thin.reconstruct_sirt(**SIRT)))
    plain = grain.errors_wt_percent(s.quantify_cross_section(s.reconstruct_sirt(**SIRT)))
    fast, exact = (s.reconstruct_sirt(**SIRT, absorption_correction=mode, density=3.6,
                                      detectors=detectors) for mode in (True, "exact"))
    record = fast[0].metadata.Reconstruction.Absorption
    assert record.ray_factor_grid_coarsening == 2 and fast[0]._lazy
    assert record.composition_grid.startswith("2x coarser than the reconstruction's")
    assert exact[0].metadata.Reconstruction.Absorption.ray_factor_grid_coarsening == 1
    errors = [grain.errors_wt_percent(s.quantify_cross_section(r)) for r in (fast, exact)]
    assert plain["inclusion"]["O"] - reference["inclusion"]["O"] < -5
    for phase in ("matrix", "inclusion"):
        for element in ELEMENTS:
            assert abs(errors[0][phase][element] - errors[1][phase][element]) < 0.3
            for e in errors:
                assert abs(e[phase][element] - reference[phase][element]) < 1.0, (
                    phase, element)


def test_detectors_kept_apart_agree_once_corrected(series):
    """Each Super-X quadrant's own series: absorption depends on where the detector looks
    from, so their compositions disagree before correction (a diagnostic of it)."""
    before, after = [], []
    for index, angles in enumerate(SUPER_X):
        s = series.signal(detector=index)
        before.append(series.errors_wt_percent(
            s.quantify_cross_section(s.reconstruct_sirt(**SIRT))))
        after.append(series.errors_wt_percent(s.quantify_cross_section(s.reconstruct_sirt(
            **SIRT, absorption_correction=True, density=3.6, detectors=[angles]))))

    def spread(results, phase, element):
        values = [r[phase][element] for r in results]
        return max(values) - min(values)

    # The inclusion sits off centre: its O and Fe read differently from each side
    # (measured spread 1.9 and 2.3 wt% before); after correction every detector is within
    # 1.3 wt% of the truth and the four agree within 0.15 wt% (0.4 asserted).
    assert spread(before, "inclusion", "O") > 1.0 and spread(before, "inclusion", "Fe") > 1.0
    for phase in ("matrix", "inclusion"):
        for element in ELEMENTS:
            assert spread(after, phase, element) < 0.4, (phase, element)
            assert all(abs(r[phase][element]) < 1.5 for r in after)


def test_hebt_corrected_matches_hebt_without_absorption(series):
    hebt = dict(alpha=0.8, iterations=100, xray_lines=LINES, padding_px=0,
                response_ratios="physics", show_progressbar=False)
    s, thin = series.signal(), series.signal(absorbed=False)
    reference = series.errors_wt_percent(
        thin.quantify_cross_section(thin.reconstruct_hebt(series.adf, **hebt)))
    plain = series.errors_wt_percent(
        s.quantify_cross_section(s.reconstruct_hebt(series.adf, **hebt)))
    fixed = series.errors_wt_percent(s.quantify_cross_section(
        s.reconstruct_hebt(series.adf, **hebt, absorption_correction=True, density=3.6,
                           detectors=SUPER_X)))
    # HEBT has its own error at the small inclusion's edge (up to 3 wt% here, with or
    # without absorption); the correction must remove what absorption adds: measured
    # within 0.33 wt% of HEBT on unabsorbed spectra (the composition passes are SIRT),
    # from 3-8 wt% (O, Fe) uncorrected.
    for phase in ("matrix", "inclusion"):
        assert abs(plain[phase]["O"] - reference[phase]["O"]) > 2.5
        for element in ELEMENTS:
            assert abs(fixed[phase][element] - reference[phase][element]) < 0.5, (
                phase, element)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"iterations": "auto", "absorption_correction": True}, ValueError, "numbers for"),
    ({"density": 3.0}, ValueError, "absorption_correction=True"),
    ({"absorption_correction": True, "density": -1.0}, ValueError, "density"),
    ({"absorption_correction": True, "density": "3"}, ValueError, "density"),
    ({"absorption_correction": "yes"}, TypeError, "True, False or 'exact'"),
    ({"absorption_correction": True, "detectors": [(45, 95)]}, ValueError, "detectors"),
    ({"absorption_correction": True, "detectors": "superx"}, ValueError, "detectors"),
    ({"absorption_correction": True, "xray_lines": ["Fe_Ka", "Fe_La"]}, ValueError,
     "one line per element"),
])
def test_bad_absorption_arguments_are_refused(series, kwargs, error, match):
    arguments = dict(SIRT) | kwargs
    with pytest.raises(error, match=match):
        series.signal().reconstruct_sirt(**arguments)


def test_uncalibrated_scan_axis_is_refused(series):
    s = series.signal()
    s.axes_manager["x"].units = "px"
    with pytest.raises(ValueError, match="pixel size"):
        s.reconstruct_sirt(**SIRT, absorption_correction=True, density=3.6, detectors=SUPER_X)


def test_checked_detectors():
    assert checked_detectors(None) is None
    given = checked_detectors([(45, 18), [135.0, 18.0]])
    assert given.angles_deg == ((45.0, 18.0), (135.0, 18.0)) and given.shares == (0.5, 0.5)
    for bad in ([], [(45,)], [(45, 0)], [(np.nan, 18)], [(True, 18)], 18.0):
        with pytest.raises(ValueError, match="detectors"):
            checked_detectors(bad)


def _copies(tmp_path, name, suffix):
    source = INSTRUMENT_FILES / name
    if not source.exists():
        pytest.skip(f"{source} is not here")
    for angle in (-20, 20):
        shutil.copy(source, tmp_path / f"tilt_{angle}.{suffix}")
    return str(tmp_path / f"tilt_*.{suffix}")


def test_velox_super_x_detectors_come_from_the_files_own_list(tmp_path):
    pytest.importorskip("sparse")
    pattern = _copies(tmp_path, "velox_SI_16x16.emd", "emd")
    series, _ = load_tilt_series(pattern, tilt_from="filename")
    found = detectors_of(series)
    # The file lists four analytical detectors at 18 deg (radians in the file); the
    # reader's metadata says one at 35 deg, azimuth 0 (its default), which is not used.
    assert found.angles_deg == ((45.0, 18.0), (135.0, 18.0), (225.0, 18.0), (315.0, 18.0))
    assert found.shares == pytest.approx((0.25,) * 4)
    assert "Velox" in found.source and "not used" in found.source
    separate, _ = load_tilt_series(pattern, tilt_from="filename", detectors="separate")
    with pytest.raises(ValueError, match="pass detectors=.*45.0, 18.0"):
        detectors_of(separate[0])
    assert detectors_of(separate[0], [(135, 18)]).angles_deg == ((135.0, 18.0),)


def test_bruker_detector_comes_from_metadata(tmp_path):
    series, _ = load_tilt_series(_copies(tmp_path, "test_TEM.bcf", "bcf"), tilt_from="filename")
    found = detectors_of(series)
    assert found.angles_deg == ((45.0, 18.0),) and found.shares == (1.0,)
    assert "SuperX" in found.source


def test_no_detector_geometry_is_refused(series):
    s = series.signal()
    s.metadata.Acquisition_instrument.TEM.Detector.EDS.elevation_angle = None
    with pytest.raises(ValueError, match="pass detectors="):
        detectors_of(s)


def test_correction_that_would_not_fit_in_memory_is_refused(series, monkeypatch):
    from hyperspy_hebt._reconstruction import absorption

    monkeypatch.setattr(absorption, "available_memory_bytes", lambda: 2**20)
    with pytest.raises(MemoryError, match=r"GiB here \(8 copies.*bin the series"):
        series.signal().reconstruct_sirt(**SIRT, absorption_correction=True, density=3.6,
                                         detectors=SUPER_X)


def test_exspy_2d_correction_cannot_be_right_on_a_particle(series):
    """exspy's thickness-based correction assumes a slab: on a grain it over-corrects.

    The zero-tilt map quantified by exspy (cross sections, absorption_correction with the
    mass thickness it finds from the counts) against the grain's true composition along
    each beam path (mass-weighted), beside the 3D correction projected the same way.
    """
    from hyperspy_hebt.physics import atomic_weight, eds_factor

    s, ph = series.signal(), series.phantom
    single = s.inav[:, :, int(np.argmin(np.abs(TILTS)))]
    single.set_signal_type("EDS_TEM")
    # The simulation's dose (3e9 electrons per pixel) as exspy reads it: current x time.
    single.metadata.set_item("Acquisition_instrument.TEM.beam_current", 0.1 * 3e9 / 3.121e8)
    single.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.live_time", 0.5)
    intensities = single.get_lines_intensity(xray_lines=LINES)
    # Each map divided by the share of its line its 2-FWHM window keeps (0.96-0.98), as
    # quantify_cross_section does: exspy's factors are for whole lines.
    order = [i.metadata.Sample.xray_lines[0] for i in intensities]
    windows = single.estimate_integration_windows(windows_width=2.0, xray_lines=order)
    for image, share in zip(intensities, window_shares(single, order, windows, None)[0]):
        image.data = image.data / share
    # exspy's cross sections are per detector: sigma omega p eps (Omega / 4 pi), in barn.
    cross_sections = [eds_factor(line, 200.0) * atomic_weight(e) * 0.7 / (4 * np.pi)
                      for line, e in zip(LINES, ELEMENTS)]
    composition, _ = single.quantification(
        intensities, method="cross_section", factors=cross_sections,
        absorption_correction=True, take_off_angle=18.0, probe_area=ph.pixel_size_nm**2,
        composition_units="weight", show_progressbar=False)
    order = [i.metadata.Sample.xray_lines[0] for i in intensities]
    density = ph.density_g_cm3
    mass = density.sum(axis=1)
    path = mass > 0.3 * mass.max()  # beam positions mostly through the grain

    def along_beam(volume):
        return (volume * density).sum(axis=1) / np.where(mass > 0, mass, 1)

    fixed = s.quantify_cross_section(s.reconstruct_sirt(
        **SIRT, absorption_correction=True, density=3.6, detectors=SUPER_X))
    for j, (line, element) in enumerate(zip(LINES, ELEMENTS)):
        truth = along_beam(ph.weight_fractions[element])[path]
        exspy_error = 100 * float(np.mean(composition[order.index(line)].data[path] / 100
                                          - truth))
        ours = 100 * float(np.mean(along_beam(np.asarray(fixed[j].data))[path] - truth))
        # Measured: exspy O +8.3, Fe -6.2 wt% (its slab sends every X-ray through the
        # whole thickness at 18 deg, 3x longer than the grain's sideways way out; the
        # uncorrected map is O -3.4, Fe +2.5); the 3D correction within 0.35 wt%.
        assert abs(ours) < 0.5, (element, ours)
        if element in ("O", "Fe"):
            assert abs(exspy_error) > 4 * abs(ours) + 2, (element, exspy_error)


@pytest.mark.slow
def test_lamella_wider_than_the_scan_absorbs_beyond_it():
    """A 200 nm lamella twice as wide as the scan, detectors across the tilt axis: X-rays
    leave sideways at 18 deg through the lamella beyond the scan. The correction's passes
    keep the grid's padding columns, so that material absorbs (cropped to the scan, the
    first version left O 1.6 and Fe 1.1 wt% off)."""
    from hyperspy_hebt.physics import atomic_weight

    n_slices, depth, wide, scan, pixel_nm = 4, 24, 56, 24, 20.0
    pad = (wide - scan) // 2
    detectors = [(0.0, 18.0), (180.0, 18.0)]
    formula = {"Mg": 1.6, "Fe": 0.4, "Si": 1.0, "O": 4.0}
    total = sum(atomic_weight(e) * n for e, n in formula.items())
    truth = {e: atomic_weight(e) * n / total for e, n in formula.items()}
    lamella = np.zeros((n_slices, depth, wide), bool)
    lamella[:, depth // 2 - 5:depth // 2 + 5] = True
    fractions = {e: np.where(lamella, truth[e], 0.0) for e in ELEMENTS}
    density = np.where(lamella, 3.45, 0.0)
    counts = thin_film_line_counts(fractions, LINES, 200.0, pixel_size_nm=pixel_nm,
                                   density=density, dose_electrons=3e9)
    table = mass_attenuation_table(LINES, ELEMENTS)
    stacked = np.stack([fractions[e] for e in ELEMENTS])
    tilts = np.linspace(-60, 60, 9)
    absorbed = {line: attenuated_projections(
        counts[line], attenuation_per_px(stacked, density, table[i], pixel_nm), tilts,
        detectors, step_px=0.5).sum(0)[..., pad:pad + scan] for i, line in enumerate(LINES)}
    thin = {line: project_volume(counts[line], tilts)[..., pad:pad + scan] for line in LINES}
    options = dict(iterations=100, xray_lines=LINES, padding_px=pad, thickness_nm=200.0,
                   show_progressbar=False)
    core = lamella[..., pad:pad + scan].copy()
    core[:, depth // 2 - 5] = core[:, depth // 2 + 4] = False  # faces blur by a voxel

    def errors(series, **extra):
        maps = series.quantify_cross_section(series.reconstruct_sirt(**options, **extra))
        assert maps[0].data.shape == (n_slices, depth, scan)  # cut back to the scan
        return {e: 100 * (float(np.asarray(maps[j].data)[core].mean()) - truth[e])
                for j, e in enumerate(ELEMENTS)}

    def series_of(sinograms):
        return synthetic_tilt_series(sinograms, tilts, pixel_size_nm=pixel_nm,
                                     energy_axis_kev=ENERGY_AXIS, noise=False)

    reference = errors(series_of(thin))
    plain = errors(series_of(absorbed))
    fixed = errors(series_of(absorbed), absorption_correction=True, density=3.45,
                   detectors=detectors)
    # Measured: uncorrected O -4.4, Fe +2.9 wt%; corrected within 0.1 wt% of the same
    # reconstruction of unabsorbed spectra (O -0.27, Fe +0.15 from the truth; 0.01 with
    # neither of the correction's shortcuts).
    assert plain["O"] - reference["O"] < -3 and plain["Fe"] - reference["Fe"] > 2
    for element in ELEMENTS:
        assert abs(fixed[element] - reference[element]) < 0.3, element


@pytest.mark.slow
def test_exspy_and_3d_correction_agree_on_a_uniform_slab():
    """On a uniform slab, infinite across, exspy's thickness-based correction is exact, and
    the 3D correction must agree with it.

    A 150 nm olivine slab; detectors along the tilt axis (azimuths 90 and 270, 18 deg),
    where X-rays leave through the slab's faces after up to 4.3 thicknesses sideways (at
    45 deg tilt). The series is the infinite slab's, analytic: every ray's thin-film
    counts times ``(1 - exp(-chi)) / chi``, ``chi = mu t / |d_z|`` (``d_z`` the exit
    direction's component along the slab normal). The 3D correction is judged in the
    middle slices, whose paths stay inside the grid; exspy on the zero-tilt map.
    """
    from hyperspy_hebt.physics import atomic_weight, eds_factor
    from hyperspy_hebt.tomography.attenuation import exit_direction

    n_slices, depth, thick, scan, pixel_nm = 64, 14, 6, 16, 25.0
    pad = 12  # beyond the scan: the slab rays cross at 45 deg (6 px sideways), and more
    wide = scan + 2 * pad + 16
    detectors = [(90.0, 18.0), (270.0, 18.0)]
    formula = {"Mg": 1.6, "Fe": 0.4, "Si": 1.0, "O": 4.0}
    total = sum(atomic_weight(e) * n for e, n in formula.items())
    truth = {e: atomic_weight(e) * n / total for e, n in formula.items()}
    slab = np.zeros((1, depth, wide), bool)
    slab[:, depth // 2 - thick // 2:depth // 2 + thick // 2] = True
    fractions = {e: np.where(slab, truth[e], 0.0) for e in ELEMENTS}
    density = 3.45
    counts = thin_film_line_counts(fractions, LINES, 200.0, pixel_size_nm=pixel_nm,
                                   density=np.where(slab, density, 0.0), dose_electrons=3e9)
    table = mass_attenuation_table(LINES, ELEMENTS)
    mu_per_px = table @ np.array([truth[e] for e in ELEMENTS]) * density * pixel_nm * 1e-7
    tilts = np.linspace(-45, 45, 9)
    cut = slice((wide - scan) // 2, (wide - scan) // 2 + scan)

    def kept(line_index, tilt):
        shares = []
        for angles in detectors:
            chi = mu_per_px[line_index] * thick / abs(exit_direction(tilt, *angles)[1])
            shares.append((1 - np.exp(-chi)) / chi)
        return float(np.mean(shares))

    absorbed = {}
    for i, line in enumerate(LINES):
        one_slice = project_volume(counts[line], tilts)[..., cut]  # (1, tilts, scan)
        factor = np.array([kept(i, t) for t in tilts])[None, :, None]
        absorbed[line] = np.repeat(one_slice * factor, n_slices, axis=0)
    series = synthetic_tilt_series(absorbed, tilts, pixel_size_nm=pixel_nm,
                                   energy_axis_kev=ENERGY_AXIS, noise=False)

    # exspy, zero-tilt map (as in the particle test: the dose as current x time, cross
    # sections per detector with the simulator's 0.7 sr).
    single = series.inav[:, :, int(np.argmin(np.abs(tilts)))]
    single.set_signal_type("EDS_TEM")
    single.metadata.set_item("Acquisition_instrument.TEM.beam_current", 0.1 * 3e9 / 3.121e8)
    single.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.live_time", 0.5)
    single.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.azimuth_angle", 90.0)
    single.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.elevation_angle", 18.0)
    intensities = single.get_lines_intensity(xray_lines=LINES)
    # Each map divided by the share of its line its 2-FWHM window keeps (0.96-0.98), as
    # quantify_cross_section does: exspy's factors are for whole lines.
    order = [i.metadata.Sample.xray_lines[0] for i in intensities]
    windows = single.estimate_integration_windows(windows_width=2.0, xray_lines=order)
    for image, share in zip(intensities, window_shares(single, order, windows, None)[0]):
        image.data = image.data / share
    cross_sections = [eds_factor(line, 200.0) * atomic_weight(e) * 0.7 / (4 * np.pi)
                      for line, e in zip(LINES, ELEMENTS)]
    options = dict(method="cross_section", factors=cross_sections, take_off_angle=18.0,
                   probe_area=pixel_nm**2, composition_units="weight",
                   show_progressbar=False)
    exspy_fixed, _ = single.quantification(intensities, absorption_correction=True,
                                           **options)
    exspy_plain, _ = single.quantification(intensities, absorption_correction=False,
                                           **options)

    def exspy_error(composition, element):
        values = composition[order.index(LINES[ELEMENTS.index(element)])].data / 100
        return 100 * (float(np.mean(values)) - truth[element])

    reconstruction = dict(iterations=100, xray_lines=LINES, padding_px=pad,
                          thickness_nm=thick * pixel_nm, show_progressbar=False)
    maps = series.quantify_cross_section(series.reconstruct_sirt(
        **reconstruction, absorption_correction=True, density=density, detectors=detectors))
    middle = slice(n_slices // 2 - 2, n_slices // 2 + 2)
    core = np.zeros(maps[0].data.shape, bool)
    # Inside the slab, a voxel in from its faces (every reconstruction blurs them).
    core[middle, depth // 2 - thick // 2 + 1:depth // 2 + thick // 2 - 1] = True
    for j, element in enumerate(ELEMENTS):
        ours = 100 * (float(np.asarray(maps[j].data)[core].mean()) - truth[element])
        theirs = exspy_error(exspy_fixed, element)
        # Measured (wt%, session 13, both on maps divided by their windows' shares): ours
        # O -0.08, Mg +0.07, Si +0.05, Fe -0.04; exspy's O -0.15, Mg +0.08, Si +0.07,
        # Fe +0.00 (its own mass-thickness iteration); apart by 0.07 at most. Before the
        # shares (session 12): ours O -0.23, exspy's -0.43 to -0.49. Uncorrected for
        # absorption: O -4.3, Fe +2.9. The limits leave 2-4x the measured values.
        assert abs(theirs) < 0.4, (element, theirs)
        assert abs(ours) < 0.3, (element, ours)
        assert abs(ours - theirs) < 0.2, (element, ours, theirs)
    # Neither is trivially right: uncorrected, O reads several wt% low and Fe high.
    assert exspy_error(exspy_plain, "O") < -3.0 and exspy_error(exspy_plain, "Fe") > 2.0
