"""HAADF-EDS bimodal tomography (HEBT; Zhong et al. 2017, paper Eq. 15-17).

Unknowns ``Xb_A`` (one image per element, ``Xb_A = z_A C_A rho``), data
``(1 - alpha) r_A I_A`` for each element and ``alpha I_H`` for the ADF signal,
block operator ``Wb`` with ``(1 - alpha) W`` on the diagonal and a last block
row ``alpha W ... alpha W``. SIRT on that system (``R = 1 / row sums``,
``C = 1 / column sums`` of ``Wb``) never needs ``Wb``: its row sums are
``(1 - alpha) w_i`` (EDS rows) and ``k alpha w_i`` (ADF rows), its column sums
those of ``W``, and one iteration reduces to::

    P_A   = W Xb_A                                  (forward, all elements at once)
    e_A   = (r_A I_A - P_A) / w_i                   (EDS residual, alpha cancels)
    h     = (I_H - sum_A P_A) / (k w_i)             (ADF residual; W sum_A Xb_A = sum_A P_A)
    Xb_A <- max(0, Xb_A + lambda / c_j W^T [(1 - alpha) e_A + alpha h])

so an iteration costs one forward and one back-projection of ``k`` images per
slice, like a k-line EDS SIRT, plus element-wise work. With ``alpha = 0`` it is
exactly SIRT of the ratio-scaled EDS maps ``r_A I_A``.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from . import _array_steps, _sparse, backends
from .projector import Projector
from .sirt import (
    _pixel_major_snapshot,
    _ray_weight_columns,
    _ray_weight_rows,
    _run_path,
    _run_steps,
    _support_scales,
    _validate_iteration_counts,
    validate_sirt_parameters,
)

__all__ = ["hebt", "hebt_path", "fit_response_model", "fit_response_ratios", "validate_alpha"]


def validate_alpha(alpha) -> float:
    """Check the ADF weight: a number in [0, 1).

    Parameters
    ----------
    alpha : float
        The weight of the ADF term.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        ``alpha`` is not a number.
    ValueError
        ``alpha`` is outside [0, 1).

    Examples
    --------
    >>> from hyperspy_hebt.tomography.bimodal import validate_alpha
    >>> validate_alpha(0.8)
    0.8
    >>> validate_alpha(1.5)
    Traceback (most recent call last):
        ...
    ValueError: alpha must lie in [0, 1) (0: EDS only; towards 1: ADF dominates), got 1.5.
    """
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise TypeError(f"alpha must be a number in [0, 1), got {alpha!r}.") from None
    if not (0.0 <= alpha < 1.0):
        raise ValueError(
            f"alpha must lie in [0, 1) (0: EDS only; towards 1: ADF dominates), got {alpha}."
        )
    return alpha


def fit_response_ratios(eds_maps: np.ndarray, adf_map: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative least squares of ``I_H`` on the ``I_A`` (paper Eq. 15).

    Parameters
    ----------
    eds_maps : numpy.ndarray
        ``(k, ...)`` line intensities of the k elements, every pixel of every tilt.
    adf_map : numpy.ndarray
        ADF intensities, same shape as one EDS map.

    Returns
    -------
    ratios : numpy.ndarray
        ``r_A >= 0`` minimising ``||I_H - sum_A r_A I_A||``.
    r_squared : float
        Coefficient of determination of that fit (1 - SS_res / SS_tot).

    Examples
    --------
    >>> from hyperspy_hebt.simulation import core_shell_phantom
    >>> from hyperspy_hebt.tomography.bimodal import fit_response_ratios
    >>> core, shell = core_shell_phantom(32)
    >>> ratios, r_squared = fit_response_ratios(np.stack([core, shell]), 3 * core + 2 * shell)
    >>> np.round(ratios, 3), round(r_squared, 3)
    (array([3., 2.]), 1.0)
    """
    ratios, _, r_squared = fit_response_model(eds_maps, adf_map)
    return ratios, r_squared


def fit_response_model(eds_maps: np.ndarray, adf_map: np.ndarray, mask=None,
                       offset: bool = False) -> tuple[np.ndarray, float, float]:
    """``I_H = sum_A r_A I_A (+ b)`` by non-negative least squares, on valid pixels.

    Parameters
    ----------
    eds_maps : numpy.ndarray
        ``(k, ...)`` line intensities.
    adf_map : numpy.ndarray
        ADF intensities shaped like one EDS map.
    mask : numpy.ndarray of bool, optional
        Pixels to fit (False: saturated, clipped or invalid); default all.
    offset : bool
        Fit an ADF offset ``b`` (a dark level) as well; it may be of either sign.

    Returns
    -------
    ratios : numpy.ndarray
        ``r_A >= 0``.
    offset : float
        ``b`` (0 when not fitted).
    r_squared : float
        Over the fitted pixels.

    Raises
    ------
    ValueError
        ``adf_map`` or ``mask`` does not have one value per pixel of the EDS maps.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import core_shell_phantom
    >>> from hyperspy_hebt.tomography.bimodal import fit_response_model
    >>> core, shell = core_shell_phantom(32)
    >>> ratios, offset, r_squared = fit_response_model(
    ...     np.stack([core, shell]).astype(float), 3 * core + 2 * shell + 0.5, offset=True)
    >>> np.round(ratios, 3), round(float(offset), 3), round(float(r_squared), 3)
    (array([3., 2.]), 0.5, 1.0)
    """
    from scipy.optimize import nnls

    design = np.asarray(eds_maps, dtype=float).reshape(eds_maps.shape[0], -1).T
    target = np.asarray(adf_map, dtype=float).ravel()
    if design.shape[0] != target.size:
        raise ValueError(
            f"adf_map has {target.size} values but each EDS map has {design.shape[0]}."
        )
    if mask is not None:
        keep = np.asarray(mask, dtype=bool).ravel()
        if keep.size != target.size:
            raise ValueError(f"mask has {keep.size} values for {target.size} pixels.")
        design, target = design[keep], target[keep]
    k = design.shape[1]
    if offset:
        ones = np.ones((design.shape[0], 1))
        design = np.hstack([design, ones, -ones])  # b = b+ - b-, both >= 0 for NNLS
    # Normal equations keep the solve small whatever the number of pixels.
    gram = design.T @ design
    moment = design.T @ target
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    keep = eigenvalues > eigenvalues.max() * 1e-12
    root = np.sqrt(eigenvalues[keep])[:, None] * eigenvectors[:, keep].T
    rhs = (eigenvectors[:, keep].T @ moment) / np.sqrt(eigenvalues[keep])
    solution, _ = nnls(root, rhs)
    residual = target - design @ solution
    total = target - target.mean()
    ss_tot = float(total @ total)
    r_squared = 1.0 - float(residual @ residual) / ss_tot if ss_tot > 0 else float("nan")
    b = float(solution[k] - solution[k + 1]) if offset else 0.0
    return solution[:k], b, r_squared


@numba.njit(parallel=True, nogil=True, cache=True)
def _joint_residual(projected, eds, adf, weights, eds_weights, row_scale, n_elements, n_extra,
                    alpha, out):
    """Residual columns of the block system, element blocks first, then the extra volume.

    h = v_i (adf - sum_B P_B) / ((k + n_extra) w_i), the ADF residual (ADF weights v 0
    on excluded pixels); element blocks get (1 - alpha) u_i (eds - P)_A / w_i + alpha h
    (EDS weights u 0 where there is no valid data), the ADF-only block gets h (its
    column sums are alpha c_j, which cancels alpha). A weight array of size 0 means
    weight 1 everywhere (nothing to read).
    """
    n_rows, n_slices = adf.shape
    n_blocks = n_elements + n_extra
    adf_weighted = weights.size > 0
    eds_weighted = eds_weights.size > 0
    for i in numba.prange(n_rows):
        scale = row_scale[i]
        for s in range(n_slices):
            total = 0.0
            for a in range(n_blocks):
                total += projected[i, a * n_slices + s]
            h = scale * (adf[i, s] - total) / n_blocks
            if adf_weighted:
                h *= weights[i, s]
            eds_scale = (1.0 - alpha) * scale
            if eds_weighted:
                eds_scale *= eds_weights[i, s]
            for a in range(n_elements):
                c = a * n_slices + s
                out[i, c] = eds_scale * (eds[i, c] - projected[i, c]) + alpha * h
            for a in range(n_elements, n_blocks):
                out[i, a * n_slices + s] = h


def hebt(
    projector: Projector,
    eds_sinograms: np.ndarray,
    adf_sinograms: np.ndarray,
    response_ratios,
    alpha: float,
    iterations: int,
    relaxation: float = 1.0,
    positivity: bool = True,
    callback: Callable[[int], None] | None = None,
    adf_weights: np.ndarray | None = None,
    extra_volume: bool = False,
    eds_weights: np.ndarray | None = None,
    backend: str = "cpu",
    support: np.ndarray | None = None,
    columns: slice | None = None,
) -> np.ndarray:
    """Joint SIRT of k EDS sinogram stacks and one ADF stack.

    Parameters
    ----------
    projector : Projector
        System matrix of the geometry.
    eds_sinograms : numpy.ndarray
        ``(k, n_slices, n_tilts, n_detector)`` line intensities ``I_A``.
    adf_sinograms : numpy.ndarray
        ``(n_slices, n_tilts, n_detector)`` ADF intensities ``I_H``.
    response_ratios : sequence of float
        ``r_A >= 0`` per element (ADF counts per EDS count).
    alpha : float
        Weight of the ADF term, in [0, 1).
    iterations, relaxation, positivity, callback
        As for :func:`~hyperspy_hebt.tomography.sirt`.
    adf_weights : numpy.ndarray, optional
        ``(n_slices, n_tilts, n_detector)`` in [0, 1]: 0 drops an ADF pixel
        (saturated, clipped, outside the valid field) from the ADF term. The
        column sums keep every ray, a smaller (still convergent) step where
        pixels are dropped.
    extra_volume : bool
        Add an unknown volume seen by the ADF only (mass without a listed line:
        carbon support, FIB layers, unlisted elements), so that it does not leak
        into the listed elements.
    eds_weights : numpy.ndarray, optional
        ``(n_slices, n_tilts, n_detector)`` in [0, 1], shared by every element: 0
        drops a pixel from the EDS terms (no valid data after alignment). Give
        the same pixels weight 0 in ``adf_weights`` to drop them altogether.
    backend : {"cpu", "cupy", "auto"}
        Where the iterations run, as for :func:`~hyperspy_hebt.tomography.sirt`.
    support : numpy.ndarray of bool, optional
        ``(n_z, n_x)``: voxels outside it are held at 0 in every volume, the
        unlisted-mass volume included (:func:`~hyperspy_hebt.tomography.sirt._support_scales`).
    columns : slice, optional
        Grid columns (``x``) to return, as for :func:`~hyperspy_hebt.tomography.sirt`.

    Returns
    -------
    numpy.ndarray
        float32 ``(k, n_slices, n_z, n_x)`` (``k + 1`` with ``extra_volume``, the
        ADF-only volume last): ``Xb_A``, on the ADF scale (``z_A C_A rho`` up to
        the ADF dose constant).

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_sinograms
    >>> demo = demo_sinograms()  # a 32 x 32 core-shell slice at 13 tilts, (1, 13, 32)
    >>> from hyperspy_hebt.tomography.bimodal import hebt
    >>> eds = demo.line_sinograms  # the core's and the shell's, (lines, slices, tilts, x)
    >>> adf = 3 * eds[0] + 2 * eds[1]  # the ADF as 3 core + 2 shell
    >>> hebt(demo.projector, eds, adf, [3.0, 2.0], 0.8, 50).shape  # (lines, slices, z, x)
    (2, 1, 32, 32)
    """
    iterations, relaxation = validate_sirt_parameters(iterations, relaxation)
    steps = _hebt_steps(projector, eds_sinograms, adf_sinograms, response_ratios,
                        validate_alpha(alpha), relaxation, positivity, adf_weights,
                        extra_volume, eds_weights, backend, support)
    return _run_steps(steps, iterations, callback, columns)


def hebt_path(projector: Projector, eds_sinograms, adf_sinograms, response_ratios, alpha,
              iterations, relaxation: float = 1.0, positivity: bool = True,
              adf_weights=None, extra_volume: bool = False, eds_weights=None,
              backend: str = "cpu", support=None) -> list:
    """HEBT volumes after each of several iteration counts, from one run.

    Parameters as for :func:`hebt`, with ``iterations`` a sequence of counts.

    Parameters
    ----------
    projector, eds_sinograms, adf_sinograms, response_ratios, alpha
        As for :func:`hebt`.
    iterations : sequence of int
        Iteration counts at which to keep the volumes (each >= 1, any order).
    relaxation, positivity, adf_weights, eds_weights, backend, support
        As for :func:`hebt`.

    Returns
    -------
    list of numpy.ndarray
        ``(k, n_slices, n_z, n_x)`` volumes in the order of ``iterations``.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.bimodal import hebt_path
    >>> from hyperspy_hebt.simulation import demo_sinograms
    >>> demo = demo_sinograms(n_x=16)  # a 16 x 16 core-shell slice at 13 tilts
    >>> projector = demo.projector
    >>> volumes = np.stack([5.0 * demo.core, 2.0 * demo.shell])[:, None]  # (lines, slices, z, x)
    >>> adf = projector.forward(3.0 * volumes[0] + 1.0 * volumes[1])  # linear in the lines
    >>> eds = np.stack([projector.forward(v) for v in volumes])  # (lines, slices, tilts, px)
    >>> early, late = hebt_path(projector, eds, adf, [3.0, 1.0], 0.8, (10, 100))
    >>> early.shape  # (lines, slices, z, x)
    (2, 1, 16, 16)
    >>> on_adf_scale = 3.0 * volumes[0]  # HEBT's volumes are r_A x_A
    >>> [round(float(np.abs(v[0] - on_adf_scale).mean()), 2) for v in (early, late)]
    [2.46, 0.62]
    """
    wanted = _validate_iteration_counts(iterations, relaxation)
    steps = _hebt_steps(projector, eds_sinograms, adf_sinograms, response_ratios,
                        validate_alpha(alpha), float(relaxation), positivity, adf_weights,
                        extra_volume, eds_weights, backend, support)
    return _run_path(steps, wanted)


def _hebt_steps(projector, eds_sinograms, adf_sinograms, response_ratios, alpha, relaxation,
                positivity, adf_weights=None, extra_volume=False, eds_weights=None,
                backend="cpu", support=None):
    """Yield, after each HEBT iteration, a function that copies the iterate out.

    As ``(k + extra, n_slices, n_z, n_x)`` float32.
    """
    backend = backends.resolve_backend(backend)
    g = projector.geometry
    eds_sinograms = np.asarray(eds_sinograms)
    adf_sinograms = np.asarray(adf_sinograms)
    if eds_sinograms.ndim != 4 or eds_sinograms.shape[2:] != (g.n_tilts, g.n_detector):
        raise ValueError(
            f"eds_sinograms must have shape (k, n_slices, {g.n_tilts}, {g.n_detector}), "
            f"got {eds_sinograms.shape}."
        )
    k, n_slices = eds_sinograms.shape[:2]
    if adf_sinograms.shape != eds_sinograms.shape[1:]:
        raise ValueError(
            f"adf_sinograms must have shape {eds_sinograms.shape[1:]}, got {adf_sinograms.shape}."
        )
    ratios = np.asarray(response_ratios, dtype=float)
    if ratios.shape != (k,) or not np.all(np.isfinite(ratios)) or np.any(ratios < 0):
        raise ValueError(
            f"response_ratios must be {k} finite numbers >= 0, got {ratios.tolist()}."
        )
    for name, array in (("eds_sinograms", eds_sinograms), ("adf_sinograms", adf_sinograms)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contain NaN or infinite values.")
    n_extra = int(bool(extra_volume))
    scales = None if support is None else _support_scales(projector, support)
    if backend != "cpu":
        yield from _array_steps.hebt_steps(
            backends._array_module(backend), projector,
            (ratios[:, None, None] * eds_sinograms.reshape(k, n_slices, g.n_rays)
             ).astype(np.float32),
            np.ascontiguousarray(adf_sinograms.reshape(n_slices, g.n_rays), dtype=np.float32),
            _ray_weight_rows(adf_weights, adf_sinograms.shape, g.n_rays, "adf_weights"),
            _ray_weight_rows(eds_weights, adf_sinograms.shape, g.n_rays, "eds_weights"),
            alpha, relaxation, positivity, n_extra, scales)
        return
    unweighted = np.empty((0, 0), dtype=np.float32)  # weight 1 everywhere, see _joint_residual
    weights = _ray_weight_columns(adf_weights, adf_sinograms.shape, g.n_rays, "adf_weights")
    weights = unweighted if weights is None else weights
    eds_columns = _ray_weight_columns(eds_weights, adf_sinograms.shape, g.n_rays, "eds_weights")
    eds_columns = unweighted if eds_columns is None else eds_columns
    # Columns grouped by element: [element 0 slices ..., element 1 slices ...].
    scaled = (ratios[:, None, None, None] * eds_sinograms).reshape(k * n_slices, g.n_rays)
    eds = np.ascontiguousarray(scaled.T, dtype=np.float32)
    adf = np.ascontiguousarray(adf_sinograms.reshape(n_slices, g.n_rays).T, dtype=np.float32)
    row_scale, column_scale = scales or _support_scales(projector, None)
    column_scale = relaxation * column_scale
    volume = np.zeros((g.n_pixels, (k + n_extra) * n_slices), dtype=np.float32)
    projected = np.empty((g.n_rays, (k + n_extra) * n_slices), dtype=np.float32)
    residual = np.empty_like(projected)
    while True:
        _sparse.project(projector.matrix, projector.matrix_t, volume, projected)
        with _sparse.LAUNCH_LOCK:
            _joint_residual(projected, eds, adf, weights, eds_columns, row_scale, k, n_extra,
                            np.float32(alpha), residual)
        _sparse.scaled_update(projector.matrix_t, residual, column_scale, volume, positivity)
        yield _pixel_major_snapshot(volume, (k + n_extra, n_slices, g.n_z, g.n_x))
