"""Batched SIRT (paper Eq. 11) on stacks of independent slices.

One iteration updates every slice of the block at once::

    x <- max(0, x + relaxation * C W^T R (p - W x)),

with ``R = 1 / row sums of W`` and ``C = 1 / column sums of W`` (rays or pixels
that the geometry never touches get a factor of 0, not infinity). The iterate
starts from 0, as in the paper, and the non-negativity clip (the paper's
"negative voxels set to zero each iteration") is optional. Optional ray weights
in [0, 1] (0: a detector pixel with no valid data, e.g. outside the field after
alignment) multiply the residual; ``C`` keeps every ray, so the step is smaller,
never larger, where rays are dropped and the iteration still converges.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import _array_steps, _sparse, backends
from .projector import Projector, _inverse_or_zero

__all__ = ["sirt", "sirt_path", "_support_scales", "validate_sirt_parameters"]


def validate_sirt_parameters(iterations, relaxation) -> tuple[int, float]:
    """Check the iteration count and relaxation factor; return them normalised.

    Parameters
    ----------
    iterations : int
        Iterations (>= 1).
    relaxation : float
        Relaxation factor, in (0, 2).

    Returns
    -------
    iterations : int
    relaxation : float

    Raises
    ------
    ValueError
        ``iterations`` is not a positive integer, or ``relaxation`` is not in
        the open interval (0, 2) where SIRT converges.
    TypeError
        ``iterations`` is not an integer.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.sirt import validate_sirt_parameters
    >>> validate_sirt_parameters(50, 1.0)
    (50, 1.0)
    """
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)):
        raise TypeError(f"iterations must be a positive integer, got {iterations!r}.")
    if iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations}.")
    relaxation = float(relaxation)
    if not (0.0 < relaxation < 2.0):
        raise ValueError(
            f"relaxation must lie in the open interval (0, 2) for SIRT to converge, "
            f"got {relaxation}."
        )
    return int(iterations), relaxation


def _support_scales(projector: Projector, support: np.ndarray | None):
    """SIRT's row and column scales, for the whole grid or restricted to a support.

    A voxel outside the support gets a column scale of 0, so it is never updated
    and stays at its start, 0: the support constraint (a lamella's known
    thickness). The row sums are those of the restricted system, ``W @ support``,
    as SIRT on the voxels of the support alone would have them.

    Parameters
    ----------
    projector : Projector
    support : numpy.ndarray of bool, optional
        ``(n_z, n_x)``, True where the object may be; None: everywhere.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        float32 ``R`` (n_rays) and ``C`` (n_pixels), without the relaxation.
    """
    if support is None:
        return _inverse_or_zero(projector.row_sums), _inverse_or_zero(projector.column_sums)
    g = projector.geometry
    mask = np.asarray(support)
    if mask.shape != (g.n_z, g.n_x) or mask.dtype != bool:
        raise ValueError(f"support must be a boolean array of shape ({g.n_z}, {g.n_x}) "
                         f"(z, x), got {mask.dtype} {mask.shape}.")
    if not mask.any():
        raise ValueError("support is empty: no voxel may hold mass.")
    mask = mask.reshape(-1).astype(np.float32)
    row_sums = np.asarray(projector.matrix @ mask, dtype=np.float32)
    return _inverse_or_zero(row_sums), _inverse_or_zero(projector.column_sums) * mask


def sirt(
    projector: Projector,
    sinograms: np.ndarray,
    iterations: int,
    relaxation: float = 1.0,
    positivity: bool = True,
    callback: Callable[[int], None] | None = None,
    ray_weights: np.ndarray | None = None,
    backend: str = "cpu",
    support: np.ndarray | None = None,
    columns: slice | None = None,
) -> np.ndarray:
    """Reconstruct a stack of slices that share one geometry.

    Parameters
    ----------
    projector : Projector
        System matrix of the geometry (see :func:`get_projector`).
    sinograms : numpy.ndarray
        ``(n_slices, n_tilts, n_detector)`` measured intensities, any real dtype
        (converted to float32). Slices are independent; batching them only
        shares the passes over the matrix.
    iterations : int
        Number of SIRT iterations (>= 1).
    relaxation : float
        Relaxation factor lambda, in (0, 2).
    positivity : bool
        Set negative pixels to 0 after every iteration.
    callback : callable, optional
        Called with the number of the completed iteration (1-based), e.g. to
        advance a progress bar.
    ray_weights : numpy.ndarray, optional
        ``(n_slices, n_tilts, n_detector)`` in [0, 1]; 0 leaves a measurement out
        (no valid data there). Default: every measurement counts.
    backend : {"cpu", "cupy", "auto"}
        Where the iterations run: numba on the CPU, CuPy on the current CUDA
        device, or CuPy when it sees a device and else the CPU (see
        :mod:`~hyperspy_hebt.tomography.backends`). Input and output stay numpy.
    support : numpy.ndarray of bool, optional
        ``(n_z, n_x)``: voxels outside it are held at 0 (see :func:`_support_scales`).
    columns : slice, optional
        Grid columns (``x``) to return, e.g. the scan's part of a padded grid. Default:
        all.

    Returns
    -------
    numpy.ndarray
        float32 reconstructions ``(n_slices, n_z, n_x)`` (``n_x`` of ``columns``).

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_sinograms
    >>> demo = demo_sinograms()  # a 32 x 32 core-shell slice at 13 tilts, (1, 13, 32)
    >>> from hyperspy_hebt.tomography.sirt import sirt
    >>> volume = sirt(demo.projector, demo.sinograms, 50)
    >>> volume.shape
    (1, 32, 32)
    >>> truth = demo.truth
    >>> round(float(np.linalg.norm(volume[0] - truth) / np.linalg.norm(truth)), 2)
    0.15
    """
    iterations, relaxation = validate_sirt_parameters(iterations, relaxation)
    steps = _sirt_steps(projector, sinograms, relaxation, positivity, ray_weights, backend,
                        support)
    return _run_steps(steps, iterations, callback, columns)


def sirt_path(projector: Projector, sinograms: np.ndarray, iterations, relaxation: float = 1.0,
              positivity: bool = True, ray_weights: np.ndarray | None = None,
              backend: str = "cpu", support: np.ndarray | None = None) -> list:
    """SIRT volumes after each of several iteration counts, from one run.

    Parameters
    ----------
    iterations : sequence of int
        Iteration counts (>= 1) at which to keep the volume.
    projector, sinograms, relaxation, positivity, ray_weights, backend, support
        As for :func:`sirt`.

    Returns
    -------
    list of numpy.ndarray
        ``(n_slices, n_z, n_x)`` volumes in the order of ``iterations``; each
        equals ``sirt(..., iterations=n)``.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_sinograms
    >>> demo = demo_sinograms()  # a 32 x 32 core-shell slice at 13 tilts, (1, 13, 32)
    >>> from hyperspy_hebt.tomography.sirt import sirt_path
    >>> volumes = sirt_path(demo.projector, demo.sinograms, [10, 50])  # both from one run
    >>> len(volumes), volumes[1].shape
    (2, (1, 32, 32))
    """
    wanted = _validate_iteration_counts(iterations, relaxation)
    steps = _sirt_steps(projector, sinograms, float(relaxation), positivity, ray_weights,
                        backend, support)
    return _run_path(steps, wanted)


def _validate_iteration_counts(iterations, relaxation) -> list:
    """The iteration counts of a path, each checked as for :func:`sirt`."""
    wanted = [validate_sirt_parameters(n, relaxation)[0] for n in iterations]
    if not wanted:
        raise ValueError("iterations is empty: give at least one iteration count.")
    return wanted


def _run_steps(steps, iterations: int, callback=None, columns: slice | None = None
              ) -> np.ndarray:
    """Advance a step generator ``iterations`` times.

    The volume it reached (its grid columns ``columns`` only, if given).
    """
    for iteration in range(1, iterations + 1):
        copy_out = next(steps)
        if callback is not None:
            callback(iteration)
    return copy_out(columns)


def _run_path(steps, wanted) -> list:
    """The volumes a step generator reaches after each count in ``wanted`` (one run)."""
    kept = {}
    for iteration in range(1, max(wanted) + 1):
        copy_out = next(steps)
        if iteration in wanted:
            kept[iteration] = copy_out()
    return [kept[n] for n in wanted]


def _ray_weight_rows(ray_weights, shape, n_rays, name="ray_weights"):
    """Validate ``(n_slices, n_tilts, n_detector)`` weights in [0, 1].

    Return them as float32 rows ``(n_slices, n_rays)``, or None for None.
    """
    if ray_weights is None:
        return None
    weights = np.asarray(ray_weights, dtype=np.float32)
    if weights.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {weights.shape}.")
    if not (np.all(weights >= 0) and np.all(weights <= 1)):
        raise ValueError(f"{name} must lie in [0, 1] (0: no valid data, 1: full weight).")
    return np.ascontiguousarray(weights.reshape(shape[0], n_rays))


def _ray_weight_columns(ray_weights, shape, n_rays, name="ray_weights"):
    """As :func:`_ray_weight_rows`, as float32 columns ``(n_rays, n_slices)``."""
    rows = _ray_weight_rows(ray_weights, shape, n_rays, name)
    return None if rows is None else np.ascontiguousarray(rows.T)


def _sirt_steps(projector, sinograms, relaxation, positivity, ray_weights=None,
                backend="cpu", support=None):
    """Yield, after each SIRT iteration, a function that copies the iterate out.

    As ``(n_slices, n_z, n_x)`` float32.
    """
    backend = backends.resolve_backend(backend)
    g = projector.geometry
    sinograms = np.asarray(sinograms)
    if sinograms.ndim != 3 or sinograms.shape[1:] != (g.n_tilts, g.n_detector):
        raise ValueError(
            f"sinograms must have shape (n_slices, {g.n_tilts}, {g.n_detector}), "
            f"got {sinograms.shape}."
        )
    n_slices = sinograms.shape[0]
    finite = np.isfinite(sinograms).all(axis=(1, 2))
    if not finite.all():
        raise ValueError(
            "sinograms contain NaN or infinite values in slices "
            f"{np.flatnonzero(~finite).tolist()} of this block; SIRT would spread them "
            "over the whole slice."
        )
    scales = None if support is None else _support_scales(projector, support)
    if backend != "cpu":
        weights = _ray_weight_rows(ray_weights, sinograms.shape, g.n_rays)
        yield from _array_steps.sirt_steps(
            backends._array_module(backend), projector,
            np.ascontiguousarray(sinograms.reshape(n_slices, g.n_rays), dtype=np.float32),
            weights, relaxation, positivity, scales)
        return
    measured = np.ascontiguousarray(
        sinograms.reshape(n_slices, g.n_rays).T, dtype=np.float32
    )
    weights = _ray_weight_columns(ray_weights, sinograms.shape, g.n_rays)
    row_scale, column_scale = scales or _support_scales(projector, None)
    column_scale = relaxation * column_scale
    volume = np.zeros((g.n_pixels, n_slices), dtype=np.float32)
    residual = np.empty((g.n_rays, n_slices), dtype=np.float32)
    while True:
        _sparse.weighted_residual(projector.matrix, projector.matrix_t, volume, measured,
                                  row_scale, residual)
        if weights is not None:
            residual *= weights
        _sparse.scaled_update(projector.matrix_t, residual, column_scale, volume, positivity)
        yield _pixel_major_snapshot(volume, (n_slices, g.n_z, g.n_x))


def _pixel_major_snapshot(volume: np.ndarray, shape: tuple) -> Callable[..., np.ndarray]:
    """What the CPU step generators yield after each iteration.

    Called, it returns a C-ordered copy of the iterate shaped ``shape`` (``(..., n_z,
    n_x)``), or of the grid columns ``columns`` only (a padded grid cropped to the scan
    while copying: 8x faster than copying the whole grid and cropping after); its
    ``pixel_major`` attribute is the live ``(n_pixels, columns)`` iterate itself, for
    a caller that only reads it before the next step (the held-out projections of
    cross-validation: no volume-sized copies).
    """
    def copy_out(columns: slice | None = None):
        if columns is None:
            return np.ascontiguousarray(volume.T).reshape(shape)
        n_z, n_x = shape[-2:]
        kept = volume.reshape(n_z, n_x, -1)[:, columns]
        return np.ascontiguousarray(kept.transpose(2, 0, 1)).reshape(
            tuple(shape[:-1]) + (kept.shape[1],))

    copy_out.pixel_major = volume  # type: ignore[attr-defined]
    return copy_out
