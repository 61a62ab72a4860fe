"""The coarse copy of a reconstruction grid (tomography.coarse_grid)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector
from hyperspy_hebt.tomography.coarse_grid import CoarseGrid


@settings(max_examples=40, deadline=None)
@given(n_slices=st.integers(1, 9), n_z=st.integers(1, 9), n_x=st.integers(1, 11),
       factor=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_averaging_keeps_the_total(n_slices, n_z, n_x, factor, seed):
    """Every fine voxel is shared out whole: the coarse means times the coarse voxel's
    volume add up to the fine total, whatever the sizes' parities."""
    geometry = ParallelBeamGeometry((0.0,), n_x, n_x, n_z)
    grid = CoarseGrid(geometry, n_slices, factor)
    volume = np.random.default_rng(seed).random((2, n_slices, n_z, n_x)).astype(np.float32)
    coarse = grid.average(volume)
    assert coarse.shape == (2, grid.n_coarse_slices, grid.coarse_geometry.n_z,
                            grid.coarse_geometry.n_x)
    np.testing.assert_allclose(coarse.sum(axis=(1, 2, 3)) * factor**3,
                               volume.sum(axis=(1, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize("n", [7, 8])
def test_averaging_keeps_the_centre(n):
    """A voxel at the grid's centre stays at the coarse grid's centre (odd sizes share it
    1/4, 1/2, 1/4 rather than shifting it half a voxel)."""
    geometry = ParallelBeamGeometry((0.0,), n, n, n)
    grid = CoarseGrid(geometry, n, 2)
    volume = np.zeros((n, n, n), np.float32)
    centre = (n - 1) / 2
    # A symmetric blob about the centre: its coarse image must be symmetric too.
    axes = np.indices(volume.shape) - centre
    volume[:] = np.exp(-(axes**2).sum(0) / 4.0)
    coarse = grid.average(volume)
    np.testing.assert_allclose(coarse, coarse[::-1, ::-1, ::-1], atol=1e-7)
    np.testing.assert_allclose(coarse, coarse.transpose(2, 1, 0), atol=1e-7)


def test_interpolating_rays_is_exact_for_linear_sums():
    geometry = ParallelBeamGeometry((-30.0, 20.0), 9, 11, 5, detector_offset_px=1.0)
    grid = CoarseGrid(geometry, 7, 2)
    coarse = grid.coarse_geometry
    # A ray sum linear in the slice and detector coordinates (each about its own centre).
    coarse_y = (np.arange(grid.n_coarse_slices) - (grid.n_coarse_slices - 1) / 2) * 2
    coarse_u = (np.arange(coarse.n_detector) - (coarse.n_detector - 1) / 2) * 2
    rays = (3 + 0.5 * coarse_y[:, None, None] - 0.25 * coarse_u[None, None, :]
            + np.zeros((1, 2, 1)))
    fine = grid.interpolate_rays(rays)
    fine_y = np.arange(7) - 3.0
    fine_u = np.arange(9) - 4.0
    expected = 3 + 0.5 * fine_y[:, None, None] - 0.25 * fine_u[None, None, :] + np.zeros((1, 2, 1))
    np.testing.assert_allclose(fine, expected, atol=1e-5)


@pytest.mark.parametrize("n_detector, n_x, offset", [(24, 24, 0.0), (23, 31, 1.5)])
def test_coarse_projections_see_the_object_where_the_fine_ones_do(n_detector, n_x, offset):
    """An off-centre blob, averaged and projected on the coarse grid (a ray there is 2
    fine pixels wide and its path counts in coarse lengths, hence the factor 2) and brought
    back to the fine rays: same total and the same centroid along the detector and the
    slices at every tilt, within 0.05 fine pixels (measured 0.007 and 0.027; the same
    blob moved half a fine pixel reads 0.49 off). The profiles themselves are blurred by a coarse
    voxel, which the ray factors, ratios of two such profiles, do not feel."""
    tilts = (-60.0, -10.0, 35.0, 70.0)
    geometry = ParallelBeamGeometry(tilts, n_detector, n_x, n_x, detector_offset_px=offset)
    n_slices = 15
    grid = CoarseGrid(geometry, n_slices, 2)
    y, z, x = np.indices((n_slices, n_x, n_x), dtype=float)
    y, z, x = y - (n_slices - 1) / 2, z - (n_x - 1) / 2, x - (n_x - 1) / 2
    volume = np.exp(-((x - 2.0) ** 2 + (z + 1.0) ** 2 + (y - 1.0) ** 2) / 12.0)
    volume = volume.astype(np.float32)
    fine = get_projector(geometry).forward(volume)
    back = grid.interpolate_rays(
        2.0 * get_projector(grid.coarse_geometry).forward(grid.average(volume)))
    np.testing.assert_allclose(back.sum(axis=(0, 2)), fine.sum(axis=(0, 2)), rtol=0.02)

    def centroids(rays):
        along_detector = (rays.sum(0) * np.arange(n_detector)).sum(1) / rays.sum((0, 2))
        along_slices = (rays.sum(2) * np.arange(n_slices)[:, None]).sum(0) / rays.sum((0, 2))
        return along_detector, along_slices

    for got, expected in zip(centroids(back), centroids(fine)):
        np.testing.assert_allclose(got, expected, atol=0.05)


@pytest.mark.parametrize("factor", [0, -1, 1.5, True])
def test_bad_factor_is_refused(factor):
    with pytest.raises(ValueError, match="factor"):
        CoarseGrid(ParallelBeamGeometry((0.0,), 4), 4, factor)


def test_wrong_shapes_are_refused():
    grid = CoarseGrid(ParallelBeamGeometry((0.0,), 4), 4, 2)
    with pytest.raises(ValueError, match="volume must end in"):
        grid.average(np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="rays must end in"):
        grid.interpolate_rays(np.zeros((4, 1, 4)))
