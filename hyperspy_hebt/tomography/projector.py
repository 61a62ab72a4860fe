"""Parallel-beam projector: a sparse system matrix built once per geometry.

The matrix ``W`` maps a slice ``x`` (``n_z * n_x`` pixels, row-major ``(z, x)``)
to a sinogram ``p`` (``n_tilts * n_detector`` rays, row-major ``(tilt, detector)``):
``p = W x``. Weights follow Joseph's method (P. M. Joseph, IEEE TMI 1, 192, 1982;
the model of astra-toolbox's ``linear`` projector): a ray is sampled once per
row (or column, whichever it crosses more steeply), the image is linearly
interpolated between the two nearest pixels, and each sample is weighted by the
path length through that row, so a ray through a uniform slab of unit pixels
returns the geometric path length in pixels.

Products go through :mod:`hyperspy_hebt.tomography._sparse` with many slices at
once (``X`` of shape ``(n_pixels, n_slices)``), so one pass over ``W`` serves a
whole block of slices.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from . import _sparse
from .geometry import ParallelBeamGeometry

__all__ = ["Projector", "get_projector", "build_system_matrix"]


def build_system_matrix(geometry: ParallelBeamGeometry) -> sp.csr_matrix:
    """Build the Joseph-interpolation system matrix of a geometry.

    Parameters
    ----------
    geometry : ParallelBeamGeometry
        Tilt angles, detector and grid sizes.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``float32`` matrix of shape ``(n_tilts * n_detector, n_z * n_x)`` with
        ``int32`` indices. Entries are path lengths in pixels.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.geometry import ParallelBeamGeometry
    >>> from hyperspy_hebt.tomography.projector import build_system_matrix
    >>> matrix = build_system_matrix(ParallelBeamGeometry(tuple(np.linspace(-60, 60, 13)), 32))
    >>> matrix.shape, matrix.dtype, matrix.format  # rays x voxels
    ((416, 1024), dtype('float32'), 'csr')
    """
    g = geometry
    assert g.n_x is not None and g.n_z is not None  # set by __post_init__
    det_u = np.arange(g.n_detector) - (g.n_detector - 1) / 2 + g.detector_offset_px
    x_centre = (g.n_x - 1) / 2
    z_centre = (g.n_z - 1) / 2
    row_parts: list = []
    col_parts: list = []
    val_parts: list = []
    for a, angle in enumerate(np.deg2rad(g.tilt_angles_deg)):
        cos_t, sin_t = np.cos(angle), np.sin(angle)
        ray = a * g.n_detector + np.arange(g.n_detector)
        if abs(cos_t) >= abs(sin_t):
            # Steep in z: one sample per row, interpolate along x.
            step = np.arange(g.n_z)
            z = step - z_centre
            along = (det_u[:, None] - z[None, :] * sin_t) / cos_t + x_centre
            length = 1.0 / abs(cos_t)
            n_along = g.n_x

            def pixel(step_idx, along_idx):
                return step_idx * g.n_x + along_idx
        else:
            # Steep in x: one sample per column, interpolate along z.
            step = np.arange(g.n_x)
            x = step - x_centre
            along = (det_u[:, None] - x[None, :] * cos_t) / sin_t + z_centre
            length = 1.0 / abs(sin_t)
            n_along = g.n_z

            def pixel(step_idx, along_idx):
                return along_idx * g.n_x + step_idx
        lower = np.floor(along).astype(np.int64)
        frac = along - lower
        step_grid = np.broadcast_to(step[None, :], along.shape)
        ray_grid = np.broadcast_to(ray[:, None], along.shape)
        for idx, weight in ((lower, 1.0 - frac), (lower + 1, frac)):
            keep = (idx >= 0) & (idx < n_along) & (weight > 0)
            row_parts.append(ray_grid[keep])
            col_parts.append(pixel(step_grid[keep], idx[keep]))
            val_parts.append((weight[keep] * length).astype(np.float32))
    rows = np.concatenate(row_parts)
    cols = np.concatenate(col_parts)
    vals = np.concatenate(val_parts)
    matrix = sp.csr_matrix(
        (vals, (rows, cols)), shape=(g.n_rays, g.n_pixels), dtype=np.float32
    )
    matrix.sum_duplicates()
    matrix.indices = matrix.indices.astype(np.int32)
    matrix.indptr = matrix.indptr.astype(np.int64)
    return matrix


@dataclass(frozen=True, eq=False)
class Projector:
    """System matrix of one geometry with what SIRT needs alongside it.

    Attributes
    ----------
    geometry : ParallelBeamGeometry
    matrix : scipy.sparse.csr_matrix
        ``W``, shape ``(n_rays, n_pixels)``, float32.
    matrix_t : scipy.sparse.csr_matrix
        ``W.T`` stored as CSR, so back-projection is also a row-parallel product.
    row_sums, column_sums : numpy.ndarray
        Sums of ``W`` along its rows (per ray) and columns (per pixel), float32.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.geometry import ParallelBeamGeometry
    >>> from hyperspy_hebt.tomography.projector import get_projector
    >>> projector = get_projector(ParallelBeamGeometry(tuple(np.linspace(-60, 60, 13)), 32))
    >>> projector.geometry.n_detector, projector.matrix.shape
    (32, (416, 1024))
    """

    geometry: ParallelBeamGeometry
    matrix: sp.csr_matrix
    matrix_t: sp.csr_matrix
    row_sums: np.ndarray
    column_sums: np.ndarray

    @property
    def nbytes(self) -> int:
        """Memory held by ``W`` and ``W.T`` in bytes."""
        return sum(
            m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
            for m in (self.matrix, self.matrix_t)
        )

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Project slices to sinograms.

        Parameters
        ----------
        images : numpy.ndarray
            ``(n_slices, n_z, n_x)`` or ``(n_z, n_x)``.

        Returns
        -------
        numpy.ndarray
            float32 sinograms ``(n_slices, n_tilts, n_detector)`` (or without the
            first axis for a single slice).

        Examples
        --------
        >>> from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector
        >>> projector = get_projector(ParallelBeamGeometry([0.0, 45.0], 3))
        >>> image = np.zeros((3, 3), np.float32)  # (z, x)
        >>> image[:, 0] = 1.0  # a column of voxels along the beam at 0 degrees
        >>> projector.forward(image)[0]  # at 0 degrees the rays sum along z
        array([3., 0., 0.], dtype=float32)
        """
        g = self.geometry
        return _product(self, images, (g.n_z, g.n_x), (g.n_tilts, g.n_detector), "images",
                        forward=True)

    def forward_columns(self, columns: np.ndarray) -> np.ndarray:
        """Project pixel-major columns, as the CPU kernels hold their iterates.

        Parameters
        ----------
        columns : numpy.ndarray
            C-ordered float32 ``(n_pixels, n)``: one image per column (read in place,
            not copied).

        Returns
        -------
        numpy.ndarray
            float32 ``(n_rays, n)``: one sinogram per column, rays in tilt-major order.

        Examples
        --------
        >>> from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector
        >>> projector = get_projector(ParallelBeamGeometry([0.0, 45.0], 3))
        >>> images = np.random.default_rng(0).random((2, 3, 3)).astype(np.float32)
        >>> columns = np.ascontiguousarray(images.reshape(2, -1).T)  # (n_pixels, 2)
        >>> rays = projector.forward_columns(columns)  # (n_rays, 2)
        >>> bool(np.allclose(rays.T.reshape(2, 2, 3), projector.forward(images), atol=1e-6))
        True
        """
        out = np.empty((self.matrix.shape[0], columns.shape[1]), dtype=np.float32)
        return _sparse.project(self.matrix, self.matrix_t, columns, out)

    def backward(self, sinograms: np.ndarray) -> np.ndarray:
        """Back-project sinograms with ``W.T`` (the adjoint of :meth:`forward`).

        Parameters
        ----------
        sinograms : numpy.ndarray
            ``(n_slices, n_tilts, n_detector)`` or ``(n_tilts, n_detector)``.

        Returns
        -------
        numpy.ndarray
            float32 images ``(n_slices, n_z, n_x)`` (or ``(n_z, n_x)``).

        Examples
        --------
        The adjoint: ``<W x, y> = <x, W^T y>``.

        >>> from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector
        >>> projector = get_projector(ParallelBeamGeometry([-30.0, 20.0, 70.0], 5))
        >>> rng = np.random.default_rng(0)
        >>> image, sinogram = rng.random((5, 5)), rng.random((3, 5))
        >>> left = float(np.sum(projector.forward(image) * sinogram))
        >>> right = float(np.sum(image * projector.backward(sinogram)))
        >>> bool(np.isclose(left, right, rtol=1e-5))
        True
        """
        g = self.geometry
        return _product(self, sinograms, (g.n_tilts, g.n_detector), (g.n_z, g.n_x),
                        "sinograms", forward=False)


def _product(projector, array, in_shape, out_shape, name, forward):
    """Apply ``W`` (``forward``) or ``W.T`` to a stack of ``in_shape`` items (or one item)."""
    array = np.asarray(array, dtype=np.float32)
    if array.shape[-2:] != tuple(in_shape) or array.ndim not in (2, 3):
        raise ValueError(
            f"{name} must have shape (n_slices, {in_shape[0]}, {in_shape[1]}) "
            f"or ({in_shape[0]}, {in_shape[1]}), got {array.shape}."
        )
    columns = np.ascontiguousarray(array.reshape(-1, in_shape[0] * in_shape[1]).T)
    matrix = projector.matrix if forward else projector.matrix_t
    out = np.empty((matrix.shape[0], columns.shape[1]), dtype=np.float32)
    if forward:
        _sparse.project(projector.matrix, projector.matrix_t, columns, out)
    else:
        _sparse.csr_matmat(projector.matrix_t, columns, out)
    stack = np.ascontiguousarray(out.T).reshape((-1,) + tuple(out_shape))
    return stack[0] if array.ndim == 2 else stack


def _inverse_or_zero(sums: np.ndarray) -> np.ndarray:
    """``1 / sums`` where ``sums > 0``, else 0 (float32)."""
    out = np.zeros_like(sums, dtype=np.float32)
    positive = sums > 0
    out[positive] = 1.0 / sums[positive]
    return out


_BUILD_LOCK = threading.Lock()


def get_projector(geometry: ParallelBeamGeometry) -> Projector:
    """Return the (cached) projector of a geometry.

    The cache lives in the calling process, so each dask worker builds a
    geometry's matrix once and reuses it for every block it reconstructs; a lock
    keeps threads that ask at the same time from building it twice.

    Parameters
    ----------
    geometry : ParallelBeamGeometry
        Hashable: equal geometries share one projector.

    Returns
    -------
    Projector

    Examples
    --------
    >>> from hyperspy_hebt.tomography.geometry import ParallelBeamGeometry
    >>> from hyperspy_hebt.tomography.projector import get_projector
    >>> projector = get_projector(ParallelBeamGeometry(tuple(np.linspace(-60, 60, 13)), 32))
    >>> projector.matrix.shape  # (13 tilts x 32 pixels) rays, 32 x 32 voxels
    (416, 1024)
    """
    with _BUILD_LOCK:
        return _build_projector(geometry)


def make_projector(geometry: ParallelBeamGeometry) -> Projector:
    """Build a geometry's projector without caching it.

    For one-off geometries, such as the candidates of a search, which would push useful ones out of
    the cache.

    Parameters
    ----------
    geometry : ParallelBeamGeometry

    Returns
    -------
    Projector

    Examples
    --------
    >>> from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector, make_projector
    >>> geometry = ParallelBeamGeometry([-30.0, 0.0, 30.0], 8)
    >>> fresh = make_projector(geometry)
    >>> fresh is get_projector(geometry), (fresh.matrix != get_projector(geometry).matrix).nnz
    (False, 0)
    """
    matrix = build_system_matrix(geometry)
    matrix_t = matrix.T.tocsr()
    matrix_t.sort_indices()  # the forward kernels skip along each pixel's sorted rays
    matrix_t.indices = matrix_t.indices.astype(np.int32)
    matrix_t.indptr = matrix_t.indptr.astype(np.int64)
    row_sums = np.asarray(matrix.sum(axis=1), dtype=np.float32).ravel()
    column_sums = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()
    for array in (matrix.data, matrix_t.data, row_sums, column_sums):
        array.setflags(write=False)
    return Projector(geometry, matrix, matrix_t, row_sums, column_sums)


_build_projector = functools.lru_cache(maxsize=8)(make_projector)
get_projector.cache_info = _build_projector.cache_info  # type: ignore[attr-defined]
get_projector.cache_clear = _build_projector.cache_clear  # type: ignore[attr-defined]
