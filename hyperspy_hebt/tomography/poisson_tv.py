"""Poisson likelihood with total variation, by preconditioned PDHG (Chambolle and Pock).

Solves, slice by slice (independent slices, as every kernel here)::

    min_x  sum_r w_r ((Wx)_r - p_r log (Wx)_r)  +  lambda sum_j |grad x|_j,   x >= 0,

the Poisson negative log-likelihood of the counts ``p`` (ray weights ``w``, 0: left
out) plus the isotropic total variation of each slice (forward differences along ``z``
and ``x``), by the primal-dual hybrid gradient method with the diagonal preconditioning
of Pock and Chambolle (ICCV 2011): steps ``1 / (row sum)`` per ray, ``1/2`` per
difference, ``1 / (column sum + 4)`` per voxel, which converge without estimating the
operator's norm. One iteration: one projection, one back projection, and a gradient and
divergence of the slice.

Scaling the counts by ``c`` scales the solution by ``c`` for the same ``lambda`` (both
terms scale by ``c``), so ``lambda`` depends on the geometry, not on the dose; it is
given per tilt (``tv_weight``, multiplied by the number of tilts), since the likelihood
sums over them. ``tv_weight = 0`` is the Poisson maximum-likelihood solution (ML-EM's
limit, reached by a different path).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from . import _sparse
from .mlem import counting_inputs
from .projector import Projector, inverse_or_zero
from .sirt import pixel_major_snapshot, run_steps

__all__ = ["poisson_tv", "validate_tv_parameters"]


def validate_tv_parameters(iterations, tv_weight) -> tuple[int, float]:
    """Check the iteration count and the TV weight; return them normalised.

    Raises
    ------
    TypeError
        ``iterations`` is not an integer.
    ValueError
        ``iterations`` < 1, or ``tv_weight`` not a finite number >= 0.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)):
        raise TypeError(f"iterations must be a positive integer, got {iterations!r}.")
    if iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations}.")
    if isinstance(tv_weight, bool) or not isinstance(tv_weight, (int, float, np.floating)) \
            or not np.isfinite(tv_weight) or tv_weight < 0:
        raise ValueError(f"tv_weight must be a finite number >= 0 (0: no regularisation), "
                         f"got {tv_weight!r}.")
    return int(iterations), float(tv_weight)


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _dual_tv(x_bar, q_z, q_x, n_z, n_x, sigma, bound):
    """``q <- project_{|q| <= bound}(q + sigma grad x_bar)`` per voxel and slice."""
    n_slices = x_bar.shape[1]
    for z in numba.prange(n_z):
        for x in range(n_x):
            p = z * n_x + x
            for s in range(n_slices):
                here = x_bar[p, s]
                g_z = x_bar[p + n_x, s] - here if z < n_z - 1 else 0.0
                g_x = x_bar[p + 1, s] - here if x < n_x - 1 else 0.0
                a = q_z[p, s] + sigma * g_z
                b = q_x[p, s] + sigma * g_x
                norm = np.sqrt(a * a + b * b)
                if norm > bound:
                    scale = bound / norm
                    a *= scale
                    b *= scale
                q_z[p, s] = a
                q_x[p, s] = b


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _primal(volume, x_bar, back, q_z, q_x, n_z, n_x, tau):
    """``x <- max(0, x - tau (W^T y - div q))``; ``x_bar <- 2 x_new - x_old``."""
    n_slices = volume.shape[1]
    for z in numba.prange(n_z):
        for x in range(n_x):
            p = z * n_x + x
            step = tau[p]
            for s in range(n_slices):
                divergence = 0.0
                if z < n_z - 1:
                    divergence += q_z[p, s]
                if z > 0:
                    divergence -= q_z[p - n_x, s]
                if x < n_x - 1:
                    divergence += q_x[p, s]
                if x > 0:
                    divergence -= q_x[p - 1, s]
                old = volume[p, s]
                new = old - step * (back[p, s] - divergence)
                if new < 0.0:
                    new = 0.0
                volume[p, s] = new
                x_bar[p, s] = 2.0 * new - old


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _dual_poisson(dual, projected, counts, weights, sigma):
    """``y <- prox_{sigma F*}(y + sigma W x_bar)`` for ``F(v) = sum w (v - p log v)``."""
    n_rays, n_slices = dual.shape
    shared = weights.shape[1] == 1
    for r in numba.prange(n_rays):
        step = sigma[r]
        for s in range(n_slices):
            w = weights[r, 0 if shared else s]
            u = dual[r, s] + step * projected[r, s]
            d = u - w
            dual[r, s] = 0.5 * (u + w - np.sqrt(d * d + 4.0 * step * w * counts[r, s]))


def _poisson_tv_steps(projector: Projector, sinograms: np.ndarray, tv_weight: float,
                      ray_weights=None, support=None):
    """Yield, after each PDHG iteration, a function that copies the iterate out."""
    g = projector.geometry
    inputs = counting_inputs(projector, sinograms, ray_weights, support)
    weights, mask, level = inputs.weights, inputs.mask, inputs.level
    n_slices = level.size
    sigma = inverse_or_zero(inputs.row_sums)
    tau = (mask / (np.asarray(projector.column_sums, np.float32) + 4.0)).astype(np.float32)
    bound = np.float32(tv_weight * g.n_tilts)
    # Each slice in units of the constant that gives its counts (ML-EM's start): the
    # minimiser scales with the counts but PDHG's steps do not, so without this the
    # iterations needed would grow with the dose.
    counts = np.ascontiguousarray(inputs.counts / level[None, :], dtype=np.float32)
    volume = np.ascontiguousarray(np.repeat(mask[:, None], n_slices, axis=1), np.float32)
    x_bar = volume.copy()
    dual = np.zeros((g.n_rays, n_slices), np.float32)
    projected = np.empty_like(dual)
    back = np.empty_like(volume)
    q_z, q_x = np.zeros_like(volume), np.zeros_like(volume)
    while True:
        _sparse.project(projector.matrix, projector.matrix_t, x_bar, projected)
        _dual_poisson(dual, projected, counts, weights, sigma)
        if bound > 0:
            _dual_tv(x_bar, q_z, q_x, g.n_z, g.n_x, np.float32(0.5), bound)
        _sparse.csr_matmat(projector.matrix_t, dual, back)
        _primal(volume, x_bar, back, q_z, q_x, g.n_z, g.n_x, tau)
        yield _scaled_snapshot(volume, level, (n_slices, g.n_z, g.n_x))


def _scaled_snapshot(volume: np.ndarray, level: np.ndarray, shape: tuple):
    """:func:`~.sirt.pixel_major_snapshot` of the iterate in counts (times ``level``).

    No live ``pixel_major`` view: the iterate is held in each slice's own units.
    """
    def copy_out(columns: slice | None = None):
        return pixel_major_snapshot(volume * level[None, :], shape)(columns)

    return copy_out


def poisson_tv(projector: Projector, sinograms: np.ndarray, iterations: int,
               tv_weight: float, callback: Callable[[int], None] | None = None,
               ray_weights: np.ndarray | None = None, support: np.ndarray | None = None,
               columns: slice | None = None) -> np.ndarray:
    """Reconstruct a stack of slices by Poisson likelihood + total variation (PDHG).

    Parameters
    ----------
    projector : Projector
        System matrix of the geometry.
    sinograms : numpy.ndarray
        ``(n_slices, n_tilts, n_detector)`` measured counts, >= 0.
    iterations : int
        PDHG iterations (>= 1): a few hundred to converge.
    tv_weight : float
        Weight of each slice's total variation per tilt (>= 0; see the module text).
    callback : callable, optional
        Called with the number of each completed iteration (1-based).
    ray_weights : numpy.ndarray, optional
        ``(n_slices, n_tilts, n_detector)`` in [0, 1]; 0 leaves a measurement out.
    support : numpy.ndarray of bool, optional
        ``(n_z, n_x)``: voxels outside it stay 0.
    columns : slice, optional
        Grid columns to return.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_slices, n_z, n_x)``, >= 0.

    Raises
    ------
    ValueError
        Bad shapes, NaN or negative counts, bad iterations or ``tv_weight``.
    """
    iterations, tv_weight = validate_tv_parameters(iterations, tv_weight)
    steps = _poisson_tv_steps(projector, sinograms, tv_weight, ray_weights, support)
    return run_steps(steps, iterations, callback, columns)
