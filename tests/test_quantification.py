"""quantify_cross_section: exact round trips, the ESF threshold, lazy, and every bad input."""

import hyperspy.api as hs
import numpy as np
import pytest
from helpers import make_series

from hyperspy_hebt import physics
from hyperspy_hebt.quantification import composition_fractions, esf_threshold, fit_esf
from hyperspy_hebt.simulation import core_shell_phantom

BEAM_KEV = 200.0
LINES = ["Ag_La", "Au_Ma"]
CORE = {"Ag": 0.2, "Au": 0.8}
SHELL = {"Ag": 0.8, "Au": 0.2}
DENSITY = {"Ag": 10.49, "Au": 19.30}  # g/cm^3


def alloy_density(composition):
    """Ideal-mixing density of a weight-fraction composition, g/cm^3."""
    return 1.0 / sum(c / DENSITY[e] for e, c in composition.items())


def two_phase_reconstructions(series, algorithm="SIRT", lazy=False, n=20):
    """X_A = factor_A C_A rho in every voxel (paper Eq. 10 / 17, noiseless)."""
    core, shell = core_shell_phantom(n, 3)
    out = []
    for line in LINES:
        element = line.split("_")[0]
        factor = (physics.eds_factor(line, BEAM_KEV) if algorithm == "SIRT"
                  else physics.haadf_factor(element, BEAM_KEV))
        x = factor * (CORE[element] * alloy_density(CORE) * core
                      + SHELL[element] * alloy_density(SHELL) * shell)
        rec = hs.signals.Signal2D(x.astype(np.float32))
        for axis, name in zip(rec.axes_manager._axes, ("y", "z", "x")):
            axis.name = name
        rec.axes_manager["y"].navigate = True
        rec.metadata.set_item("Sample.xray_lines", [line])
        rec.metadata.set_item("Sample.elements", [element])
        rec.metadata.set_item("Reconstruction.algorithm", algorithm)
        rec.metadata.set_item("Reconstruction.tilt_angles_deg", [-60.0, 0.0, 60.0])
        rec.metadata.set_item("Acquisition_instrument.TEM.beam_energy", BEAM_KEV)
        out.append(rec.as_lazy() if lazy else rec)
    return out, core, shell


@pytest.mark.parametrize("algorithm", ["SIRT", "HEBT"])
@pytest.mark.parametrize("lazy", [False, True])
def test_two_phase_phantom_quantifies_back(series, algorithm, lazy):
    recs, core, shell = two_phase_reconstructions(series, algorithm, lazy)
    fractions = series.quantify_cross_section(recs, threshold=None)
    assert all(f._lazy == lazy for f in fractions)
    for f, element in zip(fractions, ("Ag", "Au")):
        if lazy:
            f.compute()
        data = f.data
        # Float32 reconstructions: the ratio is exact to float32 rounding (~1e-7).
        np.testing.assert_allclose(data[core], CORE[element], atol=1e-6)
        np.testing.assert_allclose(data[shell], SHELL[element], atol=1e-6)
        assert np.all(data[~(core | shell)] == 0)
        q = f.metadata.Quantification
        assert q.factor_name == ("f_A" if algorithm == "SIRT" else "z_A")
        assert q.factor_units == "barn mol/g" and q.beam_energy_kev == BEAM_KEV
        assert q.threshold_method == "none"
        assert f.axes_manager.navigation_axes[0].name == "y"
        assert [a.name for a in f.axes_manager.signal_axes] == ["x", "z"]


def test_atomic_fractions(series):
    recs, core, _ = two_phase_reconstructions(series)
    ag, au = series.quantify_cross_section(recs, threshold=None, composition_units="atomic")
    m_ag, m_au = physics.atomic_weight("Ag"), physics.atomic_weight("Au")
    expected_ag = (0.2 / m_ag) / (0.2 / m_ag + 0.8 / m_au)
    np.testing.assert_allclose(ag.data[core], expected_ag, atol=1e-6)
    assert "atomic fraction" in ag.metadata.Quantification.composition_units


def test_user_factors_override(series):
    recs, core, shell = two_phase_reconstructions(series)
    computed = [physics.eds_factor(line, BEAM_KEV) for line in LINES]
    by_list = series.quantify_cross_section(recs, factors=computed, threshold=None)
    by_dict = series.quantify_cross_section(
        recs, factors={"Ag": computed[0], "Au_Ma": computed[1]}, threshold=None)
    np.testing.assert_allclose(by_list[0].data[core], 0.2, atol=1e-6)
    np.testing.assert_array_equal(by_list[1].data, by_dict[1].data)
    assert by_list[0].metadata.Quantification.factor_source == "user"
    doubled = series.quantify_cross_section(recs, factors=[computed[0] * 2, computed[1]],
                                            threshold=None)
    assert doubled[0].data[core].mean() < 0.2  # a larger f_A means less Ag per count


def test_detector_efficiency_changes_the_result(series):
    recs, core, _ = two_phase_reconstructions(series)
    ag, _ = series.quantify_cross_section(recs, threshold=None,
                                          detector_efficiency={"Ag_La": 0.5, "Au_Ma": 1.0})
    # Half the efficiency for Ag: the same counts mean twice the Ag.
    expected = 2 * 0.2 / (2 * 0.2 + 0.8)
    np.testing.assert_allclose(ag.data[core], expected, atol=1e-6)
    assert ag.metadata.Quantification.detector_efficiency == 0.5


def dice(a, b):
    return 2 * np.sum(a & b) / (a.sum() + b.sum())


def test_esf_threshold_finds_the_particle_in_a_noisy_reconstruction():
    series = make_series(n_x=32, n_slices=4, tilts=np.linspace(-75, 75, 31), seed=4)
    recs = series.reconstruct_sirt(iterations=30, gaussian_sigma=0.8)
    ag, au = series.quantify_cross_section(recs)
    inside = (ag.data + au.data) > 0
    core, shell = core_shell_phantom(32, 4)
    # Measured Dice 0.999 (0.990-1.000 over seeds 0/4 and sizes 32/48); the issue
    # asks for >= 0.9.
    assert dice(inside, core | shell) >= 0.9
    np.testing.assert_allclose((ag.data + au.data)[inside], 1.0, atol=1e-6)
    q = ag.metadata.Quantification
    assert q.threshold_method == "esf" and q.threshold > 0
    assert q.esf_fit.background_edge < q.threshold < q.esf_fit.particle_edge
    # The core is Au-rich, the shell Ag-rich: the means land on the right side.
    assert au.data[core & inside].mean() > 0.5 > au.data[shell & inside].mean()
    lazy = series.quantify_cross_section([r.as_lazy() for r in recs])
    assert "lazy" in lazy[0].metadata.Quantification.threshold_note
    lazy[0].compute()
    np.testing.assert_array_equal(lazy[0].data, ag.data)


def test_numeric_threshold(series):
    recs, core, shell = two_phase_reconstructions(series)
    ag, _ = series.quantify_cross_section(recs, threshold=1e9)
    assert np.all(ag.data == 0)  # nothing is above an absurd threshold
    assert ag.metadata.Quantification.threshold == 1e9


def test_fit_esf_on_a_synthetic_histogram():
    rng = np.random.default_rng(0)
    total = np.concatenate([np.abs(rng.normal(0, 2, 6000)), rng.normal(50, 4, 4000)])
    fit = esf_threshold(total)
    # The valley between the two populations lies between 8 and 38.
    assert 8 < fit.threshold < 38
    assert fit.parameters["particle_edge"] == pytest.approx(50, abs=3)
    with pytest.raises(ValueError, match="No voxel has a positive total"):
        esf_threshold(np.zeros(100))
    with pytest.raises(ValueError, match="No voxel"):
        fit_esf(np.zeros(512), 0, 100, 0.0)


def test_composition_fractions_plain_arrays():
    x = np.array([[2.0, 0.0, 1.0], [2.0, 0.0, 3.0]])
    fractions = composition_fractions(x, [1.0, 2.0])
    np.testing.assert_allclose(fractions, [[2 / 3, 0, 0.4], [1 / 3, 0, 0.6]])
    with pytest.raises(ValueError, match="one value per element"):
        composition_fractions(x, [1.0])
    with pytest.raises(ValueError, match="finite and > 0"):
        composition_fractions(x, [1.0, 0.0])


def test_inputs_unchanged(series):
    recs, _, _ = two_phase_reconstructions(series)
    before = [r.data.copy() for r in recs]
    metadata = [r.metadata.as_dictionary() for r in recs]
    series.quantify_cross_section(recs)
    for r, data, md in zip(recs, before, metadata):
        np.testing.assert_array_equal(r.data, data)
        assert r.metadata.as_dictionary() == md


def _with(recs, index, change):
    recs = [r.deepcopy() for r in recs]
    change(recs[index])
    return recs


@pytest.mark.parametrize(
    "make, kwargs, error, message",
    [
        (lambda r: r, dict(factors=[1.0]), ValueError, "factors has 1 values for 2"),
        (lambda r: r, dict(factors={"Ag": 1.0}), ValueError, "no entry for Au_Ma"),
        (lambda r: r, dict(factors=[1.0, -1.0]), ValueError, "finite and > 0"),
        (lambda r: r, dict(threshold="otsu"), ValueError, "threshold must be 'esf'"),
        (lambda r: r, dict(threshold=-1.0), ValueError, "threshold must be"),
        (lambda r: r, dict(composition_units="percent"), ValueError, "composition_units"),
        (lambda r: r[0], {}, TypeError, "list returned by reconstruct"),
        (lambda r: [], {}, ValueError, "reconstructions is empty"),
        (lambda r: _with(r, 1, lambda s: s.metadata.set_item("Sample.xray_lines", ["Xx_Ka"])),
         {}, ValueError, "Unknown element 'Xx'"),
        (lambda r: _with(r, 1, lambda s: s.metadata.set_item("Sample.xray_lines", ["Au_Mz"])),
         {}, ValueError, "more than one subshell"),
        (lambda r: _with(r, 1, lambda s: s.metadata.set_item("Sample.xray_lines", ["Ag_Lb1"])),
         {}, ValueError, "one line per element"),
        (lambda r: _with(r, 1, lambda s: s.metadata.set_item("Reconstruction.algorithm", "HEBT")),
         {}, ValueError, "mix algorithms"),
        (lambda r: _with(r, 1, lambda s: setattr(s.axes_manager["x"], "scale", 2.0)),
         {}, ValueError, "different geometry"),
        (lambda r: _with(r, 1, lambda s: s.metadata.set_item(
            "Reconstruction.tilt_angles_deg", [-50.0, 0.0, 60.0])),
         {}, ValueError, "different geometry"),
        (lambda r: _with(r, 0, lambda s: s.metadata.set_item(
            "Acquisition_instrument.TEM.beam_energy", 80.0)),
         {}, ValueError, "beam energy of 80.0 keV"),
        (lambda r: _with(r, 0, lambda s: s.metadata.Reconstruction.__delattr__("algorithm")),
         {}, ValueError, "quantification knows"),
        (lambda r: _with(r, 0, lambda s: s.metadata.__delattr__("Reconstruction")),
         {}, ValueError, "no metadata.Reconstruction"),
    ],
)
def test_errors(series, make, kwargs, error, message):
    recs, _, _ = two_phase_reconstructions(series)
    with pytest.raises(error, match=message):
        series.quantify_cross_section(make(recs), **kwargs)


def test_error_without_beam_energy(series):
    recs, _, _ = two_phase_reconstructions(series)
    bare = series.deepcopy()
    del bare.metadata.Acquisition_instrument.TEM.beam_energy
    with pytest.raises(ValueError, match="beam energy is not in the metadata"):
        bare.quantify_cross_section(recs)


def test_blockwise_fractions_equal_the_whole_volume_ones(monkeypatch):
    """The in-memory path works block by block (bounded temporaries): same numbers."""
    from hyperspy_hebt import quantification

    rng = np.random.default_rng(3)
    volumes = [rng.random((7, 5, 6)).astype(np.float32) for _ in range(3)]
    factors = [1.5, 2.0, 0.7]
    monkeypatch.setattr(quantification, "FRACTION_BLOCK_VOXELS", 40)  # 1 row of 30 per block
    for threshold, weights in ((None, None), (0.8, None), (0.8, [10.0, 20.0, 30.0])):
        whole = quantification.composition_fractions(np.stack(volumes), factors, threshold,
                                                     atomic_weights=weights)
        blocks = quantification.composition_fractions_of(volumes, factors, threshold,
                                                         atomic_weights=weights)
        for a, b in zip(blocks, whole):
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(quantification.total_of(volumes, factors),
                               sum(v / f for v, f in zip(volumes, factors)), rtol=1e-6)


def test_fractions_can_take_the_volumes_memory():
    """``out=volumes``: each block is read before it is written, so the fractions are
    the same as into new arrays, and they are the volumes' own arrays."""
    from hyperspy_hebt import quantification

    rng = np.random.default_rng(4)
    volumes = [rng.random((9, 4, 5)).astype(np.float32) for _ in range(3)]
    factors = [1.5, 2.0, 0.7]
    expected = quantification.composition_fractions_of(volumes, factors, 0.5)
    inplace = [v.copy() for v in volumes]
    got = quantification.composition_fractions_of(inplace, factors, 0.5, out=inplace)
    assert all(g is v for g, v in zip(got, inplace))
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    frozen = volumes[0].copy()
    frozen.setflags(write=False)
    for bad in ([volumes[0]], [frozen, volumes[1], volumes[2]],
                [np.zeros((9, 4, 5), int)] * 3, [np.zeros((9, 4))] * 3):
        with pytest.raises(ValueError, match="out must be 3 writable floating-point"):
            quantification.composition_fractions_of(volumes, factors, 0.5, out=bad)


def test_fractions_of_views_and_other_dtypes_equal_the_whole_volume_ones():
    """Strided views and integer volumes take the block-copy path: same numbers."""
    from hyperspy_hebt import quantification

    rng = np.random.default_rng(5)
    base = [rng.random((6, 5, 8)).astype(np.float32) for _ in range(3)]
    factors = [1.5, 2.0, 0.7]
    for volumes in ([b[:, :, ::2] for b in base], [(100 * b).astype(np.int32) for b in base]):
        whole = quantification.composition_fractions(np.stack(volumes), factors, 0.3)
        got = quantification.composition_fractions_of(volumes, factors, 0.3)
        for a, b in zip(got, whole):
            assert a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
