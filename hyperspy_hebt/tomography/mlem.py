"""ML-EM and ordered-subsets EM on stacks of independent slices (Poisson likelihood).

EDS line maps are counts, a few per pixel: Poisson, not Gaussian. ML-EM maximises the
Poisson log-likelihood ``sum_r p_r log (Wx)_r - (Wx)_r`` of the measured counts ``p`` by
the multiplicative update (Shepp and Vardi 1982)::

    x <- x / (W^T w) * W^T (w p / W x),

with ``w`` the ray weights (0: a measurement left out). Every iterate stays positive
without clipping, the likelihood never decreases, and ``sum_j (W^T w)_j x_j`` equals the
weighted counts after every iteration (the counts are kept). Ordered subsets (Hudson and
Larkin 1994) apply the update with the tilts split into ``subsets`` interleaved groups in
turn: about ``subsets`` times faster at the start, without the monotonic guarantee (it
cycles near the optimum; use 1 for the maximum-likelihood limit).

The iterate starts from a constant per slice that matches the slice's counts (0 outside
a support, where it then stays). Like SIRT on noisy data, ML-EM semi-converges: the
iteration count is the regularisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from . import _array_steps, _sparse, backends
from .projector import Projector, _inverse_or_zero
from .sirt import _pixel_major_snapshot, _ray_weight_columns, _run_steps

__all__ = ["mlem", "poisson_log_likelihood", "validate_mlem_parameters"]


def validate_mlem_parameters(iterations, subsets, n_tilts: int) -> tuple[int, int]:
    """Check the iteration and subset counts; return them as ints.

    Parameters
    ----------
    iterations : int
        Iterations (>= 1).
    subsets : int
        Ordered subsets of the tilts (1: plain ML-EM).
    n_tilts : int
        The series' tilts.

    Returns
    -------
    iterations, subsets : int

    Raises
    ------
    TypeError
        Either is not an integer.
    ValueError
        ``iterations`` < 1, or ``subsets`` not between 1 and the number of tilts.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.mlem import validate_mlem_parameters
    >>> validate_mlem_parameters(20, 4, n_tilts=31)
    (20, 4)
    """
    for name, value in (("iterations", iterations), ("subsets", subsets)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be a positive integer, got {value!r}.")
    if iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations}.")
    if not 1 <= subsets <= n_tilts:
        raise ValueError(f"subsets must be between 1 and the number of tilts ({n_tilts}), "
                         f"got {subsets}.")
    return int(iterations), int(subsets)


def poisson_log_likelihood(predicted: np.ndarray, measured: np.ndarray,
                           ray_weights: np.ndarray | None = None) -> float:
    """``sum_r w_r (p_r log q_r - q_r)`` (the terms that depend on the prediction ``q``).

    Rays with ``q = 0`` add ``0`` when ``p = 0`` and ``-inf`` otherwise.

    Parameters
    ----------
    predicted : numpy.ndarray
        The projections ``q`` of the current estimate.
    measured : numpy.ndarray
        The counts ``p``, the shape of ``predicted``.
    ray_weights : numpy.ndarray, optional
        ``w_r`` in [0, 1] (0: left out); default 1.

    Returns
    -------
    float

    Examples
    --------
    >>> from hyperspy_hebt.tomography.mlem import poisson_log_likelihood
    >>> round(poisson_log_likelihood(np.array([2.0, 3.0]), np.array([2.0, 3.0])), 3)
    -0.318
    """
    q = np.asarray(predicted, np.float64)
    p = np.asarray(measured, np.float64)
    w = 1.0 if ray_weights is None else np.asarray(ray_weights, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(q), 0.0) - q
    return float(np.sum(w * terms))


def _subset_matrices(projector: Projector, subsets: int):
    """Per subset: the rays (indices), their rows of ``W`` and its transpose (CSR)."""
    g = projector.geometry
    out = []
    for k in range(subsets):
        tilts = np.arange(k, g.n_tilts, subsets)
        rays = (tilts[:, None] * g.n_detector + np.arange(g.n_detector)).reshape(-1)
        if subsets == 1:
            out.append((rays, projector.matrix, projector.matrix_t))
            continue
        rows = sp.csr_matrix(projector.matrix[rays], dtype=np.float32)
        rows.sort_indices()
        transposed = sp.csr_matrix(rows.T, dtype=np.float32)
        transposed.sort_indices()
        out.append((rays, rows, transposed))
    return out


@dataclass(frozen=True)
class _CountingInputs:
    """Counts in the kernels' layout, checked, for the Poisson solvers.

    Attributes
    ----------
    counts : numpy.ndarray
        float32 ``(n_rays, n_slices)`` measured counts (not weighted).
    weights : numpy.ndarray
        float32 ``(n_rays, 1)`` (every ray weighs 1) or ``(n_rays, n_slices)``.
    mask : numpy.ndarray
        float32 ``(n_pixels,)``: 1 inside the support, 0 outside.
    row_sums : numpy.ndarray
        float32 ``(n_rays,)``: each ray's length within the support.
    level : numpy.ndarray
        float32 ``(n_slices,)``: the constant that, inside the support, gives each
        slice's weighted counts (1 for a slice without counts): the solvers' start.
    observed : numpy.ndarray
        float32 ``(n_pixels, 1)`` or ``(n_pixels, n_slices)`` (as ``weights``): 1 for a
        voxel of the support that a ray of nonzero weight crosses, else 0. The solvers
        start there and stay 0 elsewhere unless a prior moves them: a voxel (or a whole
        slice, cut by alignment) without data is not given the start's made-up level.
    """

    counts: np.ndarray
    weights: np.ndarray
    mask: np.ndarray
    row_sums: np.ndarray
    level: np.ndarray
    observed: np.ndarray


def _counting_inputs(projector: Projector, sinograms, ray_weights=None,
                    support=None) -> _CountingInputs:
    """Check ``sinograms`` as counts (finite, >= 0) and lay them out for the kernels.

    Raises
    ------
    ValueError
        Wrong shapes, NaN or infinite values, negative counts, or ray weights outside
        [0, 1].
    """
    g = projector.geometry
    sinograms = np.asarray(sinograms)
    if sinograms.ndim != 3 or sinograms.shape[1:] != (g.n_tilts, g.n_detector):
        raise ValueError(f"sinograms must have shape (n_slices, {g.n_tilts}, "
                         f"{g.n_detector}), got {sinograms.shape}.")
    if not np.isfinite(sinograms).all():
        raise ValueError("sinograms contain NaN or infinite values; the solver would "
                         "spread them over the whole slice.")
    if (sinograms < 0).any():
        raise ValueError(
            f"sinograms hold negative values (lowest {float(sinograms.min()):g}): the "
            "Poisson likelihood needs counts >= 0. Background-subtracted maps can dip "
            "below 0 by noise; reconstruct them with SIRT, or clip them knowingly.")
    n_slices = sinograms.shape[0]
    counts = np.ascontiguousarray(sinograms.reshape(n_slices, g.n_rays).T, np.float32)
    weights = _ray_weight_columns(ray_weights, sinograms.shape, g.n_rays)
    weights = np.ones((g.n_rays, 1), np.float32) if weights is None else weights
    mask = (np.ones(g.n_pixels, np.float32) if support is None
            else np.asarray(support, np.float32).reshape(-1))
    if mask.shape != (g.n_pixels,):
        raise ValueError(f"support must be ({g.n_z}, {g.n_x}), got {np.shape(support)}.")
    row_sums = np.asarray(projector.matrix @ mask, np.float32)
    return _CountingInputs(counts, weights, mask, row_sums, _levels(counts, weights, row_sums),
                          _observed_voxels(projector, weights, mask))


def _observed_voxels(projector: Projector, weights: np.ndarray, mask: np.ndarray
                    ) -> np.ndarray:
    """1 where a voxel of ``mask`` is crossed by a ray of nonzero weight, else 0.

    ``weights`` float32 ``(n_rays, k)``; returns float32 ``(n_pixels, k)``.
    """
    crossing = np.empty((projector.geometry.n_pixels, weights.shape[1]), np.float32)
    _sparse.csr_matmat(projector.matrix_t, np.ascontiguousarray(weights, np.float32),
                       crossing)
    return np.ascontiguousarray((crossing > 0) * mask[:, None], np.float32)


def _levels(values: np.ndarray, weights: np.ndarray, row_sums: np.ndarray) -> np.ndarray:
    """Per column: the constant that, inside the support, gives the weighted mean value.

    1 for a column without a positive value (float32 ``(n_columns,)``).
    """
    level = (weights * values).sum(axis=0) / np.maximum(
        (weights * row_sums[:, None]).sum(axis=0), 1e-30)
    return np.where(level > 0, level, 1.0).astype(np.float32)


def _mlem_steps(projector: Projector, sinograms: np.ndarray, subsets: int,
                ray_weights=None, support=None, backend: str = "cpu"):
    """Yield, after each (OS-)EM iteration, a function that copies the iterate out."""
    g = projector.geometry
    backend = backends.resolve_backend(backend)
    inputs = _counting_inputs(projector, sinograms, ray_weights, support)
    if backend != "cpu":
        yield from _array_steps.mlem_steps(backends._array_module(backend), projector, inputs,
                                           _subset_matrices(projector, subsets))
        return
    n_slices = inputs.counts.shape[1]
    measured = inputs.counts * inputs.weights
    parts = []
    for rays, rows, transposed in _subset_matrices(projector, subsets):
        ray_weight = np.ascontiguousarray(inputs.weights[rays])
        sensitivity = np.empty((g.n_pixels, ray_weight.shape[1]), np.float32)
        _sparse.csr_matmat(transposed, ray_weight, sensitivity)
        inverse = np.ascontiguousarray(_inverse_or_zero(sensitivity) * inputs.mask[:, None])
        parts.append((rows, transposed, np.ascontiguousarray(measured[rays]), inverse))
    # Start: the constant that gives each slice's counts through the whole system.
    volume = np.ascontiguousarray(inputs.observed * inputs.level[None, :],
                                  dtype=np.float32)
    ratio_buffers = [np.empty((part[2].shape[0], n_slices), np.float32) for part in parts]
    while True:
        for (rows, transposed, counts, inverse), ratio in zip(parts, ratio_buffers):
            _sparse.project(rows, transposed, volume, ratio)
            # Rays the iterate does not reach (all their voxels 0) cannot change it.
            reached = ratio > 0
            np.divide(counts, ratio, out=ratio, where=reached)
            ratio[~reached] = 0.0
            _sparse.multiplicative_update(transposed, ratio, inverse, volume)
        yield _pixel_major_snapshot(volume, (n_slices, g.n_z, g.n_x))


def mlem(projector: Projector, sinograms: np.ndarray, iterations: int, subsets: int = 1,
         callback: Callable[[int], None] | None = None,
         ray_weights: np.ndarray | None = None, support: np.ndarray | None = None,
         columns: slice | None = None, backend: str = "cpu") -> np.ndarray:
    """Reconstruct a stack of slices by ML-EM (or OS-EM with ``subsets`` > 1).

    Parameters
    ----------
    projector : Projector
        System matrix of the geometry.
    sinograms : numpy.ndarray
        ``(n_slices, n_tilts, n_detector)`` measured counts, >= 0.
    iterations : int
        Full passes over the tilts (>= 1).
    subsets : int
        Interleaved groups of tilts updated in turn (1: ML-EM).
    callback : callable, optional
        Called with the number of each completed iteration (1-based).
    ray_weights : numpy.ndarray, optional
        ``(n_slices, n_tilts, n_detector)`` in [0, 1]; 0 leaves a measurement out.
    support : numpy.ndarray of bool, optional
        ``(n_z, n_x)``: voxels outside it stay 0.
    columns : slice, optional
        Grid columns to return (the scan's part of a padded grid).
    backend : {"cpu", "cupy", "auto"}
        Where the iterations run (see :func:`.sirt.sirt`). Input and output stay numpy.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_slices, n_z, n_x)``, >= 0.

    Raises
    ------
    ValueError
        Bad shapes, NaN or negative counts, bad iteration or subset counts.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_sinograms
    >>> demo = demo_sinograms()  # a 32 x 32 core-shell slice at 13 tilts, (1, 13, 32)
    >>> from hyperspy_hebt.tomography.mlem import mlem
    >>> volume = mlem(demo.projector, demo.sinograms, 20)
    >>> volume.shape, bool(volume.min() >= 0)
    ((1, 32, 32), True)
    """
    iterations, subsets = validate_mlem_parameters(iterations, subsets,
                                                   projector.geometry.n_tilts)
    steps = _mlem_steps(projector, sinograms, subsets, ray_weights, support, backend)
    return _run_steps(steps, iterations, callback, columns)
