"""X-ray exit paths (tomography.attenuation) against exspy's take-off angle, the analytic
slab and the simulator's own path integral (simulation.absorption)."""

import numpy as np
import pytest
from exspy.utils.eds import take_off_angle
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from hyperspy_hebt.simulation.absorption import attenuated_projections, path_optical_depth
from hyperspy_hebt.simulation.forward import project_volume
from hyperspy_hebt.tomography.attenuation import exit_direction, optical_depth, transmission


@settings(max_examples=60, deadline=None)
@given(tilt=st.floats(-80, 80), azimuth=st.floats(-360, 360), elevation=st.floats(1, 89))
def test_exit_direction_is_exspys_take_off_angle(tilt, azimuth, elevation):
    d = exit_direction(tilt, azimuth, elevation)
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-12)
    # The grid's z is the specimen normal: its component is sin(take-off angle).
    expected = take_off_angle(tilt, azimuth, elevation)
    assert np.degrees(np.arcsin(np.clip(d[1], -1, 1))) == pytest.approx(expected, abs=1e-9)


def test_exit_direction_frame():
    # Azimuth 0 lies across the tilt axis (+x), 90 along it (+y); a positive tilt turns
    # the specimen toward azimuth 0 (larger take-off angle), away from 180.
    assert exit_direction(0, 0, 30) == pytest.approx([0, 0.5, np.cos(np.radians(30))])
    assert exit_direction(0, 90, 30) == pytest.approx([np.cos(np.radians(30)), 0.5, 0], abs=1e-12)
    facing, level, away = (exit_direction(t, a, 30)[1] for t, a in ((20, 0), (0, 0), (20, 180)))
    assert facing > level > away


@pytest.mark.parametrize("elevation", [0.0, 90.0, -5.0, np.nan])
def test_exit_direction_refuses_impossible_elevations(elevation):
    with pytest.raises(ValueError, match="elevation_deg"):
        exit_direction(0.0, 0.0, elevation)


def _slab(shape, z0, thickness, mu0):
    mu = np.zeros(shape)
    mu[:, z0:z0 + thickness, :] = mu0
    return mu


# Each geometry keeps the central voxels' rays inside the grid until they leave the slab's
# top face (a wide grid along the direction the ray drifts).
SLAB_CASES = [
    # (tilt, azimuth, elevation, grid shape)
    (0, 0, 18, (8, 40, 160)),
    (30, 0, 18, (8, 40, 100)),
    (-20, 180, 35, (8, 40, 100)),
    (20, 45, 18, (100, 40, 100)),
    (0, 90, 35, (100, 40, 8)),
    (50, 300, 18, (100, 40, 100)),
]


@pytest.mark.parametrize("method", ["march", "path"])
@pytest.mark.parametrize("tilt, azimuth, elevation, shape", SLAB_CASES)
def test_slab_transmission_is_analytic(method, tilt, azimuth, elevation, shape):
    """Mean transmission of a uniform slab: (1 - exp(-chi t)) / (chi t), chi = mu / sin(TOA)."""
    thickness, z0, mu0 = 16, 12, 0.05
    mu = _slab(shape, z0, thickness, mu0)
    d = exit_direction(tilt, azimuth, elevation)
    cy, cx = shape[0] // 2, shape[2] // 2
    middle = (slice(cy - 2, cy + 2), slice(z0, z0 + thickness), slice(cx - 2, cx + 2))
    if method == "march":
        kept = transmission(mu, d)[middle].mean()
    else:
        voxels = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in middle],
                                      indexing="ij"), -1).reshape(-1, 3)
        kept = np.exp(-path_optical_depth(mu, d, step_px=0.25, at=voxels)).mean()
    chi_t = mu0 / d[1] * thickness
    exact = (1 - np.exp(-chi_t)) / chi_t
    # 1 %: the target. The voxel-centre (midpoint) sampling of depth is exact to
    # (chi)^2 / 24 per voxel (< 1e-3 here); the rest is the trapezoid along the ray.
    assert kept == pytest.approx(exact, rel=0.01)


def test_march_agrees_with_the_path_integral_on_a_smooth_object():
    rng = np.random.default_rng(0)
    mu = np.zeros((20, 26, 30))
    mu[2:-2, 2:-2, 2:-2] = ndimage.gaussian_filter(rng.random((16, 22, 26)), 2) * 0.1
    inside = mu > 0
    for tilt, azimuth, elevation in [(0, 0, 18), (45, 45, 18), (-60, 200, 30), (70, 10, 18)]:
        d = exit_direction(tilt, azimuth, elevation)
        fast = transmission(mu, d)
        slow = np.exp(-path_optical_depth(mu, d, step_px=0.2))
        # The one-pass march interpolates depths between neighbouring rays once: a
        # voxel-scale blur, largest beside sharp edges and at grazing exits (measured on
        # this object: <= 0.51 % mean, <= 8 % at single edge voxels; emission-weighted
        # means, what the correction uses, <= 0.6 %). 1 % bounds both.
        assert np.abs(fast - slow)[inside].mean() < 0.01
        assert (fast * mu)[inside].sum() / (slow * mu)[inside].sum() == pytest.approx(1, abs=0.01)


def test_vacuum_transmits_everything():
    assert np.all(transmission(np.zeros((4, 5, 6)), exit_direction(10, 30, 20)) == 1)


def test_zero_attenuation_is_the_thin_film_simulation():
    rng = np.random.default_rng(1)
    volume = rng.random((3, 12, 12))
    tilts = [-40.0, 0.0, 35.0]
    got = attenuated_projections(volume, np.zeros_like(volume), tilts,
                                 [(45, 18), (225, 18)], [0.25, 0.75])
    assert got.shape == (2, 3, 3, 12)
    thin = project_volume(volume, tilts)
    np.testing.assert_allclose(got.sum(0), thin, rtol=1e-5)
    np.testing.assert_allclose(got[0], 0.25 * thin, rtol=1e-5)


@pytest.mark.parametrize("mu, direction, match", [
    (np.zeros((4, 4)), (0, 1, 0), "3D"),
    (-np.ones((2, 2, 2)), (0, 1, 0), ">= 0"),
    (np.full((2, 2, 2), np.nan), (0, 1, 0), "finite"),
    (np.zeros((2, 2, 2)), (0, 0, 0), "direction"),
    (np.zeros((2, 2, 2)), (0, 1), "direction"),
])
def test_optical_depth_refuses_bad_input(mu, direction, match):
    with pytest.raises(ValueError, match=match):
        optical_depth(mu, direction)


def test_detector_shares_must_sum_to_one():
    with pytest.raises(ValueError, match="detector_shares"):
        attenuated_projections(np.ones((1, 4, 4)), np.zeros((1, 4, 4)), [0.0],
                               [(0, 18), (90, 18)], [0.5, 0.6])
