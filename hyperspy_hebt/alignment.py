"""Tilt-series alignment, ADF-to-EDS registration and per-tilt normalisation.

Kernels on plain arrays (``(tilt, y, x)`` image stacks) and thin wrappers that
apply their results to HyperSpy signals, returning new signals:

- :func:`center_of_mass_shifts`: drift correction for an isolated object. With
  the rotation axis along ``y``, the projected centre of mass obeys
  ``y_c = const`` and ``x_c = a cos(theta) + b sin(theta) + x_axis``; shifting every
  tilt onto that fitted trajectory with ``x_axis`` at the image centre removes the
  drift and puts the rotation axis in the middle of the scan line;
- :func:`cross_correlation_shifts`: neighbour-to-neighbour phase correlation
  (scikit-image), for objects that leave the field of view (lamellae), where the
  centre of mass is not conserved;
- :func:`align_tilt_series`, :func:`register_adf_to_eds` and
  :func:`normalise_tilt_totals` on signals.

Shifts are ``(dy, dx)`` in pixels, to be applied to each tilt (the sign of
``scipy.ndimage.shift``). Pixels moved in from outside the field are set to 0; the
fraction of pixels valid at every tilt is recorded with the result.

An in-plane rotation of the tilt axis is estimated on request
(:func:`estimate_tilt_axis_rotation`, ``rotation_deg="auto"``) or applied when known,
and so is the axis position across the scan (:func:`estimate_tilt_axis_shift`,
``axis_shift_px="auto"``), which phase correlation leaves wherever the middle tilt had it.
"""

from __future__ import annotations

import logging

import dask.array as da
import numpy as np
import scipy.ndimage as ndi

from ._reconstruction.field import resolve_padding
from .image_shifts import invalid_pixel_mask, shift_block, shift_images, valid_pixels

_logger = logging.getLogger(__name__)

__all__ = [
    "align_tilt_series",
    "center_of_mass_shifts",
    "cross_correlation_shifts",
    "estimate_tilt_axis_rotation",
    "estimate_tilt_axis_shift",
    "invalid_pixel_mask",
    "normalise_tilt_totals",
    "register_adf_to_eds",
]


def _positive(images):
    """Images with their background (the 1st percentile of each) removed, >= 0."""
    images = np.asarray(images, dtype=float)
    floor = np.percentile(images.reshape(images.shape[0], -1), 1, axis=1)
    return np.clip(images - floor[:, None, None], 0, None)


def _centres_of_mass(images):
    weights = _positive(images)
    total = weights.sum(axis=(1, 2))
    if np.any(total <= 0):
        raise ValueError(
            f"tilts {np.flatnonzero(total <= 0).tolist()} have no signal above background: "
            "the centre of mass is undefined."
        )
    y = np.arange(images.shape[1])
    x = np.arange(images.shape[2])
    yc = (weights.sum(axis=2) @ y) / total
    xc = (weights.sum(axis=1) @ x) / total
    return yc, xc


def center_of_mass_shifts(images: np.ndarray, tilt_angles_deg) -> tuple[np.ndarray, dict]:
    """Shifts that put each tilt's centre of mass on the rigid-rotation trajectory.

    Parameters
    ----------
    images : numpy.ndarray
        ``(tilt, y, x)``, rotation axis along ``y``; the whole object must stay
        in the field at every tilt (an isolated particle).
    tilt_angles_deg : array-like
        One angle per image, degrees.

    Returns
    -------
    shifts : numpy.ndarray
        ``(tilt, 2)`` shifts ``(dy, dx)`` in pixels.
    fit : dict
        ``x_offset_px`` (where the fitted rotation axis was, relative to the
        image centre, before the shift) and ``trajectory_rms_px`` (scatter of
        the measured centres around the fitted trajectory, i.e. the drift
        that was removed).

    Examples
    --------
    A particle 3 px above the rotation axis (it swings across the field as the specimen
    tilts: a rigid rotation) that also drifts one pixel down per tilt:

    >>> from hyperspy_hebt.alignment import center_of_mass_shifts
    >>> angles = np.array([-40.0, -20.0, 0.0, 20.0, 40.0])
    >>> images = np.zeros((5, 21, 21))
    >>> for i, angle in enumerate(angles):
    ...     images[i, 8 + i, 10 + round(3 * np.sin(np.radians(angle)))] = 1.0
    >>> shifts, fit = center_of_mass_shifts(images, angles)
    >>> shifts[:, 0]  # dy: the drift undone, back to the middle of the field
    array([ 2.,  1.,  0., -1., -2.])
    >>> bool(np.abs(shifts[:, 1]).max() < 0.5)  # dx: the swing is the rotation, kept
    True
    """
    yc, xc = _centres_of_mass(images)
    theta = np.deg2rad(np.asarray(tilt_angles_deg, dtype=float))
    design = np.column_stack([np.cos(theta), np.sin(theta), np.ones_like(theta)])
    (a, b, c), *_ = np.linalg.lstsq(design, xc, rcond=None)
    centre_x = (images.shape[2] - 1) / 2
    target_x = a * np.cos(theta) + b * np.sin(theta) + centre_x
    dx = target_x - xc
    dy = yc.mean() - yc
    fitted = design @ np.array([a, b, c])
    return np.column_stack([dy, dx]), {
        "x_offset_px": float(c - centre_x),
        "trajectory_rms_px": float(np.sqrt(np.mean((xc - fitted) ** 2 + dy**2))),
    }


def cross_correlation_shifts(images: np.ndarray, upsample_factor: int = 10) -> np.ndarray:
    """Shifts from phase correlation of each tilt with its neighbour, chained.

    The tilt nearest the middle of the series is the reference; the chain runs
    outward from it, so neighbouring (most similar) projections are compared.

    Parameters
    ----------
    images : numpy.ndarray
        ``(tilt, y, x)`` images, in tilt order.
    upsample_factor : int
        Subpixel precision: shifts are found to 1/``upsample_factor`` pixel
        (:func:`skimage.registration.phase_cross_correlation`).

    Returns
    -------
    numpy.ndarray
        ``(tilt, 2)`` shifts ``(dy, dx)`` in pixels.

    Examples
    --------
    A spot moving one pixel to the right per image, brought back to the middle image's:

    >>> from hyperspy_hebt.alignment import cross_correlation_shifts
    >>> images = np.zeros((3, 9, 9))
    >>> for i in range(3):
    ...     images[i, 4, 2 + i] = 1
    >>> np.round(cross_correlation_shifts(images), 2) + 0.0  # (dy, dx) per image
    array([[ 0.,  1.],
           [ 0.,  0.],
           [ 0., -1.]])
    """
    from skimage.registration import phase_cross_correlation

    images = np.asarray(images, dtype=float)
    n = images.shape[0]
    window = np.outer(np.hanning(images.shape[1]), np.hanning(images.shape[2]))
    prepared = (images - images.mean(axis=(1, 2), keepdims=True)) * window
    shifts = np.zeros((n, 2))
    middle = n // 2
    for step in (1, -1):
        for i in range(middle + step, n if step > 0 else -1, step):
            relative, _, _ = phase_cross_correlation(prepared[i - step], prepared[i],
                                                     upsample_factor=upsample_factor,
                                                     normalization=None)
            shifts[i] = shifts[i - step] + relative
    return shifts


def estimate_tilt_axis_rotation(images: np.ndarray, search_deg: float = 10.0,
                                step_deg: float = 0.25, max_size: int = 128,
                                full_output: bool = False):
    """In-plane angle (degrees) that turns the tilt axis onto the image ``y`` axis.

    The sum of a projection across the tilt axis is the object's profile along
    the axis, the same at every tilt (the "common line"). For each candidate
    rotation the profiles are computed, smoothed (sigma 1.5 px, so that
    interpolation blur does not count), centred exactly (Fourier shift) and
    compared; the rotation where they agree best wins (grid search, refined by a
    parabola). Measured on a 40-pixel core-shell particle: within 0.05 deg for
    rotations of 0-6 deg, with or without a random-walk drift of ~1 px per tilt.

    Parameters
    ----------
    images : numpy.ndarray
        ``(tilt, y, x)`` ADF images over a range of tilts; drift is allowed.
    search_deg, step_deg : float
        Candidates from ``-search_deg`` to ``+search_deg`` degrees.
    max_size : int
        Images larger than this are block-averaged first (the angle does not
        depend on the pixel size).
    full_output : bool
        Also return the search's record: ``cost_ratio`` (best / median cost: the
        lower, the surer; 0.30 on a core-shell particle, refused above 0.6),
        ``search_deg`` and ``step_deg``.

    Returns
    -------
    float (and dict with ``full_output``)
        The angle to pass as ``rotation_deg`` (``scipy.ndimage.rotate`` convention).

    Raises
    ------
    ValueError
        When the profiles do not depend on the rotation (a featureless or
        rotationally symmetric object): the angle cannot be estimated; or when
        the best angle is at the end of the searched range (the true one may lie
        beyond it: widen ``search_deg`` or give the angle).

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt.alignment import estimate_tilt_axis_rotation
    >>> round(abs(float(estimate_tilt_axis_rotation(np.asarray(adf.data)))), 2)  # none simulated
    0.0
    """
    weights = _positive(images)
    factor = int(np.ceil(max(weights.shape[1:]) / max_size))
    if factor > 1:
        t, h, w = weights.shape
        weights = weights[:, :h - h % factor, :w - w % factor].reshape(
            t, h // factor, factor, w // factor, factor).mean(axis=(2, 4))
    y = np.arange(weights.shape[1])
    frequencies = np.fft.fftfreq(weights.shape[1])
    candidates = np.arange(-search_deg, search_deg + step_deg / 2, step_deg)
    cost_list = []
    for angle in candidates:
        profiles = np.array([ndi.rotate(w, angle, reshape=False, order=3).sum(axis=1)
                             for w in weights])
        profiles = ndi.gaussian_filter1d(profiles, 1.5, axis=1)
        profiles /= np.clip(profiles.sum(axis=1, keepdims=True), 1e-300, None)
        centres = profiles @ y
        phase = np.exp(-2j * np.pi * frequencies[None] * (centres.mean() - centres)[:, None])
        centred = np.real(np.fft.ifft(np.fft.fft(profiles, axis=1) * phase, axis=1))
        cost_list.append(np.sum((centred - centred.mean(axis=0)) ** 2))
    costs = np.asarray(cost_list)
    # A true axis makes the profiles agree several times better than a typical
    # candidate (measured: best / median 0.30 on a core-shell particle); a uniform
    # sphere gives 0.83-0.86, where the "best" angle is noise.
    if costs.min() > 0.6 * np.median(costs):
        raise ValueError(
            "The profiles along the tilt axis barely change with its rotation (a featureless "
            "or rotationally symmetric object): the tilt-axis rotation cannot be estimated "
            "from these images; pass the known rotation_deg."
        )
    best = int(np.argmin(costs))
    if best in (0, len(candidates) - 1):
        raise ValueError(
            f"The best tilt-axis rotation is at the end of the searched range "
            f"({candidates[best]:+.2f} deg of +-{search_deg:g}): the true rotation may lie "
            "beyond it. Widen search_deg, or pass the known rotation_deg (0 when the axis "
            "is vertical in the images).")
    angle = float(candidates[best])
    left, middle, right = costs[best - 1: best + 2]
    curvature = left - 2 * middle + right
    if curvature > 0:
        angle = float(candidates[best] + 0.5 * step_deg * (left - right) / curvature)
    if full_output:
        return angle, {"cost_ratio": float(costs.min() / np.median(costs)),
                       "search_deg": float(search_deg), "step_deg": float(step_deg)}
    return angle


#: Widest binned scan line of the coarse axis search: cheap, and still 1-px steps
#: of a 4x binned 256-px scan.
_COARSE_WIDTH_PX = 64


def estimate_tilt_axis_shift(images: np.ndarray, tilt_angles_deg, search_px: float | None = None,
                             slices: int = 16, iterations: int = 50,
                             padding_px: int | str = "auto",
                             valid: np.ndarray | None = None) -> tuple[float, dict]:
    """The x shift that puts the tilt axis in the middle of the scan line.

    Projections about a misplaced axis are inconsistent with every object, so a
    reconstruction reproduces them worst; this shifts the axis of the geometry
    (not the data) and keeps the shift whose SIRT reconstruction reproduces the
    measured images best (least squares after ``iterations``): a coarse search
    in 1-px steps on images binned to at most 64 px, then a bounded scalar
    minimisation to 0.02 px at full resolution.

    Parameters
    ----------
    images : numpy.ndarray
        ``(tilt, y, x)`` aligned images (ADF: low noise), rotation axis along ``y``.
    tilt_angles_deg : array-like
        One angle per image, degrees.
    search_px : float, optional
        Largest shift tried, in pixels (default: an eighth of the scan width, at
        least 4).
    slices : int
        Rows used (evenly spread over the rows holding signal).
    iterations : int
        SIRT iterations per trial.
    padding_px : int or "auto"
        Grid columns beyond the scan, as for the reconstructions (``"auto"``: full
        coverage when the object is wider than the field).
    valid : numpy.ndarray of bool, optional
        Shaped like ``images``; False on pixels without data (shifted in from
        outside the field by an alignment), which are left out.

    Returns
    -------
    shift_px : float
        To add to every tilt's x shift (the sign of ``scipy.ndimage.shift``).
    record : dict
        ``axis_shift_px``, ``search_px``, ``padding_px``, ``rows`` and the mean
        squared residuals (of images scaled to a maximum of 1) with no shift and
        with this one.

    Raises
    ------
    ValueError
        The best coarse shift is at the end of the search range (widen
        ``search_px``), or the inputs are inconsistent.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt.alignment import estimate_tilt_axis_shift
    >>> shift, record = estimate_tilt_axis_shift(np.asarray(adf.data), series.tilt_angles)
    >>> round(abs(shift), 2)  # the simulated axis is in the middle of the scan
    0.0
    """
    from scipy.optimize import minimize_scalar

    from .tomography import ParallelBeamGeometry, make_projector, sirt, validate_tilt_angles

    images = np.asarray(images, dtype=float)
    if images.ndim != 3:
        raise ValueError(f"images must be (tilt, y, x), got shape {images.shape}.")
    angles = validate_tilt_angles(tilt_angles_deg, "tilt_angles_deg")
    if angles.size != images.shape[0]:
        raise ValueError(f"{angles.size} tilt angles for {images.shape[0]} images.")
    n_x = images.shape[2]
    search = max(4.0, n_x / 8) if search_px is None else float(search_px)
    if not (np.isfinite(search) and 0 < search < n_x / 2):
        raise ValueError(f"search_px must lie in (0, {n_x / 2}) for {n_x}-px images, got "
                         f"{search_px!r}.")
    positive = _positive(images)
    row_totals = positive.sum(axis=(0, 2))
    candidates = np.flatnonzero(row_totals > 0.1 * row_totals.max())
    if candidates.size == 0:
        raise ValueError("the images hold no signal above their background.")
    rows = candidates[np.linspace(0, candidates.size - 1, min(int(slices), candidates.size))
                      .round().astype(int)]
    if valid is None:
        weights = np.ones(images.shape, np.float32)
    else:
        weights = np.asarray(valid, dtype=bool)
        if weights.shape != images.shape:
            raise ValueError(f"valid must have the images' shape {images.shape}, got "
                             f"{weights.shape}.")
        weights = weights.astype(np.float32)
    sinograms = positive[:, rows].transpose(1, 0, 2) * weights[:, rows].transpose(1, 0, 2)
    sinograms = (sinograms / sinograms.max()).astype(np.float32)
    weights = np.ascontiguousarray(weights[:, rows].transpose(1, 0, 2))
    padding, _ = resolve_padding(padding_px, angles, n_x, [sinograms], weights)

    def residual(stack, stack_weights, offset, pad):
        geometry = ParallelBeamGeometry(tuple(angles), stack.shape[2],
                                        n_x=stack.shape[2] + 2 * pad,
                                        n_z=stack.shape[2], detector_offset_px=offset)
        projector = make_projector(geometry)  # one-off geometries: keep the cache clean
        volume = sirt(projector, stack, iterations, ray_weights=stack_weights)
        misfit = (projector.forward(volume) - stack) * stack_weights
        return float(np.sum(misfit ** 2) / np.sum(stack_weights))

    factor = max(1, n_x // _COARSE_WIDTH_PX)
    n_binned = n_x // factor

    def binned(stack):
        return stack[..., :n_binned * factor].reshape(
            stack.shape[:2] + (n_binned, factor)).mean(axis=-1)

    # A binned pixel counts only where all its pixels hold data.
    coarse_stack = binned(sinograms)
    coarse_weights = (binned(weights) > 0.999).astype(np.float32)
    remainder = n_x - n_binned * factor  # cropped at the right: centres differ by r / 2
    steps = np.arange(-np.ceil(search / factor), np.ceil(search / factor) + 1)
    coarse = [residual(coarse_stack, coarse_weights, step, int(np.ceil(padding / factor)))
              for step in steps]
    best = int(np.argmin(coarse))
    if best in (0, len(steps) - 1):
        raise ValueError(f"the tilt axis seems to lie beyond the searched +-{search:g} px "
                         "(the best coarse shift is at the end of the range): pass a larger "
                         "search_px, or check the alignment.")
    centre = steps[best] * factor + remainder / 2
    fine = minimize_scalar(lambda offset: residual(sinograms, weights, offset, padding),
                           bounds=(centre - factor, centre + factor), method="bounded",
                           options={"xatol": 0.02})
    shift = float(fine.x)
    return shift, {
        "axis_shift_px": shift,
        "search_px": search,
        "padding_px": int(padding),
        "rows": rows.tolist(),
        "residual_unshifted": residual(sinograms, weights, 0.0, padding),
        "residual_shifted": float(fine.fun),
    }


def _with_data(signal, data, node, record):
    out = signal._deepcopy_with_new_data(data)
    out.metadata.set_item(node, record)
    return out


def _spatial_order(signal):
    """Check the series is (tilt, y, x, ...) in array order."""
    names = [a.name for a in signal.axes_manager.navigation_axes]
    if names[:2] != ["x", "y"] or names[-1] != "tilt":
        raise ValueError(
            f"alignment needs navigation axes (x, y, tilt); this series has {names}."
        )


def align_tilt_series(series, adf, method: str = "com", rotation_deg: float | str = 0.0,
                      axis_shift_px: float | str = 0.0):
    """Align a tilt series on its ADF images and apply the same transform to the spectra.

    Parameters
    ----------
    series : TomographicEDSSpectrum
        Navigation ``(x, y, tilt)``, rotation axis roughly along ``y``.
    adf : Signal2D
        ADF stack of the same tilts and pixels (navigation ``tilt``).
    method : {"com", "xcorr"}
        ``"com"``: centre-of-mass trajectory (isolated objects); ``"xcorr"``:
        chained phase correlation (objects larger than the field).
    rotation_deg : float or "auto"
        In-plane angle (degrees, ``scipy.ndimage.rotate`` convention) that turns
        the tilt axis onto ``y``, applied to every image before the shifts are
        measured; ``"auto"`` estimates it with :func:`estimate_tilt_axis_rotation`.
    axis_shift_px : float or "auto"
        x shift (pixels, the sign of ``scipy.ndimage.shift``) added to every
        tilt after the alignment, to put the tilt axis in the middle of the scan
        line, where the reconstructions assume it. ``"com"`` already puts it
        there; ``"xcorr"`` keeps it wherever the middle tilt had it, and
        ``"auto"`` then finds it with :func:`estimate_tilt_axis_shift` on the
        aligned ADF images (seconds to a minute: a search of SIRT runs).

    Returns
    -------
    (series, adf)
        New signals (inputs untouched), float32, with ``metadata.Alignment``:
        method, ``shifts_px`` (dy, dx per tilt), ``rotation_deg``, the fit, and
        the fraction of pixels valid at every tilt, and the image shape. The
        pixels shifted in from outside the images are zeros; the reconstructions
        read this record and give them no weight (their ``invalid_pixels``).

    Raises
    ------
    ValueError
        ``method`` is not ``"com"`` or ``"xcorr"``; ``adf``'s shape is not the series'
        navigation ``(tilt, y, x)``; ``rotation_deg`` or ``axis_shift_px`` is neither a finite
        number nor ``"auto"``.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt.alignment import align_tilt_series
    >>> aligned, aligned_adf = align_tilt_series(series, adf)
    >>> aligned.metadata.Alignment.method
    'com'
    """
    _spatial_order(series)
    if method not in ("com", "xcorr"):
        raise ValueError(f"method must be 'com' or 'xcorr', got {method!r}.")
    images = np.asarray(adf.data.compute() if isinstance(adf.data, da.Array) else adf.data,
                        dtype=float)
    if images.shape != tuple(series.data.shape[:3]):
        raise ValueError(
            f"adf has shape {images.shape}; the series' navigation is {series.data.shape[:3]} "
            "(tilt, y, x)."
        )
    if isinstance(rotation_deg, str):
        if rotation_deg != "auto":
            raise ValueError(f"rotation_deg must be a number or 'auto', got {rotation_deg!r}.")
        rotation, rotation_record = estimate_tilt_axis_rotation(images, full_output=True)
    else:
        rotation_record = {}
        rotation = float(rotation_deg)
        if not np.isfinite(rotation):
            raise ValueError(f"rotation_deg must be finite, got {rotation_deg!r}.")
    rotated = (np.array([ndi.rotate(i, rotation, reshape=False, order=1) for i in images])
               if rotation else images)
    fit: dict = {}
    if method == "com":
        shifts, fit = center_of_mass_shifts(rotated, series.tilt_angles)
    else:
        shifts = cross_correlation_shifts(rotated)
    axis_record: dict = {}
    if isinstance(axis_shift_px, str):
        if axis_shift_px != "auto":
            raise ValueError(f"axis_shift_px must be a number or 'auto', got "
                             f"{axis_shift_px!r}.")
        axis_shift, axis_record = estimate_tilt_axis_shift(
            shift_block(images, shifts, rotation), series.tilt_angles,
            valid=valid_pixels(images.shape[1:], shifts, rotation))
        axis_record = {f"axis_search_{key}": value for key, value in axis_record.items()
                       if key != "axis_shift_px"}
    else:
        axis_shift = float(axis_shift_px)
        if not np.isfinite(axis_shift):
            raise ValueError(f"axis_shift_px must be finite, got {axis_shift_px!r}.")
    shifts = shifts + np.array([0.0, axis_shift])
    valid = valid_pixels(images.shape[1:], shifts, rotation)
    record = {
        "method": method,
        "shifts_px": shifts.tolist(),
        "axis_shift_px": axis_shift,
        "axis_shift_source": "estimated" if axis_record else "given",
        **axis_record,
        "rotation_deg": rotation,
        "rotation_source": "estimated" if rotation_record else "given",
        **{f"rotation_search_{key}": value for key, value in rotation_record.items()},
        "image_shape": list(images.shape[1:]),
        "valid_fraction": float(valid.all(axis=0).mean()),
        **fit,
    }
    new_series = _with_data(series, shift_images(series.data, shifts, rotation), "Alignment",
                            record)
    new_adf = _with_data(adf, shift_images(adf.data, shifts, rotation), "Alignment", record)
    return new_series, new_adf


#: Registration is "unsure" when the per-tilt offsets spread more than this (robust
#: standard deviation, px) or the offset exceeds this fraction of the field.
REGISTRATION_SPREAD_PX = 1.0
REGISTRATION_LARGE_FRACTION = 0.05


def register_adf_to_eds(series, adf, xray_line: str | None = None, constant: bool = True,
                        integration_windows=2.0):
    """Shift the ADF images onto the EDS maps (they can be offset by scan timing).

    The offset of each tilt is the difference between the centre of mass of
    the EDS map and of the ADF image (the paper registered on its N map).

    Parameters
    ----------
    series : TomographicEDSSpectrum
    adf : Signal2D
        ADF stack of the same tilts and pixels.
    xray_line : str, optional
        Line whose map is the reference; default: the sum of the series' lines.
    constant : bool
        Use the median offset for every tilt (a detector delay is constant);
        False applies each tilt's own offset.
    integration_windows : float or array
        As for ``get_lines_intensity``.

    Returns
    -------
    Signal2D
        The shifted ADF stack, with ``metadata.Registration`` (offsets per
        tilt in pixels, the one applied, the reference, their spread between
        tilts and a ``confidence``: "low", with a logged warning, when the
        offsets spread more than 1 px or exceed 5 % of the field).

    Raises
    ------
    ValueError
        ``adf``'s images are not the shape of the EDS maps.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt.alignment import register_adf_to_eds
    >>> registered = register_adf_to_eds(series, adf)
    >>> registered.metadata.Registration.confidence  # no offset simulated here
    'high'
    """
    _spatial_order(series)
    lines = None if xray_line is None else [xray_line]
    maps = series.get_lines_intensity(xray_lines=lines, integration_windows=integration_windows)
    total = sum(np.asarray(m.data, dtype=float) for m in maps)
    reference = np.asarray(total.compute() if isinstance(total, da.Array) else total)
    images = np.asarray(adf.data.compute() if isinstance(adf.data, da.Array) else adf.data,
                        dtype=float)
    if images.shape != reference.shape:
        raise ValueError(f"adf has shape {images.shape}, the EDS maps {reference.shape}.")
    ye, xe = _centres_of_mass(reference)
    ya, xa = _centres_of_mass(images)
    offsets = np.column_stack([ye - ya, xe - xa])
    applied = np.repeat(np.median(offsets, axis=0)[None], len(offsets), 0) if constant else offsets
    # A constant delay gives the same offset at every tilt: a wide spread means the EDS
    # maps and the ADF do not show the same mass (unlisted elements, a cap, stray
    # lines), and the centres of mass measure that, not the scan offset.
    spread = 1.4826 * np.median(np.abs(offsets - np.median(offsets, axis=0)), axis=0)
    size = np.array(images.shape[1:], dtype=float)
    spread_out = bool(np.any(spread > REGISTRATION_SPREAD_PX))
    large = bool(np.any(np.abs(applied[0]) > REGISTRATION_LARGE_FRACTION * size))
    unsure = spread_out or large
    reference_name = xray_line or "sum of " + ", ".join(m.metadata.Sample.xray_lines[0]
                                                        for m in maps)
    if unsure:
        # Say which test failed: a large but steady offset is a different matter (a real
        # scan delay on a small field) from offsets that wander between tilts.
        why = "; ".join(
            ([f"the offsets spread more than {REGISTRATION_SPREAD_PX:g} px between tilts: the "
              "EDS maps and the ADF may not show the same mass"] if spread_out else [])
            + ([f"the offset is over {REGISTRATION_LARGE_FRACTION:.0%} of the field "
                f"({images.shape[1]} x {images.shape[2]} px): check that it is a real scan "
                "delay"] if large else []))
        _logger.warning(
            "ADF-EDS registration is unsure: offsets (y, x) %s px (median), spread %s px "
            "between tilts (reference: %s): %s. Try one line that follows the ADF "
            "(xray_line=...) or register=False.",
            np.round(np.median(offsets, axis=0), 2).tolist(), np.round(spread, 2).tolist(),
            reference_name, why)
    record = {
        "reference": reference_name,
        "offsets_px": offsets.tolist(),
        "applied_px": applied.tolist(),
        "constant": bool(constant),
        "offset_spread_px": spread.tolist(),
        "confidence": "low" if unsure else "high",
    }
    return _with_data(adf, shift_images(adf.data, applied, 0.0), "Registration", record)


def normalise_tilt_totals(intensities):
    """Scale each line's map so that its total is the same at every tilt.

    Detector shadowing by the holder changes the counts with tilt; the paper
    normalised each element's total over the tilts. The scale factors (mean
    total / tilt total) are recorded in ``metadata.Normalisation``.

    Parameters
    ----------
    intensities : list of signals
        Navigation-shaped line-intensity maps (``get_lines_intensity``), tilt
        the slowest axis; eager or lazy. Not modified.

    Returns
    -------
    list of signals

    Raises
    ------
    ValueError
        A map's first axis is not ``tilt``, or its total is zero or negative at some tilt
        (the per-tilt scale is then undefined; the message names the tilts).

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt.alignment import normalise_tilt_totals
    >>> maps = series.get_lines_intensity(integration_windows=1.0)
    >>> normalised = normalise_tilt_totals(maps)
    >>> len(normalised[0].metadata.Normalisation.factors)  # one per tilt
    31
    """
    out = []
    for i, signal in enumerate(intensities):
        data = signal.data
        names = [a.name for a in signal.axes_manager._axes]
        if "tilt" not in names or names.index("tilt") != 0:
            raise ValueError(
                f"intensities[{i}] must have 'tilt' as its first array axis (as "
                "get_lines_intensity returns for a tilt series)."
            )
        axes = tuple(range(1, data.ndim))
        totals = data.sum(axis=axes)
        if isinstance(totals, da.Array):
            totals = totals.compute()
        totals = np.asarray(totals, dtype=float)
        if np.any(totals <= 0):
            lines = signal.metadata.get_item("Sample.xray_lines", [])
            name = f"intensities[{i}] ({lines[0]})" if len(lines) == 1 else f"intensities[{i}]"
            bad = np.flatnonzero(totals <= 0)
            raise ValueError(
                f"{name} has a total of zero or fewer counts at tilts "
                f"{[float(a) for a in signal.axes_manager['tilt'].axis[bad]]} deg (totals "
                f"{totals[bad].round(1).tolist()}): its per-tilt scale is undefined. A "
                "negative total means the background subtraction or the line fit removed more "
                "than the line holds: the line is absent or hidden by another; drop it or "
                "check the spectrum."
            )
        factors = totals.mean() / totals
        shape = (-1,) + (1,) * (data.ndim - 1)
        scaled = _with_data(signal, data * factors.reshape(shape), "Normalisation",
                            {"method": "equal total per tilt", "factors": factors.tolist()})
        variance = signal.metadata.get_item("Signal.Noise_properties.variance")
        if variance is not None:  # scaled counts: the variance scales with the square
            from hyperspy.signal import BaseSignal

            values = (variance.data if isinstance(variance, BaseSignal)
                      else np.broadcast_to(np.asarray(variance, float), data.shape))
            holder = variance if isinstance(variance, BaseSignal) else signal
            scaled.metadata.set_item("Signal.Noise_properties.variance",
                                     holder._deepcopy_with_new_data(
                                         values * (factors**2).reshape(shape)))
        out.append(scaled)
    return out
