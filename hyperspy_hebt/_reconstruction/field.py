"""The field of view of a tilt series.

What lies beyond the scan, where data are missing, and where the object may be.

Three guards for real acquisitions:

* **Padding.** A lamella or any object wider than the scan keeps mass outside the
  field, which the rays near the scan's edges cross at high tilt. A reconstruction
  grid exactly as wide as the scan must put that mass inside the field, where it
  piles up at the edges. The grid is widened by ``padding_px`` columns on each
  side (the padded columns are reconstructed, then cropped from the result).
* **Invalid pixels.** After alignment, pixels shifted in from outside the recorded
  image hold no data (zeros); they are given weight 0 in the reconstruction
  instead of being read as "no mass here".
* **Thickness.** A lamella of known thickness lies within ``|z| <= t / 2`` of the
  tilt axis; voxels outside that slab are held at 0 (a support constraint), so the
  missing wedge cannot spread the lamella's mass through the whole grid.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from .._units import nm_per_unit
from ..image_shifts import invalid_pixel_mask

#: Columns at each end of the scan whose mean intensity tells whether the object
#: continues beyond the field (the outermost only: a particle that nearly fills
#: the field already brightens the second column at high tilt).
EDGE_COLUMNS = 1
#: An object counts as wider than the field when the mean of its edge columns
#: exceeds this fraction of the brightest column: an isolated particle sits near 0
#: there (noise averages out over slices and tilts; measured 0.06 for a particle
#: filling 70 % of the scan after alignment), a lamella near 1 (measured 0.91).
EXTENDED_EDGE_FRACTION = 0.25


def full_coverage_padding(tilt_angles_deg, n_detector: int, n_z: float) -> int:
    """Columns per side so that every ray stays inside the grid through the slab.

    A ray at tilt ``theta`` recorded at the scan edge ``u = n_detector / 2`` crosses
    the slab ``|z| <= n_z / 2`` up to ``|x| = (u + n_z / 2 |sin theta|) / cos theta``.
    """
    theta = np.deg2rad(np.max(np.abs(np.asarray(tilt_angles_deg, dtype=float))))
    reach = (n_detector / 2 + n_z / 2 * np.sin(theta)) / np.cos(theta)
    return max(0, int(np.ceil(reach - n_detector / 2)))


def edge_fraction(stacks, weights=None) -> float:
    """Mean intensity of the outer columns over that of the brightest column.

    ``stacks`` are sinogram stacks ``(slices, tilts, detector)`` (summed);
    ``weights`` (same shape, or None) leaves invalid pixels out.
    """
    total = stacks[0]
    for stack in stacks[1:]:
        total = total + stack
    if weights is None:
        profile = total.mean(axis=(0, 1))
    else:
        profile = (total * weights).sum(axis=(0, 1)) / np.maximum(weights.sum(axis=(0, 1)), 1)
    if isinstance(profile, da.Array):
        (profile,) = dask.compute(profile)
    profile = np.asarray(profile, dtype=float)
    peak = profile.max()
    if not np.isfinite(peak) or peak <= 0:
        return 0.0
    edges = max(profile[:EDGE_COLUMNS].mean(), profile[-EDGE_COLUMNS:].mean())
    return float(edges / peak)


def resolve_padding(padding_px, tilt_angles_deg, n_detector: int, stacks,
                    weights=None, depth_px: float | None = None) -> tuple[int, dict]:
    """Columns of padding per side, and the record of how they were chosen.

    Parameters
    ----------
    padding_px : int or "auto"
        A number of columns (>= 0) or ``"auto"``: full coverage
        (:func:`full_coverage_padding`) when the summed maps are still bright at
        the scan's edges (:func:`edge_fraction` above
        :data:`EXTENDED_EDGE_FRACTION`), else none.
    tilt_angles_deg, n_detector
        The geometry (the slab is ``n_detector`` thick).
    stacks, weights
        Sinogram stacks used by ``"auto"`` (computed for lazy data).
    depth_px : float, optional
        Depth the object can occupy (a lamella's thickness, in pixels): rays only
        need to stay in the grid through it, so "auto" pads less (a quarter-width
        lamella at 60 degrees: 0.22 of the scan per side instead of 1.37).
        Default: the whole slab.
    """
    if isinstance(padding_px, str):
        if padding_px != "auto":
            raise ValueError(f"padding_px must be a number of pixels >= 0 or 'auto', got "
                             f"{padding_px!r}.")
        fraction = edge_fraction(stacks, weights)
        extended = fraction > EXTENDED_EDGE_FRACTION
        depth = n_detector if depth_px is None else min(float(depth_px), n_detector)
        padding = full_coverage_padding(tilt_angles_deg, n_detector, depth) \
            if extended else 0
        reason = (f"auto: edge columns at {fraction:.3f} of the brightest column "
                  f"({'above' if extended else 'below'} {EXTENDED_EDGE_FRACTION}); "
                  + (("the object is wider than the scan, so the grid covers every ray "
                      "through the " + ("slab" if depth_px is None else "lamella's thickness"))
                     if extended else "the object fits in the scan"))
        return padding, {"padding_px": padding, "padding_reason": reason,
                         "edge_fraction": fraction}
    if isinstance(padding_px, bool) or not isinstance(padding_px, (int, np.integer)) \
            or padding_px < 0:
        raise ValueError(f"padding_px must be a number of pixels >= 0 or 'auto', got "
                         f"{padding_px!r}.")
    return int(padding_px), {"padding_px": int(padding_px), "padding_reason": "user"}


def invalid_pixels_of(signal, invalid_pixels, navigation_shape) -> tuple:
    """Navigation-shaped boolean array (True: no valid data) and its source.

    Parameters
    ----------
    signal : BaseSignal
        The tilt series (its ``metadata.Alignment`` is read for ``"auto"``).
    invalid_pixels : "auto", None, array-like or BaseSignal
        ``"auto"``: the pixels that :func:`~hyperspy_hebt.alignment.align_tilt_series`
        shifted in from outside the recorded images, when the series carries its
        ``metadata.Alignment``; else none. None: every pixel is valid. An array
        or signal: True where a pixel has no valid data, shaped like the
        navigation in array order (``(tilt, y, x)``).
    navigation_shape : tuple
        The series' navigation shape in array order.

    Returns
    -------
    (numpy.ndarray of bool or None, str)
    """
    navigation_shape = tuple(navigation_shape)
    if invalid_pixels is None:
        return None, "none"
    if isinstance(invalid_pixels, str):
        if invalid_pixels != "auto":
            raise ValueError(f"invalid_pixels must be 'auto', None or a boolean array, got "
                             f"{invalid_pixels!r}.")
        record = signal.metadata.get_item("Alignment")
        if record is None:
            return None, "none"
        mask = invalid_pixel_mask(record, navigation_shape)
        return (mask if mask.any() else None), "alignment"
    data = getattr(invalid_pixels, "data", invalid_pixels)
    if isinstance(data, da.Array):
        data = data.compute()
    data = np.asarray(data)
    if data.dtype != bool:
        raise TypeError(f"invalid_pixels must be a boolean array (True: no valid data), got "
                        f"dtype {data.dtype}.")
    if data.shape != navigation_shape:
        raise ValueError(f"invalid_pixels has shape {data.shape}; it must match the "
                         f"navigation shape {navigation_shape} (array order).")
    return (data if data.any() else None), "user"


def thickness_support(thickness_nm, layout) -> tuple:
    """Half the specimen thickness in grid pixels (None: no support), and its record.

    A lamella of known thickness occupies ``|z| <= t / 2`` about the tilt axis; the
    reconstruction's slab is as deep as the scan is wide, and without this the
    missing wedge spreads its mass (as streaks) through the whole slab.

    Raises
    ------
    ValueError
        A thickness that is not a positive number, a scan axis whose units are no
        length, or a thickness under one pixel or deeper than the slab.
    """
    if thickness_nm is None:
        return None, {"support": "none (the whole slab)"}
    if isinstance(thickness_nm, bool) or not isinstance(thickness_nm, (int, float, np.number)):
        raise TypeError(f"thickness_nm must be a number of nm or None, got {thickness_nm!r}.")
    thickness = float(thickness_nm)
    if not np.isfinite(thickness) or thickness <= 0:
        raise ValueError(f"thickness_nm must be a positive number of nm, got {thickness_nm!r}.")
    axis = layout.detector_axis
    factor = nm_per_unit(axis.units)
    if factor is None:
        raise ValueError(
            f"thickness_nm needs the scan axis '{axis.name}' calibrated in a length (nm, µm, "
            f"Å); its units are {axis.units!r}.")
    pixel_nm = abs(float(axis.scale)) * factor
    thickness_px = thickness / pixel_nm
    depth_px = axis.size
    if thickness_px < 1 or thickness_px > depth_px:
        raise ValueError(
            f"thickness_nm={thickness:g} is {thickness_px:.2f} pixels of {pixel_nm:.4g} nm: it "
            f"must lie between 1 pixel and the slab's depth ({depth_px} pixels, "
            f"{depth_px * pixel_nm:.4g} nm).")
    return thickness_px / 2, {"support": "slab |z| <= thickness / 2 about the tilt axis",
                              "thickness_nm": thickness, "thickness_px": thickness_px}


def grid_memory_bytes(geometry) -> int:
    """An upper estimate of the bytes a reconstruction on ``geometry`` needs at once.

    Building the Joseph system matrix samples every ray at every step along its
    dominant axis (``n_z`` rows below 45 deg, ``n_x`` columns above), two weights per
    sample (an upper bound: samples outside the grid are dropped): per tilt, about six
    float64/int64 arrays of ``n_detector x steps``; then the triplets of every tilt,
    their concatenation and scipy's conversion to CSR, later ``W`` and ``W^T``
    together: 64 bytes per weight covers them (the traced peak of the build was 59-60
    bytes per stored weight on padded lamella grids). A slice's iterate, its copy and
    its scales add 16 bytes per pixel.
    """
    angles = np.deg2rad(np.asarray(geometry.tilt_angles_deg, dtype=float))
    steps = np.where(np.abs(np.cos(angles)) >= np.abs(np.sin(angles)), geometry.n_z,
                     geometry.n_x)
    weights = 2 * geometry.n_detector * int(steps.sum())
    transient = 48 * geometry.n_detector * int(steps.max())
    matrices = 64 * weights + 16 * (geometry.n_rays + geometry.n_pixels)
    return transient + matrices + 16 * geometry.n_pixels


def available_memory_bytes() -> int | None:
    """Return the memory the system can still give, in bytes.

    Linux ``MemAvailable``, else the total, else None when neither can be read.
    """
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_grid_memory(geometry, padding_record: dict) -> None:
    """Refuse a grid whose reconstruction would not fit in memory.

    Checked before anything is allocated; the message gives the estimate and what reduces it.

    Raises
    ------
    ValueError
        The estimate (:func:`grid_memory_bytes`) exceeds the available memory.
    """
    needed = grid_memory_bytes(geometry)
    available = available_memory_bytes()
    if available is None or needed <= available:
        return
    padding = padding_record.get("padding_px", 0)
    raise ValueError(
        f"The reconstruction grid ({geometry.n_z} x {geometry.n_x} pixels per slice, "
        f"{padding} columns of padding per side, {geometry.n_tilts} tilts) needs about "
        f"{needed / 2**30:.1f} GiB at once and this machine has {available / 2**30:.1f} "
        "GiB available. Give fewer padding columns (padding_px; thickness_nm lets 'auto' "
        "pad less), bin the scan (rebin), or use a machine with more memory.")
