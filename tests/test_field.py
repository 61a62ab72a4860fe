"""Real-data guards on the field of view: padding for objects wider than the scan, and
pixels with no valid data (after alignment) left out of every reconstruction."""

import dask.array
import numpy as np
import pytest
from helpers import count_block_reads, make_series
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperspy_hebt._reconstruction.field import edge_fraction, full_coverage_padding
from hyperspy_hebt.alignment import invalid_pixel_mask
from hyperspy_hebt.simulation import project_volume, synthetic_tilt_series
from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector, hebt, sirt

TILTS = np.linspace(-70, 70, 15)
N, SLICES = 16, 2
LINES = ["Ag_La", "Au_Ma"]
PAD = full_coverage_padding(TILTS, N, N)
RATIOS = {"Ag_La": 2.0, "Au_Ma": 3.0}


def correlation(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def lamella():
    """A 7-px-thick layer of Ag with a row of Au dots, continuing far beyond the
    16-px scan on both sides (as a FIB lamella does): the scan sees only its middle."""
    width = N + 2 * PAD
    z = np.arange(N) - (N - 1) / 2
    x = np.arange(width) - (width - 1) / 2
    layer = (np.abs(z) <= 3)[:, None] & np.ones(width, bool)
    dots = layer & (np.cos(2 * np.pi * x / 6) > 0.3) & (np.abs(z) <= 1.5)[:, None]
    ag = np.repeat((layer & ~dots)[None], SLICES, 0).astype(np.float32)
    au = np.repeat(dots[None], SLICES, 0).astype(np.float32)
    scan = slice(PAD, PAD + N)
    sinograms = {"Ag_La": 30 * project_volume(ag, TILTS)[..., scan],
                 "Au_Ma": 40 * project_volume(au, TILTS)[..., scan]}
    series = synthetic_tilt_series(sinograms, TILTS, energy_axis_kev=(0.0, 0.02, 300),
                                   noise=False)
    maps = [m.data for m in series.get_lines_intensity()]
    # ADF = sum_A r_A I_A exactly, so HEBT's model holds.
    adf = sum(RATIOS[name] * m for name, m in zip(LINES, maps))
    return {"series": series, "maps": maps, "adf": adf, "truth": (ag[..., scan], au[..., scan])}


def test_full_coverage_padding_keeps_every_ray_in_the_grid():
    assert full_coverage_padding([0.0], N, N) == 0
    # (8 + 8 sin 60) / cos 60 - 8 = 21.9 columns per side.
    assert full_coverage_padding([-60.0, 10.0], N, N) == 22
    geometry = ParallelBeamGeometry(tuple(TILTS), N, n_x=N + 2 * PAD, n_z=N)
    row_sums = get_projector(geometry).row_sums.reshape(len(TILTS), N)
    # Every ray crosses the whole slab: its path length is n_z / cos(theta). The
    # Joseph weights sum to that up to the half-pixel steps at the slab's faces.
    expected = N / np.cos(np.deg2rad(TILTS))[:, None]
    np.testing.assert_allclose(row_sums, np.broadcast_to(expected, row_sums.shape), rtol=0.07)
    unpadded = get_projector(ParallelBeamGeometry(tuple(TILTS), N)).row_sums
    assert unpadded.reshape(len(TILTS), N)[-1, 0] < 0.5 * expected[-1, 0]


def test_auto_padding_widens_the_grid_for_a_lamella_only(lamella, series):
    rec = lamella["series"].reconstruct_sirt(iterations=5)
    record = rec[0].metadata.Reconstruction
    assert record.padding_px == PAD and record.padding_reason.startswith("auto")
    assert record.edge_fraction > 0.8  # measured 0.91: the layer fills the scan
    assert rec[0].data.shape == (SLICES, N, N)  # padded columns are cropped
    particle = series.reconstruct_sirt(iterations=5)
    assert particle[0].metadata.Reconstruction.padding_px == 0
    assert particle[0].metadata.Reconstruction.edge_fraction < 0.1
    unpadded = series.reconstruct_sirt(iterations=5, padding_px=0)
    for a, b in zip(particle, unpadded):  # "auto" changes nothing on an isolated particle
        np.testing.assert_array_equal(a.data, b.data)


def test_padding_restores_a_lamella(lamella):
    series, (ag, au) = lamella["series"], lamella["truth"]
    scores = {}
    for padding in (0, "auto"):
        rec = series.reconstruct_sirt(iterations=200, padding_px=padding)
        scores[padding] = [correlation(r.data, t) for r, t in zip(rec, (ag, au))]
    # Measured correlation with the truth inside the scan (Ag, Au): unpadded 0.02 and
    # 0.70 (the mass beyond the field piles up at the edges), padded 0.66 and 0.98
    # (the +-70 degree wedge still blurs the layer along z).
    assert scores["auto"][0] > scores[0][0] + 0.4
    assert scores["auto"][1] > 0.95 > scores[0][1] + 0.1


def test_thickness_pads_less_and_reconstructs_the_layer_better(lamella):
    """Given the layer's thickness (7 px), "auto" pads only for rays through it, and the
    support keeps the wedge's streaks out of the rest of the slab."""
    series, (ag, au) = lamella["series"], lamella["truth"]
    scale = series.axes_manager["x"].scale
    free = series.reconstruct_sirt(iterations=200)
    held = series.reconstruct_sirt(iterations=200, thickness_nm=7 * scale)
    record = held[0].metadata.Reconstruction
    assert 0 < record.padding_px < PAD and "lamella's thickness" in record.padding_reason
    # Measured correlation with the truth (Ag, Au): 0.66 and 0.98 over the whole slab,
    # 0.81 and 0.99 within the thickness (padding 26 px per side instead of 38).
    for r_free, r_held, truth in zip(free, held, (ag, au)):
        assert correlation(r_held.data, truth) >= correlation(r_free.data, truth) - 0.01
    assert correlation(held[0].data, ag) > correlation(free[0].data, ag) + 0.1


def test_hebt_and_adf_sirt_take_the_padding(lamella):
    series, (_, au) = lamella["series"], lamella["truth"]
    kwargs = dict(intensities=lamella["maps"], xray_lines=LINES, iterations=200, alpha=0.5,
                  response_ratios=RATIOS)
    padded = series.reconstruct_hebt(lamella["adf"], **kwargs)
    unpadded = series.reconstruct_hebt(lamella["adf"], padding_px=0, **kwargs)
    assert padded[0].metadata.Reconstruction.padding_px == PAD
    # Measured Au correlation 0.97 padded, 0.68 not.
    assert correlation(padded[1].data, au) > correlation(unpadded[1].data, au) + 0.1
    adf = series.reconstruct_adf(lamella["adf"], iterations=20)
    assert adf.metadata.Reconstruction.padding_px == PAD and adf.data.shape == (SLICES, N, N)


def test_lazy_auto_padding_reads_the_maps_once_and_matches_eager(lamella):
    series = lamella["series"]
    eager = series.reconstruct_sirt(iterations=20)
    lazy_series = series.as_lazy()
    reads = count_block_reads(lazy_series)
    lazy = lazy_series.reconstruct_sirt(iterations=20)
    assert lazy[0]._lazy and lazy[0].metadata.Reconstruction.padding_px == PAD
    # The maps of both lines were computed for the check in one pass; the graphs hold
    # the maps, not the spectra, so computing the results reads nothing more.
    assert len(reads) == lazy_series.data.npartitions
    for e, z in zip(eager, lazy):
        np.testing.assert_allclose(z.data.compute(), e.data, rtol=0, atol=1e-5 * e.data.max())
    assert len(reads) == lazy_series.data.npartitions


def _edge_invalid(seed=1):
    """Columns shifted in at each tilt by a drift of up to 3 px (as alignment leaves them)."""
    shifts = np.random.default_rng(seed).integers(-3, 4, size=len(TILTS))
    invalid = np.zeros((len(TILTS), SLICES, N), bool)
    for i, shift in enumerate(shifts):
        if shift > 0:
            invalid[i, :, :shift] = True
        elif shift < 0:
            invalid[i, :, shift:] = True
    return invalid


def test_invalid_pixels_are_left_out_of_sirt(lamella):
    series, truth = lamella["series"], lamella["truth"]
    invalid = _edge_invalid()
    zeroed = [np.where(invalid, 0, m) for m in lamella["maps"]]
    kwargs = dict(iterations=200, padding_px=PAD, xray_lines=LINES)
    clean = series.reconstruct_sirt(intensities=lamella["maps"], **kwargs)
    naive = series.reconstruct_sirt(intensities=zeroed, **kwargs)
    masked = series.reconstruct_sirt(intensities=zeroed, invalid_pixels=invalid, **kwargs)
    record = masked[0].metadata.Reconstruction
    assert record.invalid_pixels == "user"
    assert record.invalid_pixel_fraction == pytest.approx(invalid.mean())
    for c, n, m, t in zip(clean, naive, masked, truth):
        deviation = {name: np.abs(r.data - c.data).max() / c.data.max()
                     for name, r in (("naive", n), ("masked", m))}
        # Measured deviation from the clean reconstruction: zeros read as "no mass"
        # 1.1 (Ag), 0.90 (Au); left out 0.24, 0.12 (those rays are simply missing).
        assert deviation["masked"] < 0.4 * deviation["naive"]
        assert correlation(m.data, t) > correlation(n.data, t)
    # A Gaussian filter must not smear the zeros into the valid pixels either.
    filtered = series.reconstruct_sirt(intensities=zeroed, invalid_pixels=invalid,
                                       gaussian_sigma={"x": 0.8, "tilt": 0.8}, **kwargs)
    reference = series.reconstruct_sirt(intensities=lamella["maps"],
                                        gaussian_sigma={"x": 0.8, "tilt": 0.8}, **kwargs)
    assert correlation(filtered[1].data, reference[1].data) > 0.97  # measured 0.985


def test_invalid_pixels_are_left_out_of_hebt_and_cross_validation(lamella):
    series, (_, au) = lamella["series"], lamella["truth"]
    invalid = _edge_invalid(seed=2)
    # Garbage where there are no data: a masked pixel must not matter at all.
    maps = [np.where(invalid, 1e4, m) for m in lamella["maps"]]
    adf = np.where(invalid, 1e5, lamella["adf"])
    kwargs = dict(xray_lines=LINES, padding_px=PAD, alpha=0.5, iterations=200)
    masked = series.reconstruct_hebt(adf, intensities=maps, invalid_pixels=invalid, **kwargs)
    clean = series.reconstruct_hebt(lamella["adf"], intensities=lamella["maps"], **kwargs)
    # The fit left the garbage out: the exact ratios come back.
    fitted = masked[0].metadata.Reconstruction.response_ratios.as_dictionary()
    assert fitted == pytest.approx(RATIOS, rel=1e-3)
    assert correlation(masked[1].data, au) > 0.95  # measured 0.969 (clean: 0.971)
    assert correlation(masked[1].data, clean[1].data) > 0.97
    result = series.cross_validate(adf, intensities=maps, invalid_pixels=invalid,
                                   xray_lines=LINES, padding_px=PAD, iterations=(20, 100),
                                   alphas=(0.0, 0.5), score="mse")
    reference = series.cross_validate(lamella["adf"], intensities=lamella["maps"],
                                      xray_lines=LINES, padding_px=PAD, iterations=(20, 100),
                                      alphas=(0.0, 0.5), score="mse")
    assert result.grid["invalid_pixels"] == "user"
    # Garbage of 1e4 counts dominates every score when it is scored and trained on
    # (measured worst score 1.2e7 unmasked); masked, 3010 against 2813 on clean data.
    worst = max(r["score"] for r in reference.rows)
    assert max(r["score"] for r in result.rows) < 2 * worst


def test_kernels_weighted_hebt_at_alpha_zero_is_weighted_sirt(lamella):
    geometry = ParallelBeamGeometry(tuple(TILTS), N, n_x=N + 8, n_z=N)
    projector = get_projector(geometry)
    eds = np.stack([np.moveaxis(m, 0, 1) for m in lamella["maps"]]).astype(np.float32)
    weights = np.moveaxis(~_edge_invalid(), 0, 1).astype(np.float32)
    ratios = [2.0, 3.0]
    joint = hebt(projector, eds, np.zeros_like(eds[0]), ratios, 0.0, 30, eds_weights=weights,
                 adf_weights=weights)
    for k in range(2):
        alone = sirt(projector, ratios[k] * eds[k], 30, ray_weights=weights)
        np.testing.assert_allclose(joint[k], alone, rtol=0, atol=1e-5 * alone.max())
    with pytest.raises(ValueError, match="ray_weights must lie in"):
        sirt(projector, eds[0], 2, ray_weights=2 * weights)
    with pytest.raises(ValueError, match="eds_weights must have shape"):
        hebt(projector, eds, eds[0], ratios, 0.5, 2, eds_weights=weights[:1])


def test_alignment_marks_its_invalid_pixels():
    series = make_series(n_x=16, n_slices=16)
    shifts = [[0.0, 2.0]] * 4 + [[1.0, -3.0]] * 5
    record = {"shifts_px": shifts, "rotation_deg": 0.0, "image_shape": [16, 16]}
    mask = invalid_pixel_mask(record, (9, 16, 16))
    assert mask[0, :, :2].all() and not mask[0, :, 2:].any()
    assert mask[8, 0].all() and mask[8, :, -3:].all() and not mask[8, 1:, :-3].any()
    series.metadata.set_item("Alignment", record)
    rec = series.reconstruct_sirt(iterations=5)
    assert rec[0].metadata.Reconstruction.invalid_pixels == "alignment"
    assert rec[0].metadata.Reconstruction.invalid_pixel_fraction == pytest.approx(mask.mean())
    off = series.reconstruct_sirt(iterations=5, invalid_pixels=None)
    assert off[0].metadata.Reconstruction.invalid_pixels == "none"
    cropped = series.inav[2:, :, :]
    with pytest.raises(ValueError, match="cropped or rebinned after alignment"):
        cropped.reconstruct_sirt(iterations=5)
    cropped.reconstruct_sirt(iterations=5, invalid_pixels=None)  # the user's way out


@pytest.mark.parametrize("value, error, match", [
    (-1, ValueError, "padding_px must be a number of pixels >= 0 or 'auto', got -1"),
    (2.5, ValueError, "padding_px must be a number"),
    ("wide", ValueError, "'wide'"),
])
def test_padding_errors(series, value, error, match):
    with pytest.raises(error, match=match):
        series.reconstruct_sirt(iterations=2, padding_px=value)


def test_invalid_pixels_errors(series):
    with pytest.raises(ValueError, match=r"navigation shape \(9, 3, 16\)"):
        series.reconstruct_sirt(iterations=2, invalid_pixels=np.zeros((9, 16, 3), bool))
    with pytest.raises(TypeError, match="boolean array"):
        series.reconstruct_sirt(iterations=2, invalid_pixels=np.zeros((9, 3, 16)))
    with pytest.raises(ValueError, match="'auto', None or a boolean array"):
        series.reconstruct_sirt(iterations=2, invalid_pixels="alignment")


def test_edge_fraction_ignores_invalid_pixels():
    stack = np.ones((2, 3, 10), np.float32)
    stack[..., 3:7] = 5.0
    assert edge_fraction([stack]) == pytest.approx(0.2)
    weights = np.ones_like(stack)
    stack[..., 0] = 0.0  # zeros shifted in at the left edge...
    weights[..., 0] = 0.0  # ...and marked invalid: the right edge still reads 0.2
    assert edge_fraction([stack], weights) == pytest.approx(0.2)
    lazy = dask.array.from_array(stack)
    assert edge_fraction([lazy], weights) == pytest.approx(0.2)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_det=st.integers(2, 12), padding=st.integers(0, 6),
       n_tilts=st.integers(1, 6), alpha=st.floats(0.0, 0.9))
def test_masked_measurements_do_not_matter(seed, n_det, padding, n_tilts, alpha):
    """Whatever a zero-weight measurement holds, SIRT and HEBT return the same volume."""
    rng = np.random.default_rng(seed)
    angles = tuple(np.sort(rng.choice(np.arange(-80, 81, 5), n_tilts, replace=False)))
    projector = get_projector(ParallelBeamGeometry(angles, n_det, n_x=n_det + 2 * padding,
                                                   n_z=n_det))
    shape = (2, n_tilts, n_det)
    eds = rng.random((2,) + shape).astype(np.float32)
    adf = rng.random(shape).astype(np.float32)
    weights = (rng.random(shape) > 0.3).astype(np.float32)
    junk = np.where(weights > 0, 0, 1e3 * rng.random(shape)).astype(np.float32)
    a = sirt(projector, eds[0], 7, ray_weights=weights)
    b = sirt(projector, eds[0] + junk, 7, ray_weights=weights)
    np.testing.assert_array_equal(a, b)
    a = hebt(projector, eds, adf, [1.0, 2.0], alpha, 7, eds_weights=weights, adf_weights=weights)
    b = hebt(projector, eds + junk, adf + junk, [1.0, 2.0], alpha, 7, eds_weights=weights,
             adf_weights=weights)
    np.testing.assert_array_equal(a, b)


def _kernel_runs(projector, counts, weights):
    """Every solver on ``counts`` (slices, tilts, detector) with ``weights``; volumes."""
    from hyperspy_hebt.tomography.fused import fused
    from hyperspy_hebt.tomography.mlem import mlem
    from hyperspy_hebt.tomography.poisson_tv import poisson_tv

    pair = np.concatenate([counts, 0.5 * counts])
    pair_weights = np.concatenate([weights, weights])
    return {
        "SIRT": sirt(projector, counts, 20, ray_weights=weights),
        "ML-EM": mlem(projector, counts, 20, ray_weights=weights),
        "Poisson-TV": poisson_tv(projector, counts, 20, 0.1, ray_weights=weights),
        "joint TV": poisson_tv(projector, pair, 20, 0.1, ray_weights=pair_weights,
                               joint_channels=2),
        "fused": fused(projector, pair, 3 * counts, [1.0, 2.0], 1.5, 20, 0.1, 1.0,
                       eds_weights=pair_weights, adf_weights=weights),
        "HEBT": hebt(projector, pair.reshape((2,) + counts.shape), 3 * counts, [1.0, 2.0],
                     0.5, 20, eds_weights=weights, adf_weights=weights).reshape(
                         (len(pair), N, N)),
    }


def test_a_slice_without_data_is_zero_in_every_solver():
    """A slice that no valid ray reaches (cut by alignment) holds no information. SIRT left
    it at its start, 0; the Poisson solvers started at 1 (the level of a slice without
    counts) and kept it there, and on real Bruker files that slab of 1s was taken for the
    particle (Fe 0.39 instead of 0.005). Every solver must leave it 0, and its neighbours as
    they are without it (the slices are independent)."""
    rng = np.random.default_rng(4)
    projector = get_projector(ParallelBeamGeometry(tuple(TILTS), N))
    truth = np.zeros((3, N, N), np.float32)
    truth[:, 4:12, 5:11] = 2.0
    counts = rng.poisson(projector.forward(truth)).astype(np.float32)
    weights = np.ones_like(counts)
    weights[1] = 0.0
    weights[2, :, :3] = 0.0  # a partly cut slice: rays left out, the slice observed
    runs = _kernel_runs(projector, counts, weights)
    alone = _kernel_runs(projector, counts[[0, 2]], weights[[0, 2]])
    for name, volume in runs.items():
        n = len(volume) // 3  # lines (1, or 2 line-major for the joint solvers)
        dead = volume.reshape(n, 3, N, N)[:, 1]
        assert not dead.any(), name
        kept = volume.reshape(n, 3, N, N)[:, [0, 2]]
        np.testing.assert_allclose(kept, alone[name].reshape(n, 2, N, N), rtol=0,
                                   atol=1e-5 * kept.max(), err_msg=name)
        assert kept[:, 1].max() > 0.5, name


def test_slices_without_data_are_recorded_and_said(caplog):
    series = make_series(n_x=16, n_slices=4)
    # A shift of one pixel along y at every tilt: row 0 is shifted in from outside.
    series.metadata.set_item("Alignment", {"shifts_px": [[1.0, 0.0]] * 9,
                                           "rotation_deg": 0.0, "image_shape": [4, 16]})
    with caplog.at_level("WARNING", logger="hyperspy_hebt"):
        recs = series.reconstruct_poisson_tv(30, tv_weight=0.1, show_progressbar=False)
    record = recs[0].metadata.Reconstruction
    assert record.slices_without_data == [0]
    assert "1 of 4 slices (y index [0]) have no valid pixel at any tilt" in caplog.text
    for rec in recs:
        assert not rec.data[0].any() and rec.data[1:].max() > 0
    fractions = series.quantify_cross_section(recs)
    # Outside the particle (total 0), as everywhere the threshold leaves out; the slab of
    # 1s of before was above every other voxel and was "the particle".
    assert all(not f.data[0].any() and f.data[1:].any() for f in fractions)
    plain = make_series(n_x=16, n_slices=4).reconstruct_sirt(iterations=5)
    assert "slices_without_data" not in plain[0].metadata.Reconstruction
