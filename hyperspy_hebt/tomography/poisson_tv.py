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

Joint total variation over X-ray lines (``joint_channels`` > 1): the stack holds several
lines' slices and the regulariser is ``lambda sum_j sqrt(sum_lines |grad x_line|_j^2)``
(vectorial TV; Sapiro and Ringach 1996, Blomgren and Chan 1998), which costs less when the
lines' edges fall at the same voxels: elements of one particle share its boundary and its
phases' interfaces, so a line with few counts borrows the edges of the others. The data
term stays each line's own Poisson likelihood of its counts (a line with fewer counts is
held less tightly to them, so it is smoothed more), and the joint term takes each line in
its own units (over its mean level, ``_channel_weights``), so that no line dominates it by
its count rate.

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

from . import _array_steps, _sparse, backends
from .mlem import _counting_inputs
from .projector import Projector, _inverse_or_zero
from .sirt import _pixel_major_snapshot, _run_steps

__all__ = ["poisson_tv", "validate_joint_channels", "validate_tv_parameters"]


def validate_tv_parameters(iterations, tv_weight) -> tuple[int, float]:
    """Check the iteration count and the TV weight; return them normalised.

    Parameters
    ----------
    iterations : int
        Iterations (>= 1).
    tv_weight : float
        Weight of the total variation (>= 0).

    Returns
    -------
    iterations : int
    tv_weight : float

    Raises
    ------
    TypeError
        ``iterations`` is not an integer.
    ValueError
        ``iterations`` < 1, or ``tv_weight`` not a finite number >= 0.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.poisson_tv import validate_tv_parameters
    >>> validate_tv_parameters(300, 0.03)
    (300, 0.03)
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


def validate_joint_channels(joint_channels, n_slices: int) -> int:
    """Check that ``joint_channels`` divides the ``n_slices`` of a stack; return it as int.

    Parameters
    ----------
    joint_channels : int
        Channels (lines) stacked along the slices and joined by one total variation.
    n_slices : int
        The stack's slices (channels x slices per channel).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        Not a positive integer, or not a divisor of ``n_slices``.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.poisson_tv import validate_joint_channels
    >>> validate_joint_channels(2, 8)  # two lines' channels of 4 slices each, stacked
    2
    """
    if isinstance(joint_channels, bool) or not isinstance(joint_channels, (int, np.integer)) \
            or joint_channels < 1 or n_slices % joint_channels:
        raise ValueError(f"joint_channels must be a positive integer dividing the stack's "
                         f"{n_slices} slices (channels x slices), got {joint_channels!r}.")
    return int(joint_channels)


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _dual_tv(x_bar, q_z, q_x, n_z, n_x, sigma, bound, n_channels):
    """``q <- project_{|q| <= bound}(q + sigma grad x_bar)`` per voxel and slice.

    The columns are ``n_channels`` blocks of slices (channel-major): column ``s`` of every
    block is the same slice, and their gradients share one ball (joint TV). One channel is
    each slice's own TV. The innermost loops run along the contiguous slices (vectorised).
    """
    per_channel = x_bar.shape[1] // n_channels
    limit = bound * bound
    for z in numba.prange(n_z):
        norm2 = np.empty(per_channel, x_bar.dtype)
        for x in range(n_x):
            p = z * n_x + x
            below = p + n_x if z < n_z - 1 else p  # a zero difference at the far edges
            right = p + 1 if x < n_x - 1 else p
            norm2[:] = 0.0
            for c in range(n_channels):
                first = c * per_channel
                for s in range(per_channel):
                    col = first + s
                    here = x_bar[p, col]
                    a = q_z[p, col] + sigma * (x_bar[below, col] - here)
                    b = q_x[p, col] + sigma * (x_bar[right, col] - here)
                    q_z[p, col] = a
                    q_x[p, col] = b
                    norm2[s] += a * a + b * b
            for c in range(n_channels):
                first = c * per_channel
                for s in range(per_channel):
                    if norm2[s] > limit:
                        scale = bound / np.sqrt(norm2[s])
                        q_z[p, first + s] *= scale
                        q_x[p, first + s] *= scale


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


def _channel_weights(level: np.ndarray, n_channels: int) -> np.ndarray:
    """Each column's likelihood weight under a joint TV: its level over the slice's mean level.

    The joint problem is the Poisson likelihood of the counts themselves (each line's own
    statistics: a line with fewer counts is regularised more) plus the joint TV of the lines
    in their own units (``x_c / level_c``), divided by the mean level so that scaling every
    count by ``c`` leaves the weights, and ``tv_weight``'s meaning, unchanged.
    """
    per_line = level.reshape(n_channels, -1)
    return (per_line / per_line.mean(axis=0, keepdims=True)).reshape(-1).astype(np.float32)


def _poisson_tv_steps(projector: Projector, sinograms: np.ndarray, tv_weight: float,
                      ray_weights=None, support=None, joint_channels: int = 1,
                      backend: str = "cpu"):
    """Yield, after each PDHG iteration, a function that copies the iterate out."""
    g = projector.geometry
    backend = backends.resolve_backend(backend)
    joint_channels = validate_joint_channels(joint_channels, len(sinograms))
    inputs = _counting_inputs(projector, sinograms, ray_weights, support)
    weights, mask, level = inputs.weights, inputs.mask, inputs.level
    n_slices = level.size
    if joint_channels > 1:
        weights = weights * _channel_weights(level, joint_channels)[None, :]
    sigma = _inverse_or_zero(inputs.row_sums)
    tau = (mask / (np.asarray(projector.column_sums, np.float32) + 4.0)).astype(np.float32)
    bound = np.float32(tv_weight * g.n_tilts)
    if backend != "cpu":
        yield from _array_steps.poisson_tv_steps(backends._array_module(backend), projector,
                                                 inputs, weights, tau, bound, joint_channels)
        return
    # Each slice in units of the constant that gives its counts (ML-EM's start): the
    # minimiser scales with the counts but PDHG's steps do not, so without this the
    # iterations needed would grow with the dose.
    counts = np.ascontiguousarray(inputs.counts / level[None, :], dtype=np.float32)
    volume = np.array(np.broadcast_to(inputs.observed, (g.n_pixels, n_slices)), np.float32,
                      order="C")
    x_bar = volume.copy()
    dual = np.zeros((g.n_rays, n_slices), np.float32)
    projected = np.empty_like(dual)
    back = np.empty_like(volume)
    q_z, q_x = np.zeros_like(volume), np.zeros_like(volume)
    while True:
        _sparse.project(projector.matrix, projector.matrix_t, x_bar, projected)
        _dual_poisson(dual, projected, counts, weights, sigma)
        if bound > 0:
            _dual_tv(x_bar, q_z, q_x, g.n_z, g.n_x, np.float32(0.5), bound, joint_channels)
        _sparse.csr_matmat(projector.matrix_t, dual, back)
        _primal(volume, x_bar, back, q_z, q_x, g.n_z, g.n_x, tau)
        yield _scaled_snapshot(volume, level, (n_slices, g.n_z, g.n_x))


def _scaled_snapshot(volume: np.ndarray, level: np.ndarray, shape: tuple):
    """:func:`~.sirt._pixel_major_snapshot` of the iterate in counts (times ``level``).

    No live ``pixel_major`` view: the iterate is held in each slice's own units.
    """
    def copy_out(columns: slice | None = None):
        return _pixel_major_snapshot(volume * level[None, :], shape)(columns)

    return copy_out


def poisson_tv(projector: Projector, sinograms: np.ndarray, iterations: int,
               tv_weight: float, callback: Callable[[int], None] | None = None,
               ray_weights: np.ndarray | None = None, support: np.ndarray | None = None,
               columns: slice | None = None, joint_channels: int = 1,
               backend: str = "cpu") -> np.ndarray:
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
    joint_channels : int
        The stack is this many channels (X-ray lines) of ``n_slices / joint_channels``
        slices each, channel-major, regularised by one joint total variation per slice
        (see the module text); 1 (default): every slice by itself.
    backend : {"cpu", "cupy", "auto"}
        Where the iterations run (see :func:`.sirt.sirt`). Input and output stay numpy.

    Returns
    -------
    numpy.ndarray
        float32 ``(n_slices, n_z, n_x)``, >= 0.

    Raises
    ------
    ValueError
        Bad shapes, NaN or negative counts, bad iterations or ``tv_weight``, or
        ``joint_channels`` not a positive divisor of ``n_slices``.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_sinograms
    >>> demo = demo_sinograms()  # a 32 x 32 core-shell slice at 13 tilts, (1, 13, 32)
    >>> from hyperspy_hebt.tomography.poisson_tv import poisson_tv
    >>> poisson_tv(demo.projector, demo.sinograms, 100, tv_weight=0.03).shape
    (1, 32, 32)
    """
    iterations, tv_weight = validate_tv_parameters(iterations, tv_weight)
    steps = _poisson_tv_steps(projector, sinograms, tv_weight, ray_weights, support,
                              joint_channels, backend)
    return _run_steps(steps, iterations, callback, columns)
