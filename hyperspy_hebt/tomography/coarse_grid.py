"""A coarser copy of a reconstruction grid: volumes averaged onto it, ray sums brought back.

Arrays only (no HyperSpy). Quantities that vary slowly across rays (the share of a ray's
X-rays that leave the specimen, :mod:`hyperspy_hebt.absorption_correction`) can be computed
on a grid ``k`` times coarser along every axis, at ``k**3`` times less cost, and
interpolated back to the fine rays.

The coarse grid keeps the fine grid's centre (:mod:`.geometry`: the rotation axis at the
origin, ``detector_offset_px`` scaled by ``1 / k``), so no axis is shifted whatever the
parities of the sizes: a fine voxel that straddles two coarse voxels is shared between them
by the length it has in each (for ``k = 2`` and an odd size, weights 1/4, 1/2, 1/4). Beyond
the fine grid the coarse voxels see zeros (vacuum). Slices (the tilt axis) follow the same
rule with their own centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from .geometry import ParallelBeamGeometry

__all__ = ["CoarseGrid"]


def _coarse_size(n_fine: int, factor: int) -> int:
    return max(1, math.ceil(n_fine / factor))


def _averaging_matrix(n_fine: int, factor: int) -> sp.csr_matrix:
    """``(m, n_fine)``: each coarse pixel's mean over the fine pixels it overlaps (centred)."""
    m = _coarse_size(n_fine, factor)
    # Edges in fine pixel units about the common centre.
    fine_edges = np.arange(n_fine + 1) - n_fine / 2.0
    coarse_edges = factor * (np.arange(m + 1) - m / 2.0)
    rows, cols, values = [], [], []
    for j in range(m):
        lo, hi = coarse_edges[j], coarse_edges[j + 1]
        first = max(0, int(math.floor(lo + n_fine / 2.0)))
        last = min(n_fine - 1, int(math.ceil(hi + n_fine / 2.0)) - 1)
        for i in range(first, last + 1):
            overlap = min(hi, fine_edges[i + 1]) - max(lo, fine_edges[i])
            if overlap > 1e-12:
                rows.append(j)
                cols.append(i)
                values.append(overlap / factor)
    return sp.csr_matrix((values, (rows, cols)), shape=(m, n_fine))


def _interpolation_matrix(n_fine: int, factor: int) -> sp.csr_matrix:
    """``(n_fine, m)``: linear interpolation of coarse pixel centres at the fine centres.

    Fine pixels beyond the outermost coarse centres take that centre's value.
    """
    m = _coarse_size(n_fine, factor)
    position = (np.arange(n_fine) - (n_fine - 1) / 2.0) / factor + (m - 1) / 2.0
    position = np.clip(position, 0.0, m - 1)
    lower = np.minimum(np.floor(position).astype(int), max(m - 2, 0))
    upper = np.minimum(lower + 1, m - 1)
    weight_upper = position - lower
    rows = np.concatenate([np.arange(n_fine)] * 2)
    cols = np.concatenate([lower, upper])
    values = np.concatenate([1.0 - weight_upper, weight_upper])
    return sp.csr_matrix((values, (rows, cols)), shape=(n_fine, m))


def _taps(n_fine: int, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_averaging_matrix` as ``(m, taps)`` fine indices and weights (0-padded)."""
    matrix = _averaging_matrix(n_fine, factor)
    width = int(np.diff(matrix.indptr).max())
    index = np.zeros((matrix.shape[0], width), np.int64)
    weight = np.zeros((matrix.shape[0], width), np.float32)
    for j in range(matrix.shape[0]):
        row = slice(matrix.indptr[j], matrix.indptr[j + 1])
        count = row.stop - row.start
        index[j, :count] = matrix.indices[row]
        weight[j, :count] = matrix.data[row]
    return index, weight


@numba.njit(parallel=True, nogil=True, cache=True)
def _average_kernel(fine, times, multiply, nan_as_zero, index_y, weight_y, index_z,
                    weight_z, index_x, weight_x, out):
    """Each coarse voxel's weighted sum of the fine voxels it overlaps (three axes at once).

    A fine voxel is read once per coarse voxel it overlaps along each axis (at most
    ``2^3`` times for ``k = 2``); no intermediate volume.
    """
    m_y, m_z, m_x = out.shape
    for a in numba.prange(m_y):
        for b in range(m_z):
            for c in range(m_x):
                total = np.float32(0.0)
                for ta in range(index_y.shape[1]):
                    wy = weight_y[a, ta]
                    if wy == 0:
                        continue
                    iy = index_y[a, ta]
                    for tb in range(index_z.shape[1]):
                        wz = weight_z[b, tb]
                        if wz == 0:
                            continue
                        iz = index_z[b, tb]
                        row = np.float32(0.0)
                        for tc in range(index_x.shape[1]):
                            wx = weight_x[c, tc]
                            if wx == 0:
                                continue
                            ix = index_x[c, tc]
                            value = fine[iy, iz, ix]
                            if nan_as_zero and np.isnan(value):
                                continue
                            if multiply:
                                value = value * times[iy, iz, ix]
                            row += wx * value
                        total += wy * wz * row
                out[a, b, c] = total


def _along(matrix: sp.csr_matrix, array: np.ndarray, axis: int) -> np.ndarray:
    """``matrix`` applied along ``axis`` of ``array`` (float32 out)."""
    moved = np.moveaxis(np.asarray(array, dtype=np.float32), axis, 0)
    flat = matrix @ moved.reshape(moved.shape[0], -1)
    return np.moveaxis(np.asarray(flat, np.float32).reshape((matrix.shape[0],)
                                                            + moved.shape[1:]), 0, axis)


@dataclass(frozen=True)
class CoarseGrid:
    """A reconstruction grid ``factor`` times coarser along every axis.

    Parameters
    ----------
    geometry : ParallelBeamGeometry
        The fine grid's geometry.
    n_slices : int
        Slices (along the tilt axis) of the fine volumes.
    factor : int
        Fine pixels per coarse pixel along each axis (>= 1; 1 is the fine grid itself).

    The coarse geometry has the same tilts, sizes ``ceil(n / factor)`` and the detector
    offset in coarse pixels.
    """

    geometry: ParallelBeamGeometry
    n_slices: int
    factor: int

    def __post_init__(self) -> None:
        if (isinstance(self.factor, bool) or int(self.factor) != self.factor
                or self.factor < 1):
            raise ValueError(f"factor must be a positive integer (fine pixels per coarse "
                             f"pixel), got {self.factor!r}.")
        if int(self.n_slices) != self.n_slices or self.n_slices < 1:
            raise ValueError(f"n_slices must be a positive integer, got {self.n_slices!r}.")

    @property
    def coarse_geometry(self) -> ParallelBeamGeometry:
        """The coarse grid's geometry."""
        g, k = self.geometry, int(self.factor)
        assert g.n_x is not None and g.n_z is not None
        return ParallelBeamGeometry(g.tilt_angles_deg, _coarse_size(g.n_detector, k),
                                    _coarse_size(g.n_x, k), _coarse_size(g.n_z, k),
                                    g.detector_offset_px / k)

    @property
    def n_coarse_slices(self) -> int:
        """Slices of the coarse grid."""
        return _coarse_size(int(self.n_slices), int(self.factor))

    def average(self, volume: np.ndarray, times: np.ndarray | None = None,
                nan_as_zero: bool = False) -> np.ndarray:
        """The mean of ``volume`` over each coarse voxel (zeros beyond the fine grid).

        Parameters
        ----------
        volume : numpy.ndarray
            ``(..., n_slices, n_z, n_x)`` on the fine grid; leading axes (lines) kept.
        times : numpy.ndarray, optional
            A fine ``(n_slices, n_z, n_x)`` volume (or a number) to multiply ``volume``
            by before averaging, without a product volume in memory.
        nan_as_zero : bool
            Count NaN voxels of ``volume`` as 0 (e.g. fractions where there is nothing).

        Returns
        -------
        numpy.ndarray
            float32 ``(..., n_coarse_slices, m_z, m_x)``.
        """
        volume = np.asarray(volume)
        g, k = self.geometry, int(self.factor)
        assert g.n_x is not None and g.n_z is not None
        expected = (int(self.n_slices), g.n_z, g.n_x)
        if volume.shape[-3:] != expected:
            raise ValueError(f"volume must end in (n_slices, n_z, n_x) = {expected}, got "
                             f"{volume.shape}.")
        factor = np.broadcast_to(np.float32(1.0) if times is None
                                 else np.asarray(times, np.float32), expected)
        taps = [_taps(n, k) for n in expected]
        coarse_shape = tuple(t[0].shape[0] for t in taps)
        flat = volume.reshape((-1,) + expected)
        out = np.empty((flat.shape[0],) + coarse_shape, np.float32)
        for i, fine in enumerate(flat):
            _average_kernel(fine, factor, times is not None, bool(nan_as_zero),
                            *taps[0], *taps[1], *taps[2], out[i])
        return out.reshape(volume.shape[:-3] + coarse_shape)

    def interpolate_rays(self, rays: np.ndarray) -> np.ndarray:
        """Coarse ray sums ``(..., n_coarse_slices, n_tilts, m_detector)`` at the fine rays.

        Linear along the slices and the detector (constant beyond the outermost coarse
        rays); the tilts are the same.

        Returns
        -------
        numpy.ndarray
            float32 ``(..., n_slices, n_tilts, n_detector)``.
        """
        rays = np.asarray(rays, dtype=np.float32)
        coarse = self.coarse_geometry
        expected = (self.n_coarse_slices, coarse.n_tilts, coarse.n_detector)
        if rays.shape[-3:] != expected:
            raise ValueError(f"rays must end in (slices, tilts, detector) = {expected}, got "
                             f"{rays.shape}.")
        k = int(self.factor)
        if k == 1:
            return rays
        out = _along(_interpolation_matrix(int(self.n_slices), k), rays, rays.ndim - 3)
        return _along(_interpolation_matrix(self.geometry.n_detector, k), out, rays.ndim - 1)
