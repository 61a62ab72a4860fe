"""Is HEBT's model valid for these data? Checks on plain arrays.

HEBT assumes the ADF signal is a linear, offset-free sum of the listed elements'
EDS signals, ``I_H = sum_A r_A I_A`` (paper section 2.2). Real acquisitions break
this in common ways: a saturated or black-clipped ADF detector, mass the element
list does not cover (carbon support, FIB layers), stray X-rays that change with
tilt, a ratio fitted near zero whose element then absorbs the shared ADF update.
:func:`check_linear_adf` measures each and says in plain words what it finds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dask.array as da
import numpy as np

__all__ = ["LinearAdfCheck", "adf_as_recorded", "check_linear_adf", "clipped_fraction",
           "clipped_mask", "hot_pixel_mask", "invalid_adf_pixels"]

#: Where a binned ADF carries the check of the ADF as recorded (before binning).
AS_RECORDED_KEY = "Signal.ADF_as_recorded"

#: R^2 of the ratio fit below which the linear-ADF model is called violated,
#: and doubtful below the second value. The paper's phantom fits at 0.982; a
#: FIB lamella with carbon and a saturated detector fitted at 0.78.
R_SQUARED_VIOLATED = 0.85
R_SQUARED_DOUBTFUL = 0.95
#: A ratio this many times below the median of the others is suspicious: the
#: shared ADF residual, divided among the elements by their ratios, swamps it.
SMALL_RATIO_FACTOR = 10.0
#: Fitted ratios whose pattern departs from the cross sections' (Eq. 16) by more
#: than this factor between two lines are reported: on clean simulations they agree
#: within 1 %; a softly saturating ADF (no pile-up to detect) bent them 1.5-2.5x
#: while R^2 stayed high. A detector efficiency left out can also do it, which the
#: message says.
PHYSICS_RATIO_FACTOR = 1.5
#: Fraction of ADF pixels piled up at the top (or bottom) of the range that
#: counts as saturation (clipping).
CLIPPED_FRACTION_LIMIT = 0.002
#: ADF floor (1st percentile), as a fraction of the maximum, above which an
#: offset is suspected: vacuum should read about zero.
OFFSET_LIMIT = 0.05
#: Spread of the per-tilt relative residual (fraction of the ADF) above which a
#: steady trend across the tilts is reported.
TREND_LIMIT = 0.05


def clipped_mask(adf: np.ndarray | da.Array, end: str = "top",
                 band: float = 0.005) -> np.ndarray | da.Array:
    """Pixels piled up at one end of the ADF range (saturated or clipped).

    A detector that saturates (or clips to black) stacks many pixels within a
    narrow band at the end of its range; a natural distribution thins out there.
    Pixels within ``band`` (a fraction of the range) of the end are returned
    when that band holds more than twice the pixels of the adjacent band of the
    same width, i.e. when the histogram rises towards the end.

    Parameters
    ----------
    adf : numpy.ndarray
        ADF intensities, any shape.
    end : {"top", "bottom"}
    band : float
        Width of the band as a fraction of the intensity range.

    Returns
    -------
    numpy.ndarray of bool
        Same shape as ``adf``; all False when there is no pile-up.

    Raises
    ------
    ValueError
        ``end`` is not ``"top"`` or ``"bottom"``.

    Examples
    --------
    >>> from hyperspy_hebt.diagnostics import clipped_mask
    >>> saturated = np.minimum(np.arange(100.0), 80)  # the detector stops at 80
    >>> int(clipped_mask(saturated).sum()), int(clipped_mask(np.arange(100.0)).sum())
    (20, 0)
    """
    values = adf if isinstance(adf, da.Array) else np.asarray(adf, dtype=float)
    low, high = values.min(), values.max()
    width = band * (high - low)
    if end == "top":
        edge = values >= high - width
        neighbour = (values >= high - 2 * width) & ~edge
    elif end == "bottom":
        edge = values <= low + width
        neighbour = (values <= low + 2 * width) & ~edge
    else:
        raise ValueError(f"end must be 'top' or 'bottom', got {end!r}.")
    # A constant image (width 0) is all "clipped". Written with array operators so
    # that a dask input gives a lazy mask.
    piled = (edge.sum() > 2 * neighbour.sum()) & (edge.sum() > 10)
    return edge & (piled | (width <= 0))


def clipped_fraction(adf: np.ndarray, end: str = "top", band: float = 0.005) -> float:
    """Fraction of pixels piled up at one end of the ADF range (see :func:`clipped_mask`).

    Parameters
    ----------
    adf : numpy.ndarray
        ADF intensities, any shape.
    end : {"top", "bottom"}
        Which end of the range.
    band : float
        Width of the band as a fraction of the intensity range.

    Returns
    -------
    float
        In [0, 1].

    Examples
    --------
    >>> from hyperspy_hebt.diagnostics import clipped_fraction
    >>> clipped_fraction(np.minimum(np.arange(100.0), 80))  # a fifth of the pixels at the top
    0.2
    """
    return float(clipped_mask(adf, end, band).mean())


#: A hot (stuck) pixel reads within this fraction of the range from the maximum ...
HOT_TOP_BAND = 0.02
#: ... and stands more than this fraction of the range above the median of its 3 x 3
#: neighbourhood: real features span several pixels, saturation forms plateaus.
HOT_JUMP = 0.5


def hot_pixel_mask(adf, spatial_axes=(0, 2)):
    """Isolated pixels at full scale (hot or stuck detector pixels).

    Parameters
    ----------
    adf : numpy.ndarray or dask.array.Array
        ADF intensities, 3D; for a dask array the mask is lazy.
    spatial_axes : (int, int)
        The image axes (default: a sinogram stack ``(slices, tilts, detector)``).

    Returns
    -------
    array of bool
        Same shape; all False for a smooth image.

    Examples
    --------
    >>> from hyperspy_hebt.diagnostics import hot_pixel_mask
    >>> stack = np.random.default_rng(0).random((3, 6, 6))  # (slices, tilts, detector)
    >>> stack[1, 3, 3] = 10.0  # one isolated pixel at full scale
    >>> np.argwhere(hot_pixel_mask(stack)).tolist()
    [[1, 3, 3]]
    """
    import scipy.ndimage as ndi

    size = [1] * adf.ndim
    for axis in spatial_axes:
        size[axis] = 3
    low, high = adf.min(), adf.max()
    if isinstance(adf, da.Array):
        depth = {axis: (1 if axis in spatial_axes else 0) for axis in range(adf.ndim)}
        median = adf.map_overlap(ndi.median_filter, depth=depth, boundary="none",
                                 size=tuple(size), mode="nearest", dtype=adf.dtype)
    else:
        median = ndi.median_filter(adf, size=tuple(size), mode="nearest")
    span = high - low
    return (adf >= high - HOT_TOP_BAND * span) & (adf - median > HOT_JUMP * span)


def invalid_adf_pixels(adf: np.ndarray | da.Array) -> np.ndarray | da.Array:
    """Saturated pixels, pixels clipped at a raised (non-zero) floor, and hot pixels.

    A pile-up at zero is vacuum, not clipping, and is kept. Hot pixels (isolated,
    at full scale: :func:`hot_pixel_mask`) are looked for in 3D sinogram stacks
    ``(slices, tilts, detector)``. Works on numpy arrays and, lazily, on dask arrays.

    Parameters
    ----------
    adf : numpy.ndarray or dask.array.Array
        ADF intensities: images, or a ``(slices, tilts, detector)`` sinogram stack.

    Returns
    -------
    numpy.ndarray or dask.array.Array of bool
        Same shape as ``adf``: True where the pixel cannot be trusted.

    Examples
    --------
    >>> from hyperspy_hebt.diagnostics import invalid_adf_pixels
    >>> vacuum_then_particle = np.concatenate([np.zeros(30), np.arange(70.0)])
    >>> int(invalid_adf_pixels(vacuum_then_particle).sum())  # vacuum is not clipping
    0
    >>> int(invalid_adf_pixels(np.minimum(vacuum_then_particle, 50)).sum())  # saturated
    20
    """
    adf = adf if isinstance(adf, da.Array) else np.asarray(adf, dtype=float)
    floor = clipped_mask(adf, "bottom")
    raised = (adf.min() > 0.01 * (adf.max() - adf.min())) & (floor.mean() < 0.5)
    invalid = clipped_mask(adf, "top") | (floor & raised)
    if adf.ndim == 3:
        invalid = invalid | hot_pixel_mask(adf)
    return invalid


def adf_as_recorded(adf) -> dict:
    """Saturation and clipping of the ADF as the detector recorded it.

    Binning averages a saturated pixel with its neighbours: the pile-up at the top
    of the range that :func:`clipped_mask` looks for is gone, while the values are
    still wrong. Measured before binning and carried with the binned ADF (under
    ``metadata.Signal.ADF_as_recorded``), the check of HEBT's model reads it.

    Parameters
    ----------
    adf : numpy.ndarray
        The ADF images as recorded (any shape).

    Returns
    -------
    dict
        ``saturated_fraction`` (pile-up at the top), ``clipped_fraction`` (pile-up at
        a raised floor) and ``zero_fraction`` (pixels at exactly 0: vacuum, or a
        dark level set too low), each a fraction of the pixels.

    Examples
    --------
    >>> from hyperspy_hebt.diagnostics import adf_as_recorded
    >>> record = adf_as_recorded(np.minimum(np.arange(100.0), 80))
    >>> record["saturated_fraction"], record["zero_fraction"]
    (0.2, 0.01)
    """
    values = np.asarray(adf, dtype=float)
    floor = clipped_mask(values, "bottom")
    raised = values.min() > 0.01 * (values.max() - values.min())
    return {"saturated_fraction": float(clipped_mask(values, "top").mean()),
            "clipped_fraction": float(floor.mean()) if raised else 0.0,
            "zero_fraction": float((values == 0).mean()),
            "shape": list(values.shape)}


@dataclass
class LinearAdfCheck:
    """Outcome of :func:`check_linear_adf`.

    Attributes
    ----------
    verdict : str
        ``"consistent"``, ``"doubtful"`` or ``"violated"``.
    problems : list of str
        Each finding in plain words (empty when consistent).
    r_squared : float
        Of the ratio fit.
    residual_per_tilt : numpy.ndarray
        RMS of ``I_H - sum_A r_A I_A`` at each tilt, relative to the mean ADF
        signal of that tilt.
    residual : numpy.ndarray
        The fit residual per pixel, same shape as the ADF data.
    saturated_fraction, clipped_fraction : float
        ADF pixels piled up at the top and the bottom of the range.
    small_ratios : list of int
        Indices of ratios that are zero or more than ``SMALL_RATIO_FACTOR`` below
        the median of the ratios.
    physics_ratio_spread : float
        Largest over smallest ``r_A / (z_A / f_A)`` (1 when the fitted ratios follow
        the cross sections; NaN when not checked).

    Examples
    --------
    >>> from hyperspy_hebt.diagnostics import check_linear_adf
    >>> rng = np.random.default_rng(0)
    >>> maps = rng.uniform(0.0, 1.0, (2, 5, 6, 8))  # 2 lines, (tilt, y, x)
    >>> maps[:, :, :, :2] = 0.0  # vacuum beside the particle
    >>> adf = 3.0 * maps[0] + 1.0 * maps[1]  # exactly linear
    >>> check = check_linear_adf(maps, adf, [3.0, 1.0], 1.0, names=["A_Ka", "B_Ka"])
    >>> check.verdict, check.problems, check.r_squared
    ('consistent', [], 1.0)
    """

    verdict: str
    problems: list
    r_squared: float
    residual_per_tilt: np.ndarray = field(repr=False)
    residual: np.ndarray = field(repr=False)
    saturated_fraction: float = 0.0
    clipped_fraction: float = 0.0
    small_ratios: list = field(default_factory=list)
    physics_ratio_spread: float = float("nan")

    def as_metadata(self) -> dict:
        """What goes into ``metadata.Reconstruction.Diagnostics``.

        Returns
        -------
        dict
            The verdict, the problems (``["none"]`` when there are none), R^2, the residual per
            tilt as a list, the ADF's saturated and clipped fractions, the small ratios and the
            ratios' spread against the physics: plain types, so it saves with a signal.

        Examples
        --------
        >>> from hyperspy_hebt.diagnostics import check_linear_adf
        >>> rng = np.random.default_rng(0)
        >>> maps = rng.uniform(0.0, 1.0, (2, 5, 6, 8))  # 2 lines, (tilt, y, x)
        >>> maps[:, :, :, :2] = 0.0  # vacuum beside the particle
        >>> adf = 3.0 * maps[0] + 1.0 * maps[1]  # exactly linear
        >>> node = check_linear_adf(maps, adf, [3.0, 1.0], 1.0).as_metadata()
        >>> node["verdict"], node["problems"]
        ('consistent', ['none'])
        """
        return {
            "verdict": self.verdict,
            "problems": list(self.problems) or ["none"],
            "r_squared": float(self.r_squared),
            "residual_per_tilt": np.asarray(self.residual_per_tilt, float).tolist(),
            "saturated_adf_fraction": self.saturated_fraction,
            "clipped_adf_fraction": self.clipped_fraction,
            "small_ratios": list(self.small_ratios),
            "physics_ratio_spread": float(self.physics_ratio_spread),
        }


def check_linear_adf(eds_maps: np.ndarray, adf: np.ndarray, ratios, r_squared: float,
                     names=None, tilt_axis: int = 0, offset: float = 0.0,
                     excluded=None, expected_ratios=None,
                     as_recorded: dict | None = None) -> LinearAdfCheck:
    """Check HEBT's condition that the ADF is a linear sum of the EDS signals.

    Parameters
    ----------
    eds_maps : numpy.ndarray
        ``(k, ...)`` line intensities the ratios were fitted on.
    adf : numpy.ndarray
        ADF intensities, shaped like one EDS map.
    ratios : sequence of float
        The fitted (or given) ``r_A``.
    r_squared : float
        R^2 of the fit (NaN when the ratios were given).
    names : sequence of str, optional
        Line names, for the messages.
    tilt_axis : int
        Axis of ``adf`` that runs over the tilts.
    offset : float
        ADF offset fitted with the ratios (the model is ``sum_A r_A I_A + offset``).
    excluded : numpy.ndarray of bool, optional
        ADF pixels left out of the fit and of HEBT's ADF term (saturated or
        clipped); they no longer count against the model.
    expected_ratios : sequence of float, optional
        ``z_A / f_A`` per line (:func:`~hyperspy_hebt.physics.adf_per_eds_factor`),
        to which the ratios should be proportional (Eq. 16).
    as_recorded : dict, optional
        :func:`adf_as_recorded` of the ADF before it was binned: saturation there
        that ``adf`` no longer shows makes the model "violated" (binned pixels that
        hold saturated ones cannot be told apart, nor left out).

    Returns
    -------
    LinearAdfCheck

    Examples
    --------
    An ADF that follows the two maps passes; the same ADF saturated at 2.5 does not:

    >>> from hyperspy_hebt.diagnostics import check_linear_adf
    >>> rng = np.random.default_rng(0)
    >>> maps = rng.uniform(0.0, 1.0, (2, 5, 6, 8))  # 2 lines, (tilt, y, x)
    >>> maps[:, :, :, :2] = 0.0  # vacuum beside the particle
    >>> adf = 3.0 * maps[0] + 1.0 * maps[1]  # exactly linear
    >>> check_linear_adf(maps, adf, [3.0, 1.0], 1.0).verdict
    'consistent'
    >>> check = check_linear_adf(maps, np.minimum(adf, 2.5), [3.0, 1.0], 0.9)
    >>> check.verdict
    'violated'
    >>> check.problems[1]
    '29.6% of ADF pixels pile up at the top of the range (detector saturation): ...'
    """
    eds_maps = np.asarray(eds_maps, dtype=float)
    adf = np.asarray(adf, dtype=float)
    ratios = np.asarray(ratios, dtype=float)
    names = list(names) if names is not None else [f"line {i}" for i in range(ratios.size)]
    model = np.tensordot(ratios, eds_maps, axes=1) + offset
    residual = adf - model
    if excluded is not None:
        residual = np.where(excluded, 0.0, residual)
    other_axes = tuple(a for a in range(adf.ndim) if a != tilt_axis)
    mean_adf = np.abs(adf).mean(axis=other_axes)
    per_tilt = np.sqrt((residual**2).mean(axis=other_axes)) / np.where(mean_adf > 0, mean_adf,
                                                                         np.inf)
    problems = []
    verdict = "consistent"

    def worsen(level):
        nonlocal verdict
        order = ["consistent", "doubtful", "violated"]
        verdict = max(verdict, level, key=order.index)

    if np.isfinite(r_squared):
        if r_squared < R_SQUARED_VIOLATED:
            worsen("violated")
            problems.append(
                f"the ADF is not explained by the EDS maps: R^2 of the ratio fit is "
                f"{r_squared:.3f} (below {R_SQUARED_VIOLATED}); check for unlisted elements, "
                "ADF saturation or an ADF offset")
        elif r_squared < R_SQUARED_DOUBTFUL:
            worsen("doubtful")
            problems.append(f"R^2 of the ratio fit is only {r_squared:.3f}")
    median = np.median(ratios)
    small = [i for i, r in enumerate(ratios)
             if r <= 0 or (median > 0 and r < median / SMALL_RATIO_FACTOR)]
    for i in small:
        worsen("violated")
        problems.append(
            f"the ratio of {names[i]} is {ratios[i]:.3g}, "
            + ("zero" if ratios[i] <= 0 else f"{median / ratios[i]:.0f}x below the median")
            + ": the shared ADF update, divided by it, would swamp that element's map")
    spread = float("nan")
    if expected_ratios is not None and ratios.size > 1 and np.all(ratios > 0):
        relative = ratios / np.asarray(expected_ratios, dtype=float)
        high, low = int(np.argmax(relative)), int(np.argmin(relative))
        spread = float(relative[high] / relative[low])
        if spread > PHYSICS_RATIO_FACTOR:
            worsen("doubtful")
            problems.append(
                f"the fitted ratios depart from the cross sections (Eq. 16): {names[high]} "
                f"against {names[low]} is {spread:.1f}x what z_A / f_A predicts; a softly "
                "saturating or non-linear ADF, unlisted mass, or a detector efficiency not "
                "given? response_ratios='physics' uses the predicted ratios with one fitted "
                "scale")
    saturated = clipped_fraction(adf, "top")
    clipped = clipped_fraction(adf, "bottom")
    handled = excluded is not None and bool(np.any(excluded))
    if as_recorded:
        raw = float(as_recorded.get("saturated_fraction", 0.0))
        if raw > CLIPPED_FRACTION_LIMIT and saturated <= CLIPPED_FRACTION_LIMIT:
            worsen("violated")
            problems.append(
                f"{raw:.1%} of the ADF pixels as recorded were saturated, which binning "
                "averaged away: the binned ADF is not linear there and the pixels cannot be "
                "left out; bin less, or use SIRT")
        raw_clipped = float(as_recorded.get("clipped_fraction", 0.0))
        if raw_clipped > CLIPPED_FRACTION_LIMIT and clipped <= CLIPPED_FRACTION_LIMIT:
            worsen("doubtful")
            problems.append(f"{raw_clipped:.1%} of the ADF pixels as recorded were clipped at "
                            "a raised floor before binning")
    if saturated > CLIPPED_FRACTION_LIMIT:
        if handled:
            problems.append(f"{saturated:.1%} of ADF pixels saturated: excluded from the fit "
                            "and from the ADF term")
        else:
            worsen("violated")
            problems.append(f"{saturated:.1%} of ADF pixels pile up at the top of the range "
                            "(detector saturation): the ADF is not linear there")
    # Vacuum at the bottom of the range is normal when it is at zero; a pile-up
    # above zero is a clipped (black-level) detector.
    if (CLIPPED_FRACTION_LIMIT < clipped < 0.5
            and adf.min() > 0.01 * (adf.max() - adf.min())):
        if handled:
            problems.append(f"{clipped:.1%} of ADF pixels clipped at a raised floor: excluded")
        else:
            worsen("doubtful")
            problems.append(f"{clipped:.1%} of ADF pixels pile up at a non-zero floor "
                            "(black-level clipping or an offset)")
    floor = float(np.percentile(adf, 1))
    if offset == 0 and floor > OFFSET_LIMIT * float(adf.max()):
        worsen("doubtful")
        problems.append(
            f"the lowest ADF values sit at {floor / adf.max():.0%} of the maximum: a dark "
            "offset? (reconstruct_hebt(adf_offset=True) fits one), or no vacuum in the field")
    if per_tilt.size >= 4 and np.ptp(per_tilt) > TREND_LIMIT:
        index = np.arange(per_tilt.size)
        # One-sided (holder shadowing) or symmetric (stray X-rays at high tilt) trends.
        trends = [np.corrcoef(x, per_tilt)[0, 1]
                  for x in (index, np.abs(index - index.mean()))]
        if max(abs(t) for t in trends) > 0.8:
            worsen("doubtful")
            problems.append(
                f"the fit residual changes steadily across the tilt series (from "
                f"{per_tilt.min():.1%} to {per_tilt.max():.1%} of the ADF): stray X-rays, "
                "shadowing (see normalise_tilt_totals), or an unlisted flat layer whose "
                "path grows with tilt?")
    return LinearAdfCheck(verdict, problems, float(r_squared), per_tilt, residual, saturated,
                          clipped, small, spread)
