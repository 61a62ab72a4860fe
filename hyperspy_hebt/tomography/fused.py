"""Fused EDS + ADF reconstruction: Poisson EDS, ADF as a power of the lines, total variation.

After Schwartz et al. (Nature Communications 15, 3555, 2024), on this package's projector
and units. Per slice, the line volumes ``x_c`` (counts per voxel, ``c`` over the X-ray
lines) minimise::

    sum_c NLL(W x_c; p_c)  +  (P/2) sum_r v_r ((W s(x))_r - a_r)^2  +  lambda JTV(x),
    s(x) = sum_c q_c x_c^gamma,     x >= 0,

the Poisson negative log-likelihood of each line's counts ``p_c``, a Gaussian term that asks
the ADF ``a`` (ray weights ``v``, 0: clipped or invalid) to be the projection of a power of
the lines (``gamma = 1``: HEBT's linear model with ``q`` its response ratios; the issue's
``sum_A (w_A c_A)^gamma`` is ``q = w^gamma``), and the lines' total variation, joint over
the lines or each line's own (as :mod:`.poisson_tv`). ``P`` is the ADF's precision: the
inverse variance of its departure from the model per ray (noise and model error together,
in ADF units squared).

Units as :mod:`.poisson_tv`: each line's slice over its level ``l_c`` and the ADF over its
own ``l_a``; divided by the lines' mean level ``l``, the objective is the joint Poisson + TV
one plus ``(mu/2) sum_r v_r (W s~ - a~)_r^2`` with ``mu = P l_a^2 / l`` and ``s~ = sum_c
kappa_c u_c^gamma``, ``kappa_c = q_c l_c^gamma / l_a``.

Solver: the nonlinear primal-dual hybrid gradient method (Valkonen 2014) with the diagonal
preconditioning of Pock and Chambolle: the ADF term's operator ``u -> W s~(u)`` is
linearised at the current iterate each iteration (Jacobian ``W diag(gamma kappa_c
u_c^(gamma-1))``), and the steps follow it. With ``gamma = 1`` the operator is linear and
this is the preconditioned PDHG of :mod:`.poisson_tv` with one more block of rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from . import _array_steps, _sparse, backends
from .mlem import _counting_inputs, _levels, _observed_voxels
from .poisson_tv import (
    _channel_weights,
    _dual_poisson,
    _dual_tv,
    _scaled_snapshot,
    validate_tv_parameters,
)
from .projector import Projector, _inverse_or_zero
from .sirt import _ray_weight_columns, _run_steps

__all__ = ["AdfPowerFit", "fit_adf_power", "fused", "validate_fused_parameters"]


def validate_fused_parameters(gamma, adf_precision, coefficients, n_lines: int):
    """Check ``gamma`` (>= 1), ``adf_precision`` (>= 0) and ``coefficients`` (k, >= 0).

    Parameters
    ----------
    gamma : float
        Power of the ADF model (>= 1).
    adf_precision : float
        Inverse variance of the ADF's departure from the model (>= 0).
    coefficients : sequence of float
        ``q_c`` per line (>= 0).
    n_lines : int
        How many lines the coefficients must cover.

    Returns
    -------
    tuple
        ``(gamma, adf_precision, coefficients)`` as float, float, float64 array.

    Raises
    ------
    ValueError
        ``gamma`` not a finite number >= 1, ``adf_precision`` not finite and >= 0, or
        ``coefficients`` not ``n_lines`` finite numbers >= 0.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.fused import validate_fused_parameters
    >>> validate_fused_parameters(1.0, 0.5, [3.0, 1.0], n_lines=2)
    (1.0, 0.5, array([3., 1.]))
    """
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.floating)) \
            or not np.isfinite(gamma) or gamma < 1:
        raise ValueError(f"gamma must be a finite number >= 1 (1: the ADF linear in the "
                         f"lines, as HEBT), got {gamma!r}.")
    if isinstance(adf_precision, bool) or not isinstance(
            adf_precision, (int, float, np.floating)) or not np.isfinite(adf_precision) \
            or adf_precision < 0:
        raise ValueError(f"adf_precision must be a finite number >= 0 (0: the ADF is not "
                         f"used), got {adf_precision!r}.")
    values = np.asarray(coefficients, dtype=float)
    if values.shape != (n_lines,) or not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"coefficients must be {n_lines} finite numbers >= 0 (one per "
                         f"line), got {coefficients!r}.")
    return float(gamma), float(adf_precision), values


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _power_sum(x_bar, kappa, gamma, n_channels, out):
    """``out[p, s] = sum_c kappa_(c,s) spow(x_bar[p, (c,s)], gamma)`` (signed power).

    The signed power keeps PDHG's extrapolated point (which may dip below 0) exact for
    ``gamma = 1``.
    """
    n_pixels, n_slices = out.shape
    for p in numba.prange(n_pixels):
        for s in range(n_slices):
            total = 0.0
            for c in range(n_channels):
                col = c * n_slices + s
                v = x_bar[p, col]
                if gamma == 1.0:
                    total += kappa[col] * v
                elif v >= 0.0:
                    total += kappa[col] * v ** gamma
                else:
                    total -= kappa[col] * (-v) ** gamma
            out[p, s] = total


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _jacobian(volume, kappa, gamma, n_channels, jac, jac_total):
    """``jac[p, (c,s)] = gamma kappa u^(gamma-1)`` at the iterate; ``jac_total`` its sum."""
    n_pixels, n_slices = jac_total.shape
    for p in numba.prange(n_pixels):
        for s in range(n_slices):
            total = 0.0
            for c in range(n_channels):
                col = c * n_slices + s
                if gamma == 1.0:
                    value = kappa[col]
                else:
                    value = gamma * kappa[col] * volume[p, col] ** (gamma - 1.0)
                jac[p, col] = value
                total += value
            jac_total[p, s] = total


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _dual_gaussian(dual, projected, target, weights, sigma, mu):
    """``y <- prox_{sigma F*}(y + sigma K x_bar)`` for ``F(v) = mu/2 sum w (v - a)^2``."""
    n_rays, n_slices = dual.shape
    shared = weights.shape[1] == 1
    for r in numba.prange(n_rays):
        for s in range(n_slices):
            m = mu[s] * weights[r, 0 if shared else s]
            step = sigma[r, s]
            if m <= 0.0 or step <= 0.0:
                dual[r, s] = 0.0
                continue
            v = dual[r, s] + step * projected[r, s]
            dual[r, s] = m * (v - step * target[r, s]) / (m + step)


@numba.njit(parallel=True, fastmath=True, nogil=True, cache=True)
def _primal_fused(volume, x_bar, back, back_adf, q_z, q_x, n_z, n_x, column_sums, mask,
                  jac, n_channels):
    """``u <- max(0, u - tau (W^T y_c + J_c W^T y_a - div q_c))``; ``x_bar <- 2 u_new - u``.

    ``tau = 1 / (column sum (1 + J_c) + 4)`` per voxel and column (Pock and Chambolle).
    """
    n_slices = back_adf.shape[1]
    for z in numba.prange(n_z):
        for x in range(n_x):
            p = z * n_x + x
            if mask[p] == 0.0:
                continue
            for c in range(n_channels):
                for s in range(n_slices):
                    col = c * n_slices + s
                    divergence = 0.0
                    if z < n_z - 1:
                        divergence += q_z[p, col]
                    if z > 0:
                        divergence -= q_z[p - n_x, col]
                    if x < n_x - 1:
                        divergence += q_x[p, col]
                    if x > 0:
                        divergence -= q_x[p - 1, col]
                    j = jac[p, col]
                    step = 1.0 / (column_sums[p] * (1.0 + j) + 4.0)
                    old = volume[p, col]
                    new = old - step * (back[p, col] + j * back_adf[p, s] - divergence)
                    if new < 0.0:
                        new = 0.0
                    volume[p, col] = new
                    x_bar[p, col] = 2.0 * new - old


def _fused_steps(projector: Projector, eds: np.ndarray, adf: np.ndarray, coefficients,
                 gamma: float, tv_weight: float, adf_precision: float, eds_weights=None,
                 adf_weights=None, support=None, joint: bool = True, backend: str = "cpu"):
    """Yield, after each iteration, a function that copies the iterate out."""
    g = projector.geometry
    backend = backends.resolve_backend(backend)
    adf = np.asarray(adf)
    n_lines = len(coefficients)
    if adf.ndim != 3 or adf.shape[1:] != (g.n_tilts, g.n_detector) \
            or eds.shape[0] != n_lines * adf.shape[0]:
        raise ValueError(f"eds must be ({n_lines} x n_slices, {g.n_tilts}, {g.n_detector}) "
                         f"and adf (n_slices, {g.n_tilts}, {g.n_detector}), got "
                         f"{np.shape(eds)} and {adf.shape}.")
    if not np.isfinite(adf).all():
        raise ValueError("adf contains NaN or infinite values; give them ray weight 0.")
    n_slices = adf.shape[0]
    inputs = _counting_inputs(projector, eds, eds_weights, support)
    mask, level = inputs.mask, inputs.level
    weights = inputs.weights * _channel_weights(level, n_lines)[None, :]
    adf_columns = np.ascontiguousarray(adf.reshape(n_slices, g.n_rays).T, np.float32)
    adf_w = _ray_weight_columns(adf_weights, adf.shape, g.n_rays, "adf_weights")
    adf_w = np.ones((g.n_rays, 1), np.float32) if adf_w is None else adf_w
    adf_level = _levels(adf_columns, adf_w, inputs.row_sums)
    per_line = level.reshape(n_lines, n_slices)
    mean_level = per_line.mean(axis=0)
    mu = (adf_precision * adf_level.astype(float) ** 2 / mean_level).astype(np.float32)
    # Without the ADF (P = 0) its rows drop out of the operator too (kappa 0): the steps,
    # and so the iterates, are joint Poisson + TV's.
    kappa = (float(adf_precision > 0) * np.asarray(coefficients, float)[:, None]
             * per_line.astype(float) ** gamma / adf_level[None, :]).reshape(-1).astype(
                 np.float32)
    target = np.ascontiguousarray(adf_columns / adf_level[None, :], np.float32)
    counts = np.ascontiguousarray(inputs.counts / level[None, :], dtype=np.float32)
    sigma = _inverse_or_zero(inputs.row_sums)
    column_sums = (np.asarray(projector.column_sums, np.float32) * mask).astype(np.float32)
    bound = np.float32(tv_weight * g.n_tilts)
    gamma32 = np.float32(gamma)
    # A voxel that no valid EDS or ADF ray crosses has no data: it starts (and, but for the
    # total variation, stays) at 0, as SIRT's.
    adf_observed = np.broadcast_to(_observed_voxels(projector, adf_w, mask),
                                   (g.n_pixels, n_slices))
    volume = np.ascontiguousarray(np.maximum(
        np.broadcast_to(inputs.observed, (g.n_pixels, n_lines * n_slices)),
        np.tile(adf_observed, (1, n_lines))), np.float32)
    tv_channels = n_lines if joint else 1
    if backend != "cpu":
        yield from _array_steps.fused_steps(
            backends._array_module(backend), projector, volume=volume, counts=counts,
            weights=weights, sigma=sigma, target=target, adf_weights=adf_w, mu=mu,
            kappa=kappa, gamma=gamma32, column_sums=column_sums, mask=mask, bound=bound,
            level=level, n_lines=n_lines, tv_channels=tv_channels)
        return
    x_bar = volume.copy()
    dual = np.zeros((g.n_rays, n_lines * n_slices), np.float32)
    dual_adf = np.zeros((g.n_rays, n_slices), np.float32)
    projected = np.empty_like(dual)
    projected_adf = np.empty_like(dual_adf)
    model = np.empty((g.n_pixels, n_slices), np.float32)
    back = np.empty_like(volume)
    back_adf = np.empty((g.n_pixels, n_slices), np.float32)
    q_z, q_x = np.zeros_like(volume), np.zeros_like(volume)
    jac = np.empty_like(volume)
    jac_total = np.empty((g.n_pixels, n_slices), np.float32)
    row_sums_adf = np.empty_like(dual_adf)
    sigma_adf = np.empty_like(dual_adf)

    def adf_steps():
        """The ADF rows' steps ``1 / (W J_total)_r`` at the current Jacobian."""
        _jacobian(volume, kappa, gamma32, n_lines, jac, jac_total)
        _sparse.project(projector.matrix, projector.matrix_t, jac_total, row_sums_adf)
        np.divide(1.0, row_sums_adf, out=sigma_adf, where=row_sums_adf > 0)
        sigma_adf[row_sums_adf <= 0] = 0.0

    adf_steps()
    while True:
        _sparse.project(projector.matrix, projector.matrix_t, x_bar, projected)
        _dual_poisson(dual, projected, counts, weights, sigma)
        _power_sum(x_bar, kappa, gamma32, n_lines, model)
        _sparse.project(projector.matrix, projector.matrix_t, model, projected_adf)
        _dual_gaussian(dual_adf, projected_adf, target, adf_w, sigma_adf, mu)
        if bound > 0:
            _dual_tv(x_bar, q_z, q_x, g.n_z, g.n_x, np.float32(0.5), bound, tv_channels)
        _sparse.csr_matmat(projector.matrix_t, dual, back)
        _sparse.csr_matmat(projector.matrix_t, dual_adf, back_adf)
        _primal_fused(volume, x_bar, back, back_adf, q_z, q_x, g.n_z, g.n_x, column_sums,
                      mask, jac, n_lines)
        if gamma != 1.0:
            adf_steps()
        yield _scaled_snapshot(volume, level, (n_lines * n_slices, g.n_z, g.n_x))


def fused(projector: Projector, eds: np.ndarray, adf: np.ndarray, coefficients,
          gamma: float, iterations: int, tv_weight: float, adf_precision: float,
          callback: Callable[[int], None] | None = None, eds_weights: np.ndarray | None = None,
          adf_weights: np.ndarray | None = None, support: np.ndarray | None = None,
          columns: slice | None = None, joint: bool = True,
          backend: str = "cpu") -> np.ndarray:
    """Reconstruct the lines of a stack of slices from their counts and the ADF, fused.

    Parameters
    ----------
    projector : Projector
        System matrix of the geometry.
    eds : numpy.ndarray
        ``(k x n_slices, n_tilts, n_detector)`` measured counts >= 0, line-major (the
        first ``n_slices`` are the first line's).
    adf : numpy.ndarray
        ``(n_slices, n_tilts, n_detector)`` ADF intensities (no offset: a dark level
        must be subtracted first).
    coefficients : sequence of float
        ``q_c >= 0`` per line: ADF per count^gamma (see the module text). They, ``gamma``
        and ``adf_precision`` must describe the data (fit them with :func:`fit_adf_power`,
        as ``reconstruct_fused`` does): far from the data's, the linearised iteration can
        oscillate (measured with q 5x too large and gamma 1.6 for a linear ADF: a 1e-7
        change of the ADF grew to 0.86 of the largest voxel in 100 iterations; with the
        model the ADF follows, 2e-6).
    gamma : float
        Power of the ADF model (>= 1; 1: linear, as HEBT).
    iterations : int
        Iterations (>= 1): a few hundred to converge.
    tv_weight : float
        Weight of the total variation per tilt (>= 0), as :func:`.poisson_tv.poisson_tv`.
    adf_precision : float
        ``P``: inverse variance of the ADF's departure from the model per ray (1 / ADF
        units squared; 0: the ADF is ignored and this is joint Poisson + TV).
    callback : callable, optional
        Called with the number of each completed iteration (1-based).
    eds_weights : numpy.ndarray, optional
        Ray weights in [0, 1] shaped like ``eds`` (0: left out).
    adf_weights : numpy.ndarray, optional
        Ray weights in [0, 1] shaped like ``adf`` (0: clipped, saturated or invalid).
    support : numpy.ndarray of bool, optional
        ``(n_z, n_x)``: voxels outside it stay 0.
    columns : slice, optional
        Grid columns to return.
    joint : bool
        One total variation joint over the lines (default), or each line's own.
    backend : {"cpu", "cupy", "auto"}
        Where the iterations run (see :func:`.sirt.sirt`). Input and output stay numpy.

    Returns
    -------
    numpy.ndarray
        float32 ``(k x n_slices, n_z, n_x)`` line volumes in counts per voxel, >= 0.

    Raises
    ------
    ValueError
        Bad shapes, NaN or negative counts, a non-finite ADF, or bad parameters.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.fused import fused
    >>> from hyperspy_hebt.simulation import demo_sinograms
    >>> demo = demo_sinograms(n_x=16)  # a 16 x 16 core-shell slice at 13 tilts
    >>> projector = demo.projector
    >>> volumes = np.stack([5.0 * demo.core, 2.0 * demo.shell])[:, None]  # (lines, slices, z, x)
    >>> adf = projector.forward(3.0 * volumes[0] + 1.0 * volumes[1])  # linear in the lines
    >>> expected = np.concatenate([projector.forward(v) for v in volumes])  # (2 x 1, 13, 16)
    >>> counts = np.random.default_rng(0).poisson(expected).astype(np.float32)
    >>> lines = fused(projector, counts, adf, [3.0, 1.0], gamma=1.0, iterations=100,
    ...               tv_weight=0.01, adf_precision=1.0)
    >>> lines.shape  # (lines x slices, z, x)
    (2, 16, 16)
    >>> round(float(lines[0][demo.core].mean()), 1)  # the core's 5 counts per voxel
    5.0
    """
    n_lines = len(np.atleast_1d(coefficients))
    gamma, adf_precision, coefficients = validate_fused_parameters(
        gamma, adf_precision, np.atleast_1d(coefficients), n_lines)
    iterations, tv_weight = validate_tv_parameters(iterations, tv_weight)
    steps = _fused_steps(projector, np.asarray(eds), adf, coefficients, gamma, tv_weight,
                         adf_precision, eds_weights, adf_weights, support, joint, backend)
    return _run_steps(steps, iterations, callback, columns)


@dataclass(frozen=True)
class AdfPowerFit:
    """The ADF regressed on the projections of powers of the lines' volumes.

    Attributes
    ----------
    gamma : float
        The power with the highest R^2 among those tried.
    coefficients : numpy.ndarray
        ``q_c`` at ``gamma`` (ADF per count^gamma).
    r_squared : float
        At ``gamma``.
    residual_variance : float
        Weighted mean squared residual at ``gamma`` (ADF units squared): the ADF's
        departure from the model, noise and model error together.
    table : dict
        ``gamma`` -> R^2 for every power tried.
    offset : float
        The ADF's fitted offset ``b`` (a dark level; 0 when not fitted): the model is
        ``a = W sum_c q_c x_c^gamma + b``.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.fused import fit_adf_power
    >>> from hyperspy_hebt.simulation import demo_sinograms
    >>> demo = demo_sinograms(n_x=16)  # a 16 x 16 core-shell slice at 13 tilts
    >>> projector = demo.projector
    >>> volumes = np.stack([5.0 * demo.core, 2.0 * demo.shell])[:, None]  # (lines, slices, z, x)
    >>> adf = projector.forward(3.0 * volumes[0] + 1.0 * volumes[1])  # linear in the lines
    >>> fit = fit_adf_power(projector, volumes, adf, gammas=(1.0, 1.5))
    >>> fit.gamma, np.round(fit.coefficients, 3), round(fit.r_squared, 3)
    (1.0, array([3., 1.]), 1.0)
    """

    gamma: float
    coefficients: np.ndarray
    r_squared: float
    residual_variance: float
    table: dict
    offset: float = 0.0


def fit_adf_power(projector: Projector, volumes: np.ndarray, adf: np.ndarray, gammas,
                  adf_weights: np.ndarray | None = None, offset: bool = False
                  ) -> AdfPowerFit:
    """Fit ``a = W sum_c q_c x_c^gamma (+ b)`` for each ``gamma`` of ``gammas``; keep the best.

    The best: the highest R^2.

    Non-negative least squares of the ADF on the projections of ``x_c^gamma``, on the rays
    whose weight is > 0 (:func:`.bimodal.fit_response_model`).

    Parameters
    ----------
    projector : Projector
    volumes : numpy.ndarray
        ``(k, n_slices, n_z, n_x)`` line volumes >= 0 (counts per voxel), e.g. joint
        Poisson + TV's.
    adf : numpy.ndarray
        ``(n_slices, n_tilts, n_detector)``.
    gammas : sequence of float
        Powers to try (each >= 1).
    adf_weights : numpy.ndarray, optional
        Shaped like ``adf``; rays of weight 0 are not fitted.
    offset : bool
        Fit an offset ``b`` too (a dark level, either sign).

    Returns
    -------
    AdfPowerFit

    Examples
    --------
    An ADF that follows the squares of the lines' voxels: the power 2 is found.

    >>> from hyperspy_hebt.tomography.fused import fit_adf_power
    >>> from hyperspy_hebt.simulation import demo_sinograms
    >>> demo = demo_sinograms(n_x=16)  # a 16 x 16 core-shell slice at 13 tilts
    >>> projector = demo.projector
    >>> volumes = np.stack([5.0 * demo.core, 2.0 * demo.shell])[:, None]  # (lines, slices, z, x)
    >>> adf = projector.forward(3.0 * volumes[0] + 1.0 * volumes[1])  # linear in the lines
    >>> squared = projector.forward(0.5 * volumes[0] ** 2 + 0.5 * volumes[1] ** 2)
    >>> fit = fit_adf_power(projector, volumes, squared, gammas=(1.0, 2.0))
    >>> fit.gamma, np.round(fit.coefficients, 3)
    (2.0, array([0.5, 0.5]))
    """
    from .bimodal import fit_response_model

    volumes = np.maximum(np.asarray(volumes, np.float64), 0.0)
    k, n_slices = volumes.shape[:2]
    mask = None if adf_weights is None else np.asarray(adf_weights) > 0
    results = {}
    for gamma in gammas:
        gamma = validate_fused_parameters(gamma, 0.0, np.zeros(k), k)[0]
        powered = (volumes ** gamma).astype(np.float32).reshape((k * n_slices,)
                                                                + volumes.shape[2:])
        basis = projector.forward(powered).reshape((k, n_slices) + adf.shape[1:])
        q, b, r_squared = fit_response_model(basis, adf, mask=mask, offset=offset)
        residual = (np.asarray(adf, float) - b - np.tensordot(q, basis, axes=1))
        kept = residual if mask is None else residual[mask]
        results[gamma] = (q, float(r_squared), float(np.mean(kept ** 2)), float(b))
    best = max(results, key=lambda gamma: results[gamma][1])
    q, r_squared, variance, b = results[best]
    return AdfPowerFit(best, q, r_squared, variance,
                       {gamma: value[1] for gamma, value in results.items()}, b)
