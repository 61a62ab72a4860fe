"""An etspy ``TomoStack``'s alignment applied to a spectrum-image tilt series.

etspy (HyperSpy's tomography package) aligns HAADF tilt series well. A user who aligned
the ADF images there wants the spectra moved the same way: :func:`align_like_etspy`
reads the stack's per-tilt shifts and its global translation, checks that the stack
belongs to this series (same tilts, same pixels), shifts the spectra and returns the
stack's own images as the ADF series. etspy itself is not needed: a stack saved by etspy
(``.hspy``) holds everything in ``metadata.Tomography``, and is read as a plain signal.

etspy's conventions, checked against etspy 1.3 (``tests/data/make_etspy_fixture.py``):
``shifts[:, 0]`` and ``shifts[:, 1]`` are the row and column shifts in the sign of
``scipy.ndimage.shift`` (as this package's ``(dy, dx)``), applied first; ``trans_stack``
then moves the images by ``xshift`` columns and ``-yshift`` rows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .image_shifts import shift_images, valid_pixels

__all__ = ["align_like_etspy"]

#: Largest difference (degrees) between the stack's tilts and the series' that still
#: counts as the same tilt (etspy stores them as float32-rounded signals).
TILT_TOLERANCE_DEG = 0.05


def _load(stack):
    import hyperspy.api as hs

    if isinstance(stack, (str, Path)):
        path = Path(stack)
        if not path.is_file():
            raise FileNotFoundError(f"stack: no file {str(path)!r}.")
        # Without etspy installed HyperSpy warns that it loads a generic signal: this
        # module reads that signal's metadata itself, so the warning says nothing useful.
        io_logger = logging.getLogger("hyperspy.io")
        level = io_logger.level
        io_logger.setLevel(logging.ERROR)
        try:
            return hs.load(path)
        finally:
            io_logger.setLevel(level)
    return stack


def _tomography(stack) -> dict:
    """Shifts, tilts and the global transform from a live or a saved TomoStack."""
    node = stack.metadata.get_item("Tomography")
    if node is None:
        raise ValueError(
            "stack has no metadata.Tomography: it is not an etspy TomoStack (or a stack "
            "etspy saved).")

    def values(name):
        # A live TomoStack holds them as attributes (signals); a saved one in metadata.
        value = getattr(stack, name, None) if hasattr(type(stack), name) else None
        if value is None:
            value = node.get_item(name)
        if value is None:
            raise ValueError(f"stack's metadata.Tomography has no {name!r}.")
        return np.asarray(getattr(value, "data", value), dtype=float)

    def number(name):
        value = node.get_item(name)
        return 0.0 if value is None else float(value)

    return {"shifts": values("shifts"), "tilts": values("tilts").ravel(),
            "xshift": number("xshift"), "yshift": number("yshift"),
            "tiltaxis": number("tiltaxis"), "cropped": bool(node.get_item("cropped", False))}


def align_like_etspy(series, stack):
    """Shift a spectrum-image tilt series as an etspy ``TomoStack`` of its ADF was aligned.

    Parameters
    ----------
    series : TomographicEDSSpectrum
        Navigation ``(x, y, tilt)``, as :func:`hyperspy_hebt.load_tilt_series` returns it,
        not yet aligned.
    stack : etspy.TomoStack, Signal2D, str or Path
        The ADF series aligned by etspy (``stack_register``, ``trans_stack``), live or as
        etspy saved it (``.hspy``, read without etspy). Its images must be this series'
        pixels (same size, not cropped) and its tilts this series' tilts, in order.

    Returns
    -------
    (TomographicEDSSpectrum, Signal2D)
        The spectra shifted (float32, linear interpolation, pixels moved in from outside
        set to 0) and the stack's own images as the ADF series (navigation ``tilt`` with
        the angles, signal ``x``, ``y`` calibrated as the series). Both carry
        ``metadata.Alignment``: method ``"etspy"``, ``shifts_px`` (the total per-tilt
        ``(dy, dx)``), the stack's own shifts and translation, the image shape and the
        fraction of pixels valid at every tilt; the reconstructions read it and give the
        pixels without data no weight, as after :func:`~hyperspy_hebt.alignment.
        align_tilt_series`. The inputs are not modified.

    Raises
    ------
    ValueError
        A stack without etspy's ``metadata.Tomography``, another number of tilts or
        other angles, images of another size, a cropped stack (``shift_crop``), shifts
        that are not finite, or a tilt-axis rotation (``tiltaxis`` not 0: its
        convention is not carried over yet; undo it with
        ``align_tilt_series(rotation_deg=...)`` instead).
    FileNotFoundError
        ``stack`` names no file.

    Examples
    --------
    >>> from hyperspy_hebt.etspy_bridge import align_like_etspy
    >>> series, adf = align_like_etspy(series, "adf_aligned_by_etspy.hspy")  # doctest: +SKIP
    >>> series.metadata.Alignment.method  # doctest: +SKIP
    'etspy'
    """
    from .alignment import _spatial_order, _with_data
    from .tilt_series import apply_tilt_angles

    _spatial_order(series)
    stack = _load(stack)
    record = _tomography(stack)
    images = np.asarray(stack.data)
    n_tilts, n_y, n_x = series.data.shape[:3]
    if record["cropped"]:
        raise ValueError(
            "stack was cropped by etspy (shift_crop): its pixels are no longer the "
            "series' pixels. Apply etspy's alignment to an uncropped stack.")
    tilts = record["tilts"]
    if tilts.shape != (n_tilts,) or not np.allclose(tilts, series.tilt_angles, rtol=0,
                                                    atol=TILT_TOLERANCE_DEG):
        raise ValueError(
            f"stack's tilts {np.round(tilts, 2).tolist()} are not this series' "
            f"{np.round(series.tilt_angles, 2).tolist()} (degrees, in order).")
    if images.ndim != 3 or images.shape != (n_tilts, n_y, n_x):
        raise ValueError(
            f"stack holds images of shape {images.shape} (tilt, y, x); the series has "
            f"{(n_tilts, n_y, n_x)}. Align the ADF of this series (binned as it is).")
    shifts = record["shifts"]
    if shifts.shape != (n_tilts, 2) or not np.all(np.isfinite(shifts)):
        raise ValueError(f"stack's shifts must be {n_tilts} finite (dy, dx) pairs, got "
                         f"shape {shifts.shape}.")
    if record["tiltaxis"] != 0.0:
        raise ValueError(
            f"stack's tilt axis was rotated by {record['tiltaxis']:g} degrees (tiltaxis): "
            "etspy's rotation is not carried over to the spectra yet. Align in etspy "
            "without rotation, or undo it with align_tilt_series(rotation_deg=...).")
    # trans_stack moves the images by +xshift columns and -yshift rows, after the shifts.
    total = shifts + np.array([-record["yshift"], record["xshift"]])
    valid = valid_pixels((n_y, n_x), total, 0.0)
    alignment = {
        "method": "etspy",
        "shifts_px": total.tolist(),
        "rotation_deg": 0.0,
        "etspy_shifts_px": shifts.tolist(),
        "etspy_xshift_px": record["xshift"],
        "etspy_yshift_px": record["yshift"],
        "image_shape": [n_y, n_x],
        "valid_fraction": float(valid.all(axis=0).mean()),
    }
    aligned = _with_data(series, shift_images(series.data, total, 0.0), "Alignment", alignment)
    adf = _adf_signal(images, series)
    apply_tilt_angles(adf, series.tilt_angles)
    adf.metadata.set_item("Alignment", alignment)
    return aligned, adf


def _adf_signal(images: np.ndarray, series):
    """The stack's images as an ADF series calibrated like ``series``' scan."""
    import hyperspy.api as hs

    adf = hs.signals.Signal2D(np.asarray(images, dtype=np.float32))
    adf.metadata.General.title = "ADF tilt series (aligned by etspy)"
    tilt_axis, y_axis, x_axis = adf.axes_manager._axes
    tilt_axis.name = "tilt"
    for axis, name in ((x_axis, "x"), (y_axis, "y")):
        source = series.axes_manager[name]
        axis.name, axis.scale, axis.offset, axis.units = (name, source.scale, source.offset,
                                                          source.units)
    return adf
