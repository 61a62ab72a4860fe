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

import numpy as np

__all__ = ["LinearAdfCheck", "check_linear_adf", "clipped_fraction"]

#: R^2 of the ratio fit below which the linear-ADF model is called violated,
#: and doubtful below the second value. The paper's phantom fits at 0.982; a
#: FIB lamella with carbon and a saturated detector fitted at 0.78.
R_SQUARED_VIOLATED = 0.85
R_SQUARED_DOUBTFUL = 0.95
#: A ratio this many times below the median of the others is suspicious: the
#: shared ADF residual, divided among the elements by their ratios, swamps it.
SMALL_RATIO_FACTOR = 10.0
#: Fraction of ADF pixels piled up at the top (or bottom) of the range that
#: counts as saturation (clipping).
CLIPPED_FRACTION_LIMIT = 0.002
#: Spread of the per-tilt relative residual (fraction of the ADF) above which a
#: steady trend across the tilts is reported.
TREND_LIMIT = 0.05


def clipped_fraction(adf: np.ndarray, end: str = "top", band: float = 0.005) -> float:
    """Fraction of pixels piled up at one end of the ADF range.

    A detector that saturates (or clips to black) stacks many pixels within a
    narrow band at the end of its range; a natural distribution thins out there.
    Pixels within ``band`` (a fraction of the range) of the end count as
    clipped when that band holds more pixels than the adjacent band of the
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
    float
        Fraction of all pixels in the pile-up (0 when there is none).
    """
    values = np.asarray(adf, dtype=float).ravel()
    low, high = values.min(), values.max()
    width = band * (high - low)
    if width <= 0:
        return 1.0  # a constant image is all "clipped"
    if end == "top":
        edge = values >= high - width
        neighbour = (values >= high - 2 * width) & ~edge
    elif end == "bottom":
        edge = values <= low + width
        neighbour = (values <= low + 2 * width) & ~edge
    else:
        raise ValueError(f"end must be 'top' or 'bottom', got {end!r}.")
    piled = edge.sum() > max(2 * neighbour.sum(), 10)
    return float(edge.mean()) if piled else 0.0


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
    """

    verdict: str
    problems: list
    r_squared: float
    residual_per_tilt: np.ndarray = field(repr=False)
    residual: np.ndarray = field(repr=False)
    saturated_fraction: float = 0.0
    clipped_fraction: float = 0.0
    small_ratios: list = field(default_factory=list)

    def as_metadata(self) -> dict:
        """What goes into ``metadata.Reconstruction.Diagnostics``."""
        return {
            "verdict": self.verdict,
            "problems": list(self.problems) or ["none"],
            "r_squared": float(self.r_squared),
            "residual_per_tilt": np.asarray(self.residual_per_tilt, float).tolist(),
            "saturated_adf_fraction": self.saturated_fraction,
            "clipped_adf_fraction": self.clipped_fraction,
            "small_ratios": list(self.small_ratios),
        }


def check_linear_adf(eds_maps: np.ndarray, adf: np.ndarray, ratios, r_squared: float,
                     names=None, tilt_axis: int = 0) -> LinearAdfCheck:
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

    Returns
    -------
    LinearAdfCheck
    """
    eds_maps = np.asarray(eds_maps, dtype=float)
    adf = np.asarray(adf, dtype=float)
    ratios = np.asarray(ratios, dtype=float)
    names = list(names) if names is not None else [f"line {i}" for i in range(ratios.size)]
    model = np.tensordot(ratios, eds_maps, axes=1)
    residual = adf - model
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
    saturated = clipped_fraction(adf, "top")
    clipped = clipped_fraction(adf, "bottom")
    if saturated > CLIPPED_FRACTION_LIMIT:
        worsen("violated")
        problems.append(f"{saturated:.1%} of ADF pixels pile up at the top of the range "
                        "(detector saturation): the ADF is not linear there")
    if clipped > CLIPPED_FRACTION_LIMIT and clipped < 0.5:
        # Vacuum at the bottom of the range is normal when it is at zero; a
        # pile-up above zero is a clipped (black-level) detector.
        if adf.min() > 0.01 * (adf.max() - adf.min()):
            worsen("doubtful")
            problems.append(f"{clipped:.1%} of ADF pixels pile up at a non-zero floor "
                            "(black-level clipping or an offset)")
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
                          clipped, small)
