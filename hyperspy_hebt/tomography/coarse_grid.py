"""A coarser copy of a reconstruction grid: ray sums binned onto it and brought back.

Arrays only (no HyperSpy). Quantities that vary slowly across rays (the share of a ray's
X-rays that leave the specimen, :mod:`hyperspy_hebt.absorption_correction`) can be estimated
on a grid ``k`` times coarser along every axis, at about ``k**3`` times less cost: the
measured ray sums are binned onto the coarse rays (:meth:`CoarseGrid.bin_rays`), the
quantity is computed there, and its ray sums are interpolated back to the fine rays
(:meth:`CoarseGrid.interpolate_rays`).

The coarse grid keeps the fine grid's centre (:mod:`.geometry`: the rotation axis at the
origin, ``detector_offset_px`` scaled by ``1 / k``), so no axis is shifted whatever the
parities of the sizes: a fine pixel that straddles two coarse pixels is shared between them
by the length it has in each (for ``k = 2`` and an odd size, weights 1/4, 1/2, 1/4). Slices
(the tilt axis) follow the same rule with their own centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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

    Examples
    --------
    >>> from hyperspy_hebt.tomography import ParallelBeamGeometry
    >>> from hyperspy_hebt.tomography.coarse_grid import CoarseGrid
    >>> grid = CoarseGrid(ParallelBeamGeometry([-45.0, 0.0, 45.0], 10), n_slices=6, factor=2)
    >>> grid.coarse_geometry.n_detector, grid.n_coarse_slices
    (5, 3)
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

    def bin_rays(self, rays: np.ndarray, weights: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Fine ray sums averaged onto the coarse rays (slices and detector; tilts kept).

        Each coarse ray is the weighted mean of the fine rays it overlaps (by overlap
        length, centred as the grids are), over the measured ones only: a coarse ray that
        reaches half a fine pixel beyond the scan, or covers invalid pixels, averages what
        was measured and gets a smaller weight.

        Parameters
        ----------
        rays : numpy.ndarray
            ``(..., n_slices, n_tilts, n_detector)`` on the fine grid.
        weights : numpy.ndarray, optional
            The fine rays' weights in [0, 1] (0: not measured), broadcastable to
            ``rays``' last three axes; None: every ray measured.

        Returns
        -------
        coarse_rays, coarse_weights : numpy.ndarray
            float32 ``(..., n_coarse_slices, n_tilts, m_detector)`` and the coarse rays'
            weights ``(n_coarse_slices, n_tilts, m_detector)``: the measured share of each.

        Raises
        ------
        ValueError
            ``rays`` does not end in the fine ``(n_slices, n_tilts, n_detector)``.

        Examples
        --------
        >>> from hyperspy_hebt.tomography import ParallelBeamGeometry
        >>> from hyperspy_hebt.tomography.coarse_grid import CoarseGrid
        >>> grid = CoarseGrid(ParallelBeamGeometry([0.0], 4), n_slices=2, factor=2)
        >>> rays = np.arange(8.0).reshape(2, 1, 4)  # (slices, tilts, detector)
        >>> coarse, weights = grid.bin_rays(rays)
        >>> coarse  # each coarse ray: the mean of the 2 x 2 fine rays it covers
        array([[[2.5, 4.5]]], dtype=float32)
        """
        rays = np.asarray(rays, dtype=np.float32)
        geometry = self.geometry
        expected = (int(self.n_slices), geometry.n_tilts, geometry.n_detector)
        if rays.shape[-3:] != expected:
            raise ValueError(f"rays must end in (slices, tilts, detector) = {expected}, got "
                             f"{rays.shape}.")
        fine_weights = np.broadcast_to(np.float32(1.0) if weights is None
                                       else np.asarray(weights, np.float32), expected)
        k = int(self.factor)
        slices = _averaging_matrix(expected[0], k)
        detector = _averaging_matrix(expected[2], k)

        def binned(values):
            return _along(detector, _along(slices, values, values.ndim - 3), values.ndim - 1)

        coarse_weights = binned(fine_weights)
        measured = coarse_weights > 0
        coarse_rays = binned(rays * fine_weights) / np.where(measured, coarse_weights, 1)
        return np.where(measured, coarse_rays, 0).astype(np.float32), coarse_weights

    def interpolate_rays(self, rays: np.ndarray) -> np.ndarray:
        """Coarse ray sums ``(..., n_coarse_slices, n_tilts, m_detector)`` at the fine rays.

        Linear along the slices and the detector (constant beyond the outermost coarse
        rays); the tilts are the same.

        Parameters
        ----------
        rays : numpy.ndarray
            ``(..., n_coarse_slices, n_tilts, m_detector)`` on the coarse grid.

        Returns
        -------
        numpy.ndarray
            float32 ``(..., n_slices, n_tilts, n_detector)``.

        Raises
        ------
        ValueError
            ``rays`` does not end in the coarse grid's ``(slices, tilts, detector)``.

        Examples
        --------
        >>> from hyperspy_hebt.tomography import ParallelBeamGeometry
        >>> from hyperspy_hebt.tomography.coarse_grid import CoarseGrid
        >>> grid = CoarseGrid(ParallelBeamGeometry([0.0], 4), n_slices=1, factor=2)
        >>> grid.interpolate_rays(np.array([[[1.0, 3.0]]]))  # back onto the 4 fine rays
        array([[[1. , 1.5, 2.5, 3. ]]], dtype=float32)
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
