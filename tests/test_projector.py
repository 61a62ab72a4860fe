"""The projector against an independent one, against exact path lengths, and its adjoint."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter

from hyperspy_hebt.tomography import ParallelBeamGeometry, _sparse, get_projector


def smooth_phantom(n):
    z, x = np.mgrid[:n, :n] - (n - 1) / 2
    image = ((x - 5) ** 2 / 400 + (z + 3) ** 2 / 150 < 1).astype(float)
    image += 0.5 * ((x + 8) ** 2 + (z - 6) ** 2 < 60)
    return gaussian_filter(image, 1.0).astype(np.float32)


def test_matches_skimage_radon():
    radon = pytest.importorskip("skimage.transform").radon
    n = 65  # odd: skimage's centre pixel (n // 2) and ours ((n - 1) / 2) coincide
    tilts = np.linspace(-75, 75, 31)
    image = smooth_phantom(n)
    ours = get_projector(ParallelBeamGeometry(tuple(tilts), n)).forward(image)
    # skimage rotates the image the other way: its angle -t is our tilt t. Its
    # detector spans the image diagonal; keep the n central bins.
    theirs = radon(image, theta=-tilts, circle=False)
    centre = theirs.shape[0] // 2
    theirs = theirs[centre - n // 2: centre + n // 2 + 1].T
    # Joseph interpolation vs skimage's rotate-and-sum differ only by
    # interpolation error on a smooth object: measured 0.1 %, bound 0.5 %.
    assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 5e-3


@pytest.mark.parametrize("tilt", [0.0, 20.0, -40.0, 60.0, 85.0])
def test_ray_through_uniform_square_gives_path_length(tilt):
    n = 41
    geometry = ParallelBeamGeometry((tilt,), n)
    sinogram = get_projector(geometry).forward(np.ones((n, n), np.float32))
    # The central ray crosses the n x n square over n / max(|cos|, |sin|) pixels.
    t = np.deg2rad(tilt)
    expected = n / max(abs(np.cos(t)), abs(np.sin(t)))
    assert sinogram[0, n // 2] == pytest.approx(expected, rel=1e-5)


def test_detector_offset_shifts_projection():
    n = 33
    image = smooth_phantom(n)
    base = get_projector(ParallelBeamGeometry((0.0,), n)).forward(image)
    shifted = get_projector(ParallelBeamGeometry((0.0,), n, detector_offset_px=2.0)).forward(image)
    # At zero tilt bin d of the offset detector sees the column of bin d + 2.
    np.testing.assert_allclose(shifted[0, :-2], base[0, 2:], rtol=1e-5, atol=1e-5)


geometries = st.builds(
    lambda angles, n_det, n_x, n_z, offset: ParallelBeamGeometry(
        tuple(angles), n_det, n_x, n_z, offset
    ),
    st.lists(st.floats(-89.0, 89.0, allow_nan=False), min_size=1, max_size=7,
             unique_by=lambda a: round(a, 6)),
    st.integers(1, 20),
    st.integers(1, 20),
    st.integers(1, 20),
    st.floats(-3.0, 3.0),
)


@settings(max_examples=60, deadline=None)
@given(geometry=geometries, seed=st.integers(0, 2**31 - 1), n_slices=st.integers(1, 5))
# Found by hypothesis in CI: one ray crossing 16 pixels, where W x nearly cancels.
@example(geometry=ParallelBeamGeometry((89.0,), 1, 16, 1, 0.0), seed=2, n_slices=1)
def test_adjointness(geometry, seed, n_slices):
    """<W x, y> == <x, W^T y> for the kernels SIRT uses, on random geometries."""
    rng = np.random.default_rng(seed)
    projector = get_projector(geometry)
    x = rng.standard_normal((n_slices, geometry.n_z, geometry.n_x)).astype(np.float32)
    y = rng.standard_normal((n_slices, geometry.n_tilts, geometry.n_detector)).astype(np.float32)
    wx = projector.forward(x).astype(np.float64)
    wty = projector.backward(y).astype(np.float64)
    lhs = np.sum(wx * y, axis=(1, 2))
    rhs = np.sum(x * wty, axis=(1, 2))
    # Rounding of float32 sums is bounded by eps32 x (number of terms) x sum of |terms|,
    # i.e. |y|^T |W| |x|; cancellation inside W x makes |W x| a poor yardstick.
    weights = abs(projector.matrix).astype(np.float64)
    magnitude = np.array([np.abs(yi).ravel() @ (weights @ np.abs(xi).ravel())
                          for xi, yi in zip(x, y)]) + 1e-12
    np.testing.assert_array_less(np.abs(lhs - rhs) / magnitude, 1e-5)


def test_kernels_match_scipy_products():
    geometry = ParallelBeamGeometry(tuple(np.linspace(-60, 60, 7)), 24, 20, 18, 0.7)
    projector = get_projector(geometry)
    rng = np.random.default_rng(1)
    dense = rng.random((geometry.n_pixels, 13), dtype=np.float32)  # 13: not a SIMD width
    out = np.empty((geometry.n_rays, 13), np.float32)
    _sparse.csr_matmat(projector.matrix, dense, out)
    np.testing.assert_allclose(out, projector.matrix @ dense, rtol=1e-5, atol=1e-5)
    measured = rng.random((geometry.n_rays, 13), dtype=np.float32)
    scale = rng.random(geometry.n_rays, dtype=np.float32)
    residual = np.empty_like(measured)
    expected = scale[:, None] * (measured - projector.matrix @ dense)
    # The forward kernels split the rays into runs, one per task: any number of runs
    # (more than threads, more than rays) gives the same sums.
    for n_runs in (None, 1, 2, 3, 7, geometry.n_rays + 5):
        _sparse.weighted_residual(projector.matrix, projector.matrix_t, dense, measured, scale,
                                  residual, n_runs=n_runs)
        np.testing.assert_allclose(residual, expected, rtol=1e-5, atol=1e-5)
        product = _sparse.project(projector.matrix, projector.matrix_t, dense,
                                  np.full_like(out, np.nan), n_runs=n_runs)
        np.testing.assert_allclose(product, projector.matrix @ dense, rtol=1e-5, atol=1e-5)
    target = rng.standard_normal((geometry.n_pixels, 13)).astype(np.float32)
    col_scale = rng.random(geometry.n_pixels, dtype=np.float32)
    expected = np.maximum(target + col_scale[:, None] * (projector.matrix_t @ residual), 0)
    _sparse.scaled_update(projector.matrix_t, residual, col_scale, target, positivity=True)
    np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-5)


def test_projector_is_cached_and_read_only():
    geometry = ParallelBeamGeometry((-30.0, 0.0, 30.0), 16)
    first = get_projector(geometry)
    assert get_projector(ParallelBeamGeometry((-30, 0, 30), 16)) is first
    assert not first.matrix.data.flags.writeable
    assert first.matrix.dtype == np.float32 and first.matrix.indices.dtype == np.int32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tilt_angles_deg=(0.0, 0.0), n_detector=8), "must not repeat"),
        (dict(tilt_angles_deg=(0.0, 90.0), n_detector=8), r"\|angle\| < 90"),
        (dict(tilt_angles_deg=(0.0, np.nan), n_detector=8), "finite"),
        (dict(tilt_angles_deg=(), n_detector=8), "non-empty"),
        (dict(tilt_angles_deg=(0.0,), n_detector=0), "n_detector"),
        (dict(tilt_angles_deg=(0.0,), n_detector=8, n_z=2.5), "n_z"),
    ],
)
def test_geometry_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ParallelBeamGeometry(**kwargs)


def test_forward_rejects_wrong_shape():
    projector = get_projector(ParallelBeamGeometry((0.0, 10.0), 8))
    with pytest.raises(ValueError, match=r"images must have shape \(n_slices, 8, 8\)"):
        projector.forward(np.zeros((8, 9)))
