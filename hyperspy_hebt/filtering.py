"""Gaussian filtering of sinogram stacks ``(slices, tilts, detector)``, numpy or dask.

The maps' noise filter before a reconstruction (arrays only, no HyperSpy).
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import scipy.ndimage as ndi

__all__ = ["filtered_sinograms"]

TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default, fixes the overlap depth


def _filter_block(block, sigma):
    """Scipy's Gaussian filter of one block (reflecting at the block's own ends)."""
    return ndi.gaussian_filter(block, sigma=sigma, truncate=TRUNCATE, mode="reflect")


def filtered_sinograms(stack, sigma, lazy, slices_per_block, weights=None):
    """Sinogram stack ``(slices, tilts, detector)`` as float32, Gaussian-filtered.

    Lazy stacks are chunked by runs of slices holding every tilt; the filter
    crosses chunk borders along the slice axis with ``map_overlap`` (no padding
    at the true ends, so the result equals scipy's on the whole array). With
    ``weights`` (0 on pixels with no valid data) the filter is a normalised
    convolution, so missing pixels do not darken their neighbours.

    Parameters
    ----------
    stack : numpy.ndarray or dask.array.Array
        ``(slices, tilts, detector)`` sinograms.
    sigma : tuple of float or None
        Gaussian widths in pixels along ``(slices, tilts, detector)``; None: no filter
        (the stack is only cast to float32).
    lazy : bool
        Return a dask array (``stack`` is rechunked into runs of slices).
    slices_per_block : int
        Slices per dask chunk when ``lazy``.
    weights : numpy.ndarray or dask.array.Array, optional
        Like ``stack``: 1 on valid pixels, 0 where there is no data (normalised convolution).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        float32, the shape of ``stack``; 0 where the weights leave no valid neighbour.

    Examples
    --------
    >>> from hyperspy_hebt.filtering import filtered_sinograms
    >>> stack = np.zeros((3, 2, 5), np.float32)  # (slices, tilts, detector)
    >>> stack[1, :, 2] = 1
    >>> filtered_sinograms(stack, (1.0, 0, 0), lazy=False, slices_per_block=2)[:, 0, 2].round(3)
    array([0.296, 0.408, 0.296], dtype=float32)
    """
    if weights is not None and sigma is not None:
        smoothed = filtered_sinograms(stack * weights, sigma, lazy, slices_per_block)
        norm = filtered_sinograms(weights, sigma, lazy, slices_per_block)
        where = da.where if lazy else np.where
        # Pixels with almost no valid neighbour are invalid themselves (weight 0).
        return where(norm > 1e-3, smoothed / (norm + (norm <= 1e-3)), 0).astype(np.float32)
    if not lazy:
        stack = np.asarray(stack, dtype=np.float32)
        return stack if sigma is None else _filter_block(stack, sigma)
    stack = da.asarray(stack).astype(np.float32).rechunk({0: slices_per_block, 1: -1, 2: -1})
    if sigma is None:
        return stack
    depth = {0: int(TRUNCATE * sigma[0] + 0.5), 1: 0, 2: 0}
    if depth[0] >= stack.shape[0]:
        # Fewer slices than the halo (a thin or heavily binned series): dask refuses an
        # overlap deeper than the array, and one block of it is scipy's whole-array filter.
        return stack.rechunk({0: -1}).map_blocks(
            _filter_block, sigma=sigma, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
    return stack.map_overlap(_filter_block, depth=depth, boundary="none", sigma=sigma,
                             dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
