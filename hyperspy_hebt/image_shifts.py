"""Per-tilt image shifts and rotations, on arrays.

Applying them, and which pixels they bring in from outside the recorded image.

Used by the alignment (which finds the shifts) and by the field of view (which leaves
the pixels without data out of a reconstruction); neither imports the other.
Shifts are ``(dy, dx)`` in pixels with the sign of ``scipy.ndimage.shift``; pixels
moved in from outside are 0.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import scipy.ndimage as ndi

__all__ = ["invalid_pixel_mask", "shift_block", "shift_images", "valid_pixels"]


def shift_block(block, shifts, rotation_deg, block_info=None):
    """Rotate and shift one run of tilts; spatial axes are 1 and 2.

    Parameters
    ----------
    block : numpy.ndarray
        ``(tilt, y, x, ...)`` images (a dask block: a run of tilts).
    shifts : numpy.ndarray
        ``(n_tilts, 2)`` shifts ``(dy, dx)`` in pixels for the whole series.
    rotation_deg : float
        Rotation about the image centre, degrees (0: none), applied before the shift.
    block_info : dict, optional
        dask's block description, which tells a block which tilts it holds; None: the
        block holds every tilt.

    Returns
    -------
    numpy.ndarray
        float32, the shape of ``block``: linear interpolation, 0 brought in from outside.

    Examples
    --------
    >>> from hyperspy_hebt.image_shifts import shift_block
    >>> images = np.zeros((2, 1, 5), np.float32)
    >>> images[:, 0, 2] = 1.0
    >>> shift_block(images, np.array([[0.0, 1.0], [0.0, -0.5]]), 0.0)[:, 0]
    array([[0. , 0. , 0. , 1. , 0. ],
           [0. , 0.5, 0.5, 0. , 0. ]], dtype=float32)
    """
    start = block_info[0]["array-location"][0][0] if block_info else 0
    out = np.empty(block.shape, dtype=np.float32)
    for i in range(block.shape[0]):
        image = block[i].astype(np.float32)
        if rotation_deg:
            image = ndi.rotate(image, rotation_deg, axes=(1, 0), reshape=False, order=1)
        extra = (0,) * (image.ndim - 2)
        out[i] = ndi.shift(image, tuple(shifts[start + i]) + extra, order=1, mode="constant",
                           cval=0.0)
    return out


def shift_images(data, shifts, rotation_deg):
    """Apply per-tilt shifts (and a rotation) to a ``(tilt, y, x, ...)`` array.

    Numpy, or dask with one task per tilt.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        ``(tilt, y, x, ...)``; a dask array's tilt chunks are shifted one task each.
    shifts : numpy.ndarray
        ``(n_tilts, 2)`` shifts ``(dy, dx)`` in pixels.
    rotation_deg : float
        Rotation about the image centre, degrees, applied before the shift.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        float32, the shape of ``data``; 0 where pixels came in from outside.

    Examples
    --------
    >>> from hyperspy_hebt.image_shifts import shift_images
    >>> images = np.zeros((1, 5, 5))
    >>> images[0, 2, 2] = 1
    >>> shift_images(images, np.array([[0.0, 1.0]]), 0.0)[0, 2]  # one pixel to the right
    array([0., 0., 0., 1., 0.], dtype=float32)
    """
    if isinstance(data, da.Array):
        data = data.rechunk({0: 1, 1: -1, 2: -1})
        return data.map_blocks(shift_block, shifts, rotation_deg, dtype=np.float32)
    return shift_block(np.asarray(data), shifts, rotation_deg)


def valid_pixels(shape, shifts, rotation_deg) -> np.ndarray:
    """``(tilt,) + shape`` boolean.

    True where the shifted (and rotated) image still holds recorded data, False where it was moved
    in from outside.

    Parameters
    ----------
    shape : tuple of int
        ``(y, x)`` of one image.
    shifts : numpy.ndarray
        ``(n_tilts, 2)`` shifts ``(dy, dx)`` in pixels.
    rotation_deg : float
        Rotation about the image centre, degrees.

    Returns
    -------
    numpy.ndarray of bool
        ``(n_tilts,) + shape``.

    Examples
    --------
    >>> from hyperspy_hebt.image_shifts import valid_pixels
    >>> valid_pixels((3, 4), np.array([[0.0, 1.0]]), 0.0)[0].astype(int)  # column 0 came in
    array([[0, 1, 1, 1],
           [0, 1, 1, 1],
           [0, 1, 1, 1]])
    """
    ones = np.ones((len(shifts),) + tuple(shape), np.float32)
    return shift_block(ones, shifts, rotation_deg) > 0.999


def invalid_pixel_mask(record, navigation_shape) -> np.ndarray:
    """Pixels of an aligned series with no valid data, from its ``metadata.Alignment``.

    Parameters
    ----------
    record : dict or DictionaryTreeBrowser
        The ``Alignment`` node written by :func:`align_tilt_series`.
    navigation_shape : tuple of int
        The series' navigation shape in array order ``(tilt, y, x)``.

    Returns
    -------
    numpy.ndarray of bool
        True where the shifts (and rotation) brought in pixels from outside the
        recorded image.

    Raises
    ------
    ValueError
        The series no longer has the shape it had when aligned (cropped or
        rebinned since): the record cannot say which pixels are invalid.

    Examples
    --------
    >>> from hyperspy_hebt.image_shifts import invalid_pixel_mask
    >>> record = {"shifts_px": [[0.0, 1.0]], "image_shape": [3, 4], "rotation_deg": 0.0}
    >>> invalid_pixel_mask(record, (1, 3, 4)).astype(int).tolist()  # column 0 came in
    [[[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]]
    """
    if hasattr(record, "as_dictionary"):
        record = record.as_dictionary()
    shifts = np.asarray(record.get("shifts_px", []), dtype=float)
    image_shape = tuple(record.get("image_shape", ()))
    navigation_shape = tuple(int(n) for n in navigation_shape)
    if shifts.ndim != 2 or (len(shifts),) + image_shape != navigation_shape:
        raise ValueError(
            f"metadata.Alignment describes {len(shifts)} tilts of {image_shape} pixels but "
            f"the series' navigation is {navigation_shape}: it was cropped or rebinned after "
            "alignment. Pass invalid_pixels=None, or a boolean mask of that shape."
        )
    return ~valid_pixels(image_shape, shifts, float(record.get("rotation_deg", 0.0)))
