"""The ``backend`` argument: the CPU kernels, the array-module (CuPy) path, and errors.

No CUDA device is present here or in CI. The array-module iterations that CuPy
runs are exercised with numpy and scipy.sparse standing in for CuPy (the
``numpy_as_cupy`` fixture replaces only the device: which module the arrays come
from and the device check), through the kernels and the signal methods; the
tests at the end run CuPy itself and are skipped without a device.
"""

import numpy as np
import pytest
from helpers import TILTS, make_series

from hyperspy_hebt.simulation import (
    core_shell_phantom,
    project_volume,
    synthetic_adf_series,
)
from hyperspy_hebt.tomography import (
    ParallelBeamGeometry,
    backends,
    get_projector,
    hebt,
    hebt_path,
    sirt,
    sirt_path,
)
from hyperspy_hebt.tomography.fused import fused
from hyperspy_hebt.tomography.mlem import mlem
from hyperspy_hebt.tomography.poisson_tv import poisson_tv

# The array path and the numba kernels sum the same float32 products in different
# orders; 20-100 iterations of a contractive iteration keep that at a few float32
# ulps of the largest voxel (measured 3e-7), so 1e-5 of the maximum is a real check.
REFERENCE_RTOL = 1e-5
GPU_AVAILABLE, GPU_REASON = backends.cupy_status()


@pytest.fixture
def numpy_as_cupy(monkeypatch):
    """backend="cupy" runs the array-module iterations with numpy and scipy.sparse."""
    reference = backends._array_module("numpy")
    conversions = []

    def counted(matrix):
        conversions.append(matrix.shape)
        return matrix

    module = backends._ArrayModule("numpy-as-cupy", np, counted, reference.to_host,
                                  reference.device_id)
    monkeypatch.setattr(backends, "cupy_status", lambda: (True, ""))
    monkeypatch.setattr(backends, "_array_module", lambda name: module)
    monkeypatch.setattr(backends, "_DEVICE_CACHE", type(backends._DEVICE_CACHE)())
    return conversions


@pytest.fixture(scope="module")
def problem():
    geometry = ParallelBeamGeometry(tuple(np.linspace(-70, 70, 15)), 32)
    projector = get_projector(geometry)
    rng = np.random.default_rng(0)
    volume = rng.random((3, 32, 32)).astype(np.float32)
    sinograms = projector.forward(volume)
    weights = (rng.random(sinograms.shape) > 0.15).astype(np.float32)
    eds = np.stack([sinograms, 2 * sinograms + rng.random(sinograms.shape, np.float32)])
    adf = 3 * sinograms + rng.random(sinograms.shape, np.float32)
    return dict(projector=projector, sinograms=sinograms, weights=weights, eds=eds, adf=adf)


def _close(actual, expected, rtol=REFERENCE_RTOL):
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * np.abs(expected).max())


def test_backend_names_are_checked():
    with pytest.raises(ValueError, match=r"backend must be one of 'cpu', 'cupy', 'auto', got "
                                         r"'gpu'"):
        backends.resolve_backend("gpu")
    assert backends.resolve_backend("cpu") == "cpu"
    available, reason = backends.cupy_status()
    assert available == (reason == "")
    assert backends.resolve_backend("auto") == ("cupy" if available else "cpu")


def test_missing_gpu_is_reported(monkeypatch, problem):
    monkeypatch.setattr(backends, "cupy_status", lambda: (False, "CuPy is not installed"))
    assert backends.resolve_backend("auto") == "cpu"
    with pytest.raises(RuntimeError, match='backend="cupy" cannot run here: CuPy is not '
                                           'installed. Use backend="cpu"'):
        sirt(problem["projector"], problem["sinograms"], 3, backend="cupy")


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("relaxation, positivity", [(1.0, True), (1.6, False)])
def test_array_path_sirt_equals_cpu(numpy_as_cupy, problem, weighted, relaxation, positivity):
    weights = problem["weights"] if weighted else None
    args = (problem["projector"], problem["sinograms"], 25, relaxation, positivity)
    _close(sirt(*args, ray_weights=weights, backend="cupy"),
           sirt(*args, ray_weights=weights))


def test_array_path_support_equals_cpu(numpy_as_cupy, problem):
    """A slab support (thickness_nm) reaches the array path as its scales."""
    support = np.zeros((32, 32), bool)
    support[10:22] = True
    args = (problem["projector"], problem["sinograms"], 25)
    _close(sirt(*args, support=support, backend="cupy"), sirt(*args, support=support))
    hebt_args = (problem["projector"], problem["eds"], problem["adf"], [1.0, 0.4], 0.8, 20)
    on_cpu = hebt(*hebt_args, support=support, extra_volume=True)
    assert on_cpu[:, :, ~support].max() == 0
    _close(hebt(*hebt_args, support=support, extra_volume=True, backend="cupy"), on_cpu)


def test_array_path_keeps_each_iterate(numpy_as_cupy, problem):
    """The path's volumes are copies, not views of the running iterate."""
    args = (problem["projector"], problem["sinograms"], [3, 9, 20])
    for on_array_path, on_cpu in zip(sirt_path(*args, backend="cupy"), sirt_path(*args)):
        _close(on_array_path, on_cpu)
    assert not np.allclose(sirt_path(*args, backend="cupy")[0],
                           sirt(problem["projector"], problem["sinograms"], 20))


@pytest.mark.parametrize("extra_volume", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_array_path_hebt_equals_cpu(numpy_as_cupy, problem, extra_volume, weighted, alpha):
    options = dict(extra_volume=extra_volume)
    if weighted:
        options.update(adf_weights=problem["weights"],
                       eds_weights=problem["weights"][:, ::-1].copy())
    args = (problem["projector"], problem["eds"], problem["adf"], [1.0, 0.4], alpha)
    on_cpu = hebt(*args, 20, **options)
    assert on_cpu.shape == (2 + extra_volume, 3, 32, 32)
    _close(hebt(*args, 20, backend="cupy", **options), on_cpu)
    for on_array_path, on_cpu in zip(hebt_path(*args, [4, 20], backend="cupy", **options),
                                     hebt_path(*args, [4, 20], **options)):
        _close(on_array_path, on_cpu)


@pytest.mark.parametrize("subsets", [1, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_array_path_mlem_equals_cpu(numpy_as_cupy, problem, subsets, weighted):
    """Multiplicative updates carry a rounding difference along; measured after 20
    iterations: 2.4e-6 and 3.8e-6 of the maximum (within REFERENCE_RTOL)."""
    counts = np.random.default_rng(1).poisson(20 * problem["sinograms"]).astype(np.float32)
    counts[1] = 0.0  # a slice without counts: its start and its update as on the CPU
    options = dict(ray_weights=problem["weights"] if weighted else None)
    _close(mlem(problem["projector"], counts, 20, subsets, backend="cupy", **options),
           mlem(problem["projector"], counts, 20, subsets, **options))


@pytest.mark.parametrize("joint_channels", [1, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_array_path_poisson_tv_equals_cpu(numpy_as_cupy, problem, joint_channels, weighted):
    """PDHG's updates are not contractive the way SIRT's are, and the numba kernels use
    fastmath (reassociated sums); measured after 40 iterations: 3e-7 of the maximum."""
    counts = np.random.default_rng(2).poisson(20 * problem["sinograms"]).astype(np.float32)
    support = np.zeros((32, 32), bool)
    support[4:28] = True
    options = dict(ray_weights=problem["weights"] if weighted else None, support=support,
                   joint_channels=joint_channels)
    on_cpu = poisson_tv(problem["projector"], counts, 40, 0.05, **options)
    assert on_cpu[:, ~support].max() == 0
    _close(poisson_tv(problem["projector"], counts, 40, 0.05, backend="cupy", **options),
           on_cpu)


@pytest.mark.parametrize("gamma", [1.0, 1.6])
@pytest.mark.parametrize("joint", [False, True])
def test_array_path_fused_equals_cpu(numpy_as_cupy, problem, gamma, joint):
    """The fused model's nonlinear PDHG (a power, the Jacobian's steps, masked voxels).
    Measured after 40 iterations: at most 3.5e-7 of the maximum."""
    rng = np.random.default_rng(3)
    counts = rng.poisson(20 * problem["eds"]).astype(np.float32)
    eds = counts.reshape((-1,) + counts.shape[2:])
    adf = problem["adf"] * 40
    support = np.zeros((32, 32), bool)
    support[3:29] = True
    weights = np.concatenate([problem["weights"]] * 2)
    args = (problem["projector"], eds, adf, [1.0, 0.5], gamma, 40, 0.05, 1e-3)
    options = dict(eds_weights=weights, adf_weights=problem["weights"], support=support,
                   joint=joint)
    on_cpu = fused(*args, **options)
    assert on_cpu[:, ~support].max() == 0
    _close(fused(*args, backend="cupy", **options), on_cpu)


def test_matrices_go_to_the_device_once(numpy_as_cupy, problem):
    for _ in range(3):
        sirt(problem["projector"], problem["sinograms"], 2, backend="cupy")
    hebt(problem["projector"], problem["eds"], problem["adf"], [1.0, 0.4], 0.5, 2,
         backend="cupy")
    assert len(numpy_as_cupy) == 2  # W and W^T, once for every call of this geometry


def _adf_for(series_tilts, n_x, n_slices):
    core, shell = core_shell_phantom(n_x, n_slices)
    return synthetic_adf_series(1e3 * project_volume(core + 0.6 * shell, series_tilts),
                                series_tilts, seed=3)


@pytest.mark.parametrize("lazy", [False, True])
def test_signal_methods_run_the_array_path(numpy_as_cupy, lazy):
    series = make_series(lazy=lazy)
    adf = _adf_for(TILTS, 16, 3)
    options = dict(iterations=15, padding_px=0)
    for method, extra in (("reconstruct_sirt", ()), ("reconstruct_hebt", (adf,))):
        on_cpu = getattr(series, method)(*extra, **options)
        on_array_path = getattr(series, method)(*extra, backend="cupy", **options)
        for a, b in zip(on_array_path, on_cpu):
            if lazy:
                a.compute()
                b.compute()
            _close(a.data, b.data)
            assert a.metadata.Reconstruction.backend == "cupy"
            assert b.metadata.Reconstruction.backend == "cpu"
    adf_volume = series.reconstruct_adf(adf, backend="cupy", **options)
    assert adf_volume.metadata.Reconstruction.backend == "cupy"


@pytest.mark.parametrize("lazy", [False, True])
def test_poisson_signal_methods_run_the_array_path(numpy_as_cupy, lazy):
    """ML-EM, Poisson + TV, joint TV and the fused model from the signal, numbers and
    "auto" (the held-out folds on the array path too), eager and lazy, with the bootstrap."""
    series = make_series(lazy=lazy, dose=0.3)
    runs = (("reconstruct_mlem", dict(iterations=10)),
            ("reconstruct_mlem", dict(iterations="auto")),
            ("reconstruct_poisson_tv", dict(iterations=30, tv_weight=0.1, uncertainty=3,
                                            random_state=0)),
            ("reconstruct_poisson_tv", dict(iterations=20, joint_tv=True)),
            ("reconstruct_fused", dict(iterations=30, gamma=1.4, uncertainty=3,
                                       random_state=0)))
    adf = _adf_for(TILTS, 16, 3)
    for method, options in runs:
        args = (adf,) if method == "reconstruct_fused" else ()
        on_cpu = getattr(series, method)(*args, padding_px=0, **options)
        on_array_path = getattr(series, method)(*args, padding_px=0, backend="cupy",
                                                **options)
        for a, b in zip(on_array_path, on_cpu):
            if lazy:
                a.compute()
                b.compute()
            assert a.metadata.Reconstruction.backend == "cupy", method
            record = b.metadata.Reconstruction
            assert a.metadata.Reconstruction.get_item("tv_weight") == record.get_item(
                "tv_weight") and a.metadata.Reconstruction.iterations == record.iterations
            _close(a.data, b.data)
            if "uncertainty" in options:
                _close(*[np.asarray(r.metadata.Signal.Noise_properties.variance.data)
                         for r in (a, b)])


def test_cross_validation_runs_the_array_path(numpy_as_cupy):
    series = make_series()
    adf = _adf_for(TILTS, 16, 3)
    options = dict(iterations=(5, 20), alphas=(0.0, 0.8), holdout=3, padding_px=0)
    on_cpu = series.cross_validate(adf, **options)
    on_array_path = series.cross_validate(adf, backend="cupy", **options)
    scores = [[row["score"] for row in result.rows] for result in (on_array_path, on_cpu)]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-4)  # scores of near-equal maps


def test_signal_methods_check_the_backend(monkeypatch):
    series = make_series()
    with pytest.raises(ValueError, match="backend must be one of"):
        series.reconstruct_sirt(iterations=2, backend="gpu")
    monkeypatch.setattr(backends, "cupy_status", lambda: (False, "CuPy sees no CUDA device"))
    with pytest.raises(RuntimeError, match="CuPy sees no CUDA device"):
        series.reconstruct_sirt(iterations=2, backend="cupy")  # eager: resolved now
    lazy = make_series(lazy=True)
    (volume,) = lazy.reconstruct_sirt(iterations=2, padding_px=0, backend="cupy",
                                      xray_lines=["Ag_La"])
    assert volume.metadata.Reconstruction.backend == "cupy"
    with pytest.raises(RuntimeError, match="CuPy sees no CUDA device"):
        volume.compute()  # lazy: resolved where the blocks run
    (auto,) = lazy.reconstruct_sirt(iterations=2, padding_px=0, backend="auto",
                                    xray_lines=["Ag_La"])
    auto.compute()
    assert auto.metadata.Reconstruction.backend == "auto"


# CuPy itself, on a CUDA device -------------------------------------------------------------

needs_gpu = pytest.mark.skipif(not GPU_AVAILABLE, reason=f"no CuPy device: {GPU_REASON}")
# cuSPARSE sums each row in its own order and the GPU rounds like the CPU (float32, FMA):
# after 50 iterations the volumes should agree to about 1e-6 of the maximum; 1e-4 leaves
# room for a different summation tree without hiding a wrong update (those are O(1)).
GPU_RTOL = 1e-4


@needs_gpu
def test_cupy_sirt_and_hebt_equal_cpu():
    geometry = ParallelBeamGeometry(tuple(np.linspace(-75, 75, 31)), 96)
    projector = get_projector(geometry)
    core, shell = core_shell_phantom(96, 8)
    sinograms = projector.forward(core + 0.5 * shell)
    weights = np.ones_like(sinograms)
    weights[:, :, :3] = 0
    _close(sirt(projector, sinograms, 50, ray_weights=weights, backend="cupy"),
           sirt(projector, sinograms, 50, ray_weights=weights), GPU_RTOL)
    eds = np.stack([projector.forward(core), projector.forward(shell)])
    adf = 2 * eds[0] + eds[1]
    for extra_volume in (False, True):
        args = (projector, eds, adf, [2.0, 1.0], 0.8, 50)
        _close(hebt(*args, extra_volume=extra_volume, adf_weights=weights, backend="cupy"),
               hebt(*args, extra_volume=extra_volume, adf_weights=weights), GPU_RTOL)


@needs_gpu
def test_cupy_poisson_solvers_equal_cpu():
    geometry = ParallelBeamGeometry(tuple(np.linspace(-75, 75, 31)), 96)
    projector = get_projector(geometry)
    core, shell = core_shell_phantom(96, 8)
    counts = np.random.default_rng(0).poisson(
        5 * projector.forward(core + 0.5 * shell)).astype(np.float32)
    for subsets in (1, 4):
        _close(mlem(projector, counts, 30, subsets, backend="cupy"),
               mlem(projector, counts, 30, subsets), GPU_RTOL)
    for joint_channels in (1, 2):
        _close(poisson_tv(projector, counts, 50, 0.03, joint_channels=joint_channels,
                          backend="cupy"),
               poisson_tv(projector, counts, 50, 0.03, joint_channels=joint_channels),
               GPU_RTOL)
    adf = 2 * projector.forward(core) + projector.forward(shell)
    eds = counts[:4].reshape((-1,) + counts.shape[1:])  # two "lines" of 2 slices
    for gamma in (1.0, 1.6):
        args = (projector, eds, adf[:2], [1.0, 0.5], gamma, 50, 0.03, 1e-3)
        _close(fused(*args, backend="cupy"), fused(*args), GPU_RTOL)


@needs_gpu
def test_cupy_signal_methods_equal_cpu():
    series = make_series(lazy=True)
    on_gpu = series.reconstruct_sirt(iterations=30, padding_px=0, backend="cupy")
    on_cpu = series.reconstruct_sirt(iterations=30, padding_px=0)
    for a, b in zip(on_gpu, on_cpu):
        a.compute()
        b.compute()
        _close(a.data, b.data, GPU_RTOL)


@pytest.mark.parametrize("backend", ["cpu", "cupy"])
def test_columns_crop_while_copying_out(numpy_as_cupy, backend):
    """A padded grid's volumes cropped to the scan as the kernels copy them out equal
    the full volumes cropped after, on both paths (CPU kernels; array-module path)."""
    tilts = tuple(np.linspace(-60, 60, 9))
    geometry = ParallelBeamGeometry(tilts, 12, n_x=20, n_z=12)
    projector = get_projector(geometry)
    rng = np.random.default_rng(3)
    sinograms = rng.random((2, 9, 12)).astype(np.float32)
    columns = slice(4, 16)
    full = sirt(projector, sinograms, 5, backend=backend)
    cropped = sirt(projector, sinograms, 5, backend=backend, columns=columns)
    assert cropped.shape == (2, 12, 12) and cropped.flags.c_contiguous
    np.testing.assert_array_equal(cropped, full[..., columns])
    eds = rng.random((2, 2, 9, 12)).astype(np.float32)
    full = hebt(projector, eds, sinograms, [1.0, 2.0], 0.5, 4, backend=backend,
                extra_volume=True)
    cropped = hebt(projector, eds, sinograms, [1.0, 2.0], 0.5, 4, backend=backend,
                   extra_volume=True, columns=columns)
    assert cropped.shape == (3, 2, 12, 12)
    np.testing.assert_array_equal(cropped, full[..., columns])
