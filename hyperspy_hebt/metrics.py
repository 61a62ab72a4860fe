"""Image-quality metrics of the paper (Eq. 19-22) on plain arrays.

The reconstructed ``X_A`` are not on the phantom's scale, so the paper compares
structure only (the structure term of SSIM with C = 0) and the MSE after the
scaling that minimises it; quantified maps are compared by plain MSE.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mse", "scaled_mse", "structure_ssim"]


def _pair(estimate, reference, mask):
    estimate = np.asarray(estimate, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if estimate.shape != reference.shape:
        raise ValueError(f"shapes differ: {estimate.shape} and {reference.shape}.")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != estimate.shape:
            raise ValueError(f"mask has shape {mask.shape}, images {estimate.shape}.")
        return estimate[mask], reference[mask]
    return estimate.ravel(), reference.ravel()


def structure_ssim(estimate, reference, mask=None, c: float = 0.0) -> float:
    """Structure component of SSIM, ``(sigma_xy + C) / (sigma_x sigma_y + C)`` (Eq. 19-22).

    Sample statistics (N - 1) over the whole image or the ``mask``; the paper
    uses C = 0. Equals the Pearson correlation for C = 0; 1 is identical
    structure, invariant to scale and offset.

    Parameters
    ----------
    estimate, reference : numpy.ndarray
        Images (or volumes) of one shape.
    mask : numpy.ndarray of bool, optional
        The pixels to compare; default all.
    c : float
        The stabilising constant ``C`` (0 in the paper).

    Returns
    -------
    float
        In [-1, 1] for ``c = 0``.

    Raises
    ------
    ValueError
        Fewer than two pixels, or a constant image with ``c = 0`` (undefined).

    Examples
    --------
    >>> from hyperspy_hebt.metrics import structure_ssim
    >>> image = np.arange(64.0).reshape(8, 8)
    >>> round(structure_ssim(image, image), 6)
    1.0
    """
    x, y = _pair(estimate, reference, mask)
    if x.size < 2:
        raise ValueError("structure_ssim needs at least two pixels.")
    sxy = np.cov(x, y, ddof=1)[0, 1]
    sx, sy = np.std(x, ddof=1), np.std(y, ddof=1)
    denominator = sx * sy + c
    if denominator == 0:
        raise ValueError("structure_ssim is undefined for a constant image with C = 0.")
    return float((sxy + c) / denominator)


def mse(estimate, reference, mask=None) -> float:
    """Mean squared error.

    Parameters
    ----------
    estimate, reference : numpy.ndarray
        Of one shape.
    mask : numpy.ndarray of bool, optional
        The pixels to compare; default all.

    Returns
    -------
    float

    Examples
    --------
    >>> from hyperspy_hebt.metrics import mse
    >>> mse(np.array([1.0, 2.0]), np.array([1.0, 4.0]))
    2.0
    """
    x, y = _pair(estimate, reference, mask)
    return float(np.mean((x - y) ** 2))


def scaled_mse(estimate, reference, mask=None) -> tuple[float, float]:
    """MSE after scaling ``estimate`` by the factor that minimises it.

    Parameters
    ----------
    estimate, reference : numpy.ndarray
        Of one shape.
    mask : numpy.ndarray of bool, optional
        The pixels to compare; default all.

    Returns
    -------
    (mse, scale)
        ``min_s mean((s x - y)^2)`` and the minimising ``s = <x, y> / <x, x>``.

    Examples
    --------
    >>> from hyperspy_hebt.metrics import scaled_mse
    >>> scaled_mse(np.array([2.0, 4.0]), np.array([1.0, 2.0]))  # right up to a factor 2
    (0.0, 0.5)
    """
    x, y = _pair(estimate, reference, mask)
    xx = float(x @ x)
    scale = float(x @ y) / xx if xx > 0 else 0.0
    return float(np.mean((scale * x - y) ** 2)), scale
