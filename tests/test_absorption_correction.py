"""Absorption correction iterated with quantification (absorption_correction), on a
simulated silicate grain whose X-rays are attenuated by the simulator's own path integral."""

import numpy as np
import pytest
from helpers import absorbed_grain
from scipy import ndimage

from hyperspy_hebt.absorption_correction import (
    AbsorptionNotConverged,
    correct_absorption,
    factors_of,
    ray_factors,
)
from hyperspy_hebt.physics import eds_factor
from hyperspy_hebt.quantification import composition_fractions, esf_threshold
from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector, sirt

ELEMENTS = ["O", "Mg", "Si", "Fe"]
LINES = ["O_Ka", "Mg_Ka", "Si_Ka", "Fe_Ka"]
SUPER_X = [(45.0, 18.0), (135.0, 18.0), (225.0, 18.0), (315.0, 18.0)]
N = 20
TILTS = np.linspace(-70, 70, 9)


class Grain:
    """The simulated series and the thin-film reconstruction and quantification."""

    def __init__(self, detectors):
        self.detectors = detectors
        self.phantom, self.counts, self.table, per_detector = absorbed_grain(
            N, tuple(TILTS), tuple(detectors), 3e9)
        self.sinograms = [per_detector[line].sum(0) for line in LINES]
        self.projector = get_projector(ParallelBeamGeometry(tuple(TILTS), N))
        self.factors = np.array([eds_factor(line, 200.0) for line in LINES])

    def reconstruct(self, sinograms, iterations=60):
        stack = np.stack(sinograms).reshape(-1, len(TILTS), N)
        return list(sirt(self.projector, stack, iterations).reshape(len(sinograms), N, N, N))

    def quantify(self, volumes):
        volumes = np.stack(volumes)
        total = (volumes / self.factors[:, None, None, None]).sum(0)
        return composition_fractions(volumes, self.factors, esf_threshold(total).threshold)

    def errors_wt_percent(self, fractions):
        """Phase-mean error per element (wt%) over each phase's voxels one voxel in from
        its edge (every reconstruction blurs edges by a voxel)."""
        out = {}
        for name, region in self.phantom.regions.items():
            core = ndimage.binary_erosion(region)
            out[name] = {
                e: 100 * (float(fractions[j][core].mean())
                          - float(self.phantom.weight_fractions[e][region].mean()))
                for j, e in enumerate(ELEMENTS)}
        return out

    def correct(self, **kwargs):
        arguments = dict(reconstruct=self.reconstruct, quantify=self.quantify,
                         line_elements=ELEMENTS, mass_attenuation_cm2_g=self.table,
                         projector=self.projector, pixel_size_nm=self.phantom.pixel_size_nm,
                         detectors=self.detectors) | kwargs
        return correct_absorption(self.sinograms, **arguments)


@pytest.fixture(scope="module")
def one_detector():
    return Grain([(0.0, 18.0)])


@pytest.fixture(scope="module", params=["one detector", "Super-X"])
def grain(request, one_detector):
    return one_detector if request.param == "one detector" else Grain(SUPER_X)


def test_thin_film_quantification_is_biased_by_absorption(grain):
    errors = grain.errors_wt_percent(grain.quantify(grain.reconstruct(grain.sinograms)))
    # The symptom: O reads low and Fe high by several wt% (measured: O -3.2 to
    # -6.6, Fe +2.0 to +5.9); 2.5 wt% is well clear of the reconstruction's own error.
    for phase in ("matrix", "inclusion"):
        assert errors[phase]["O"] < -2.5
        assert errors[phase]["Fe"] > 1.5


def test_correction_brings_every_element_within_one_wt_percent(grain):
    result = grain.correct(density_g_cm3=3.6)  # one density for both phases, as a user would
    errors = grain.errors_wt_percent(result.fractions)
    # Issue 15 asks 1.5 wt%; measured <= 0.5 wt% here, the same as thin-film data
    # reconstructed alike (the SIRT's own blur at the inclusion's edge): 1 wt% leaves
    # room for that and none for the several wt% of the uncorrected result.
    for phase, by_element in errors.items():
        for element, error in by_element.items():
            assert abs(error) < 1.0, (phase, element, error)
    assert 1 <= len(result.history) - 1 <= 4
    last = result.history[-1]
    assert last["largest_change"] <= 0.002
    # O Ka is attenuated most, Fe Ka hardly (mean share of the counts that got out).
    factor = last["mean_ray_factor"]
    assert factor["O"] < factor["Mg"] < factor["Si"] < factor["Fe"] <= 1.0
    assert 0.6 < factor["O"] < 0.9 and factor["Fe"] > 0.98


def test_a_density_volume_is_taken_voxel_by_voxel(one_detector):
    """A density per voxel (the phases' own), not only one number: still within target."""
    grain = one_detector
    result = grain.correct(density_g_cm3=grain.phantom.density_g_cm3)
    errors = grain.errors_wt_percent(result.fractions)
    assert max(abs(e) for phase in errors.values() for e in phase.values()) < 1.0


def test_correction_estimates_the_density_when_none_is_given(grain):
    with pytest.warns(UserWarning, match="density="):
        result = grain.correct(density_g_cm3=None)
    errors = grain.errors_wt_percent(result.fractions)
    assert max(abs(e) for phase in errors.values() for e in phase.values()) < 1.0


def test_no_absorption_means_no_correction(one_detector):
    grain = one_detector
    thin = [grain.projector.forward(grain.counts[line].astype(np.float32)) for line in LINES]
    volumes = grain.reconstruct(thin)
    factors = ray_factors(np.stack(volumes), np.zeros((4, N, N, N), np.float32),
                          grain.projector, grain.detectors, [1.0])
    assert factors.shape == (4, N, len(TILTS), N)
    np.testing.assert_allclose(factors, 1.0, rtol=1e-5)


def test_result_holds_the_settled_compositions_ray_sums(one_detector):
    """The returned ray sums are those of the last pass's volumes and composition (what a
    final reconstruction on another grid takes its factors from); the first pass may be
    given (the caller's uncorrected reconstruction) instead of being made again."""
    grain = one_detector
    first = grain.reconstruct(grain.sinograms)
    calls = []

    def counted(sinograms):
        calls.append(1)
        return grain.reconstruct(sinograms)

    result = grain.correct(density_g_cm3=3.6, reconstruct=counted, first_volumes=first)
    assert len(calls) == len(result.history) - 1  # the first pass was not made again
    again = grain.correct(density_g_cm3=3.6)
    np.testing.assert_allclose(result.detected, again.detected, rtol=1e-5)
    for line, volume in enumerate(result.volumes):  # the thin-film sums are W x
        np.testing.assert_allclose(result.thin[line], grain.projector.forward(volume),
                                   rtol=1e-4, atol=1e-3 * float(result.thin[line].max()))
    factors = factors_of(result.detected, result.thin)
    assert factors.shape == (4, N, len(TILTS), N)
    # One more pass would barely move them (the loop had settled): measured 0.0003 mean
    # count-weighted change of a factor (about 0.8 for O); 0.01 is a tenth of O's
    # correction.
    weights = np.clip(np.stack(grain.sinograms), 0, None)
    change = np.abs(factors - np.stack(result.factors)) * weights
    assert float(change.sum() / weights.sum()) < 0.01


def test_refuses_when_the_composition_keeps_changing(one_detector):
    with pytest.raises(AbsorptionNotConverged, match="did not converge in 1 outer"):
        one_detector.correct(density_g_cm3=3.6, max_iterations=1, tolerance=1e-9)


@pytest.mark.parametrize("kwargs, match", [
    ({"detectors": []}, "detectors"),
    ({"shares": [0.7]}, "shares"),
    ({"max_iterations": 0}, "max_iterations"),
    ({"tolerance": -1.0}, "tolerance"),
    ({"mass_attenuation_cm2_g": np.ones((4, 3))}, "mass_attenuation_cm2_g"),
])
def test_bad_arguments_are_refused(kwargs, match):
    arguments = dict(sinograms=[np.ones((1, 2, 4))] * 4, reconstruct=None, quantify=None,
                     line_elements=ELEMENTS, mass_attenuation_cm2_g=np.ones((4, 4)),
                     projector=None, pixel_size_nm=10.0, detectors=[(0.0, 18.0)]) | kwargs
    with pytest.raises(ValueError, match=match):
        correct_absorption(**arguments)
