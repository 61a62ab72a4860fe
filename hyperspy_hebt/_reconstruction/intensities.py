"""Line-intensity maps (exspy integration or the user's) and the ADF series, validated."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dask.array as da
import numpy as np

from .._units import nm_per_unit

_logger = logging.getLogger(__name__)

@dataclass
class LineIntensity:
    """One X-ray line's intensity map (navigation-shaped) and how it was made."""

    xray_line: str
    data: object  # numpy or dask array, navigation-shaped
    provenance: dict
    #: Variance of ``data`` (counts squared, navigation-shaped or a number), when known:
    #: the spectra's Poisson statistics through the integration, or the user's
    #: ``metadata.Signal.Noise_properties.variance``.
    variance: object = None


def resolve_xray_lines(signal, xray_lines) -> list:
    """The lines to work on.

    ``xray_lines`` (checked against the energy axis), else exspy's default
    (``metadata.Sample.xray_lines``, else the alpha lines of ``metadata.Sample.elements``).
    """
    if xray_lines is not None and (isinstance(xray_lines, (str, dict))
                                   or not hasattr(xray_lines, "__iter__")):
        raise TypeError(
            f"xray_lines must be a list of line names such as ['Ag_La'], got {xray_lines!r}."
        )
    requested = None if xray_lines is None else list(xray_lines)
    lines = signal._parse_xray_lines(requested, only_one=True, only_lines=("a",))
    if requested is not None and list(lines) != requested:
        missing = [line for line in requested if line not in lines]
        raise ValueError(
            f"xray_lines {missing} are not within the energy axis "
            f"({signal.axes_manager.signal_axes[0].low_value}-"
            f"{signal.axes_manager.signal_axes[0].high_value} "
            f"{signal.axes_manager.signal_axes[0].units})."
        )
    if len(lines) == 0:
        raise ValueError(
            "No X-ray lines to reconstruct: call add_elements/add_lines or pass xray_lines."
        )
    return list(lines)


def line_intensities(signal, xray_lines, intensities, integration_windows, background_windows,
                     variance: bool = False):
    """Return line-intensity maps, one per X-ray line, navigation-shaped.

    ``intensities`` may also hold :class:`LineIntensity` objects, passed through with their
    provenance. With ``variance`` integrated maps also get their Poisson variance
    (:func:`integration_variance`); the user's maps carry theirs when they have one.
    """
    nav_shape = signal.data.shape[:-1]
    if intensities is not None:
        return _user_intensities(signal, xray_lines, intensities, nav_shape)
    lines = resolve_xray_lines(signal, xray_lines)
    if np.ndim(integration_windows) == 0:
        width = integration_windows
        if isinstance(width, bool) or not isinstance(width, (int, float, np.number)) \
                or not np.isfinite(width) or width <= 0:
            raise ValueError(
                f"integration_windows must be a positive number (window width in FWHM of "
                f"each line) or one [start, end] per line, got {integration_windows!r}.")
        windows = signal.estimate_integration_windows(
            windows_width=float(integration_windows), xray_lines=lines
        )
    else:
        windows = np.asarray(integration_windows, dtype=float)
        if windows.shape != (len(lines), 2):
            raise ValueError(
                f"integration_windows must be a number or an array of shape "
                f"({len(lines)}, 2) (one [start, end] per line of {lines}), got shape "
                f"{windows.shape}."
            )
        if not (np.all(np.isfinite(windows)) and np.all(windows[:, 1] > windows[:, 0])):
            raise ValueError(
                f"integration_windows must have end > start for every line of {lines}, got "
                f"{windows.tolist()}.")
    if isinstance(background_windows, str):
        if background_windows != "auto":
            raise ValueError(
                f"background_windows must be None, 'auto' or an array of shape "
                f"({len(lines)}, 4), got {background_windows!r}."
            )
        background_windows = signal.estimate_background_windows(xray_lines=lines)
    elif background_windows is not None:
        background_windows = np.asarray(background_windows, dtype=float)
        if background_windows.shape != (len(lines), 4):
            raise ValueError(
                f"background_windows must be None, 'auto' or an array of shape "
                f"({len(lines)}, 4), got shape {background_windows.shape}."
            )
    _warn_overlaps(signal, lines, windows, background_windows)
    maps = signal.get_lines_intensity(
        xray_lines=lines,
        integration_windows=[list(map(float, w)) for w in windows],
        background_windows=background_windows,
        plot_result=False,
    )
    units = signal.axes_manager.signal_axes[0].units
    variances = [None] * len(lines)
    if variance:
        variances = integration_variance(signal, lines, windows, background_windows, maps)
    shares, share_note = window_shares(signal, lines, windows, background_windows)
    resolution = signal.metadata.get_item(
        "Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa")
    out = []
    for i, (line, image) in enumerate(zip(lines, maps)):
        provenance = {
            "source": "integration",
            "integration_window": [float(v) for v in windows[i]],
            "energy_units": units,
            "window_share": shares[i],
            "window_share_note": share_note,
            "energy_resolution_MnKa_ev": None if resolution is None else float(resolution),
        }
        if background_windows is not None:
            provenance["background_windows"] = [float(v) for v in background_windows[i]]
            warn_negative(line, image.data, "background-subtracted")
        out.append(LineIntensity(line, image.data, provenance, variances[i]))
    return out


#: What ``window_share`` means, in the reconstruction record.
WINDOW_SHARE_NOTE = (
    "share of the line's counts that the channel-snapped integration window keeps (minus "
    "what the background windows take off), for the line alone as a Gaussian of the "
    "detector's width at its energy (Fiori and Newbury's scaling of the Mn Ka resolution); "
    "quantify_cross_section divides the maps by it through the factors f_A")


def window_shares(signal, lines, windows, background_windows) -> tuple[list, str]:
    """Share of each line's counts that exspy's window integration keeps.

    A window a few FWHM wide catches part of its line, and the part depends on the line's
    width and on where the channel edges fall (20 eV channels, 1-FWHM windows: 0.62 of Mg
    Ka, 0.78 of Fe Ka), so the maps of different lines are not in proportion to their
    counts. The share is measured with exspy's own integration: each line alone, as the
    detector draws it (:func:`~hyperspy_hebt.physics.line_shapes.line_profile`), on this
    signal's energy axis, through ``get_lines_intensity`` with the same windows (and the
    same background windows, which take off part of the line's tails).

    Returns
    -------
    shares : list of float or None
        One per line; None for all when the metadata gives no energy resolution (the maps
        are then left as they are, and the note says so).
    note : str
    """
    from hyperspy.signals import Signal1D

    from ..physics.line_shapes import line_profile
    from ..physics.xray_data import split_xray_line

    resolution = signal.metadata.get_item(
        "Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa")
    if resolution is None or not np.isfinite(float(resolution)) or float(resolution) <= 0:
        return [None] * len(lines), (
            "not computed: metadata.Acquisition_instrument.TEM.Detector.EDS."
            f"energy_resolution_MnKa is {resolution!r}; the factors are not corrected for "
            "the share of each line its window catches")
    axis = signal.axes_manager.signal_axes[0]
    if not axis.is_uniform:
        return [None] * len(lines), (
            "not computed: the energy axis is not uniform; the factors are not corrected "
            "for the share of each line its window catches")
    to_kev = 1e-3 if axis.units == "eV" else 1.0
    energy_kev = np.asarray(axis.axis, dtype=float) * to_kev
    from exspy.material import elements as database

    profiles = []
    for line in lines:
        element, name = split_xray_line(line)
        line_kev = float(database[element].Atomic_properties.Xray_lines[name].energy_keV)
        profiles.append(line_profile(line_kev, energy_kev, float(axis.scale) * to_kev,
                                     float(resolution)))
    # One navigation pixel per line, so every window integrates every profile in one call.
    probe = Signal1D(np.asarray(profiles))
    probe.axes_manager.signal_axes[0].update_from(axis, ["scale", "offset", "units", "name"])
    probe.axes_manager.signal_axes[0].is_binned = True
    probe.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa",
                            float(resolution))
    probe.set_signal_type(signal.metadata.Signal.signal_type)
    maps = probe.get_lines_intensity(
        xray_lines=list(lines), integration_windows=[list(map(float, w)) for w in windows],
        background_windows=background_windows, plot_result=False)
    return [float(image.data[i]) for i, image in enumerate(maps)], WINDOW_SHARE_NOTE


def window_share_of(provenance) -> tuple[float, str]:
    """The share a line's map holds of the line's counts, from the map's provenance.

    Integrated maps: the recorded :func:`window_shares` value (1 when none was recorded,
    and the note says the map is not corrected). Fitted maps hold the whole line (1); the
    user's own maps are taken as whole-line counts (1), as the note says.
    """
    provenance = dict(provenance or {})
    source = provenance.get("source")
    if source == "integration":
        share = provenance.get("window_share")
        if share is None:
            recorded = str(provenance.get("window_share_note", ""))
            if recorded.startswith("not computed"):
                return 1.0, recorded
            return 1.0, ("integrated maps without a recorded window share (made by an "
                         "earlier version, or by hand): not corrected")
        return float(share), "measured for the integration window"
    if source == "line fit":
        return 1.0, "fitted maps: the whole line"
    return 1.0, "maps given by the user: taken as whole-line counts"


def background_scale(signal, window, background_window) -> float:
    """The factor exspy multiplies the two background windows' summed counts by.

    ``get_lines_intensity`` subtracts ``(B1 + B2) * c`` with ``c`` the line window's width
    over the background windows' total width, in channels, as computed here.
    """
    axis = signal.axes_manager.signal_axes[0]
    i = [float(axis.value2index(v)) for v in list(background_window) + list(window)]
    return (i[5] - i[4]) / ((i[1] - i[0]) + (i[3] - i[2]))


def integration_variance(signal, lines, windows, background_windows, net_maps) -> list:
    """Poisson variance of integrated line maps, from the spectra's own counts.

    Channels are independent Poisson counts, so the variance of ``W - c (B1 + B2)`` is
    ``W + c^2 (B1 + B2)``: the line window's counts plus ``c`` times the subtracted
    background (``W - net``). Observed counts are an unbiased estimate of their
    expected value, so this is unbiased too, including in pixels with few counts.

    Returns
    -------
    list
        One navigation-shaped array per line (numpy or dask, as the maps), counts
        squared.
    """
    if background_windows is None:
        return [image.data for image in net_maps]
    gross = signal.get_lines_intensity(
        xray_lines=lines, integration_windows=[list(map(float, w)) for w in windows],
        background_windows=None, plot_result=False)
    out = []
    for window, background, total, net in zip(windows, background_windows, gross, net_maps):
        scale = background_scale(signal, window, background)
        out.append(total.data + scale * (total.data - net.data))
    return out


#: Lines weaker than this (relative to the strongest of their family, exspy's
#: weights) are ignored by the overlap check.
MIN_LINE_WEIGHT = 0.05


def _present_lines(signal):
    """(name, energy in the signal's units) of every line of the listed elements."""
    from exspy.material import elements

    factor = 1000.0 if signal.axes_manager.signal_axes[0].units == "eV" else 1.0
    out = []
    for element in signal.metadata.get_item("Sample.elements", []):
        lines = elements[element].Atomic_properties.get_item("Xray_lines")
        for name in ([] if lines is None else lines.keys()):
            if lines[name].weight >= MIN_LINE_WEIGHT:
                out.append((f"{element}_{name}", lines[name].energy_keV * factor))
    return out


def _warn_overlaps(signal, lines, windows, background_windows):
    """Warn when a window takes in a line it should not (exspy integrates it silently)."""
    present = _present_lines(signal)
    for i, line in enumerate(lines):
        low, high = sorted(map(float, windows[i]))
        # Another element's line, or another line of the same element: either way
        # its counts are added, while the quantification factor covers this line only.
        intruders = [name for name, energy in present if low <= energy <= high and name != line]
        if intruders:
            _logger.warning(
                "The integration window of %s (%.3g-%.3g) contains %s: their counts are "
                "added to %s, whose cross-section factor covers %s alone. Use narrower "
                "windows or fitted intensities (intensities=s.fit_line_intensities()).",
                line, low, high, ", ".join(intruders), line, line)
        if background_windows is None:
            continue
        bw = [float(v) for v in background_windows[i]]
        for start, stop in ((bw[0], bw[1]), (bw[2], bw[3])):
            start, stop = sorted((start, stop))
            inside = [name for name, energy in present if start <= energy <= stop]
            if inside:
                _logger.warning(
                    "A background window of %s (%.3g-%.3g) sits on %s: the background is "
                    "overestimated and %s underestimated.", line, start, stop,
                    ", ".join(inside), line)


#: Metadata node of maps integrated from the spectra outside ``line_intensities`` (the
#: reconstruct command's one pass): they are checked as window sums of counts.
LINE_INTEGRATION = "LineIntegration"

_ADJECTIVES = {"line fit": "fitted", "user": "given", "integration": "integrated"}
#: A map whose negative counts exceed this share of its positive ones is flagged.
NEGATIVE_SHARE_LIMIT = 0.05


def warn_negative(line: str, data, source: str) -> bool:
    """Warn, naming the line, when a map is negative in total or in a large share.

    In-memory maps only: a lazy map is checked once computed. Returns whether it warned.

    ``source`` says what made the map: an adjective ("background-subtracted") or a
    provenance source ("line fit", "user", "integration").
    """
    source = _ADJECTIVES.get(source, source)
    if isinstance(data, da.Array):
        return False
    values = np.asarray(data, dtype=float)
    negative = -values[values < 0].sum()
    positive = values[values > 0].sum()
    if negative > 0 and positive <= negative:
        _logger.warning(
            "The %s map of %s is negative in total (%.3g counts; %.0f%% of its pixels "
            "negative): the line is absent, or hidden under another line or the background. "
            "Its reconstruction and composition would be noise: drop %s, or check the "
            "spectrum and the line list.", source, line, positive - negative,
            100 * np.mean(values < 0), line)
        return True
    if positive > 0 and negative > NEGATIVE_SHARE_LIMIT * positive:
        _logger.warning(
            "The %s map of %s is negative in %.0f%% of its pixels (negative counts are "
            "%.0f%% of the positive ones): a window or model that takes in another line, "
            "or counts too low to subtract a background from.", source, line,
            100 * np.mean(values < 0), 100 * negative / positive)
        return True
    return False


def _user_intensities(signal, xray_lines, intensities, nav_shape):
    from hyperspy.signal import BaseSignal

    if isinstance(intensities, (str, dict)) or not hasattr(intensities, "__len__"):
        raise TypeError(
            "intensities must be a list of signals or arrays, one per X-ray line, "
            f"got {type(intensities).__name__}."
        )
    if len(intensities) == 0:
        raise ValueError("intensities is empty: give one line-intensity map per X-ray line.")
    if xray_lines is not None and len(xray_lines) != len(intensities):
        raise ValueError(
            f"xray_lines has {len(xray_lines)} names for {len(intensities)} intensities."
        )
    out = []
    for i, item in enumerate(intensities):
        if isinstance(item, LineIntensity):
            # Internal: maps already integrated (and named) by line_intensities.
            if tuple(item.data.shape) != tuple(nav_shape):
                raise ValueError(f"intensities[{i}] does not match the navigation {nav_shape}.")
            out.append(item)
            continue
        data = item.data if isinstance(item, BaseSignal) else item
        if not isinstance(data, (np.ndarray, da.Array)):
            raise TypeError(
                f"intensities[{i}] must be a HyperSpy signal or an array, got "
                f"{type(item).__name__}."
            )
        if tuple(data.shape) != tuple(nav_shape):
            raise ValueError(
                f"intensities[{i}] has data shape {tuple(data.shape)}; it must match this "
                f"signal's navigation {tuple(nav_shape)} (array order, e.g. (tilt, y, x))."
            )
        if xray_lines is not None:
            line = xray_lines[i]
        elif (isinstance(item, BaseSignal)
              and len(item.metadata.get_item("Sample.xray_lines", [])) == 1):
            line = item.metadata.Sample.xray_lines[0]
        else:
            raise ValueError(
                f"intensities[{i}] has no single metadata.Sample.xray_lines entry: pass "
                "xray_lines to name the line of each intensity map."
            )
        if isinstance(data, np.ndarray) and not np.all(np.isfinite(data)):
            raise ValueError(f"intensities[{i}] ({line}) contains NaN or infinite values.")
        provenance = {"source": "user"}
        if isinstance(item, BaseSignal) and item.metadata.has_item("LineFit"):
            provenance = {"source": "line fit", **item.metadata.LineFit.as_dictionary()}
        elif isinstance(item, BaseSignal) and item.metadata.has_item(LINE_INTEGRATION):
            provenance = {"source": "integration",
                          **item.metadata.get_item(LINE_INTEGRATION).as_dictionary()}
        warn_negative(line, data, provenance["source"])
        out.append(LineIntensity(str(line), data, provenance, _user_variance(item, line, i)))
    return out


def _user_variance(item, line, index):
    """A user's map's ``metadata.Signal.Noise_properties.variance`` (array or number), or None."""
    from hyperspy.signal import BaseSignal

    if not isinstance(item, BaseSignal):
        return None
    variance = item.metadata.get_item("Signal.Noise_properties.variance")
    if variance is None:
        return None
    data = variance.data if isinstance(variance, BaseSignal) else variance
    if np.ndim(data) and tuple(np.shape(data)) != tuple(item.data.shape):
        raise ValueError(
            f"intensities[{index}] ({line}): metadata.Signal.Noise_properties.variance has "
            f"shape {tuple(np.shape(data))}, the map {tuple(item.data.shape)}; give one "
            "variance per pixel or one number.")
    if not isinstance(data, da.Array) and not (np.all(np.isfinite(data))
                                               and np.all(np.asarray(data) >= 0)):
        raise ValueError(
            f"intensities[{index}] ({line}): metadata.Signal.Noise_properties.variance must "
            "be finite and >= 0 (counts squared).")
    return data


def adf_series(signal, adf):
    """The ADF/HAADF tilt series as a navigation-shaped array of ``signal``.

    Accepts a ``Signal2D`` stack (navigation: tilt; signal: x, y), any signal or
    array whose data has the shape of ``signal``'s navigation (array order,
    e.g. ``(tilt, y, x)``), eager or lazy. It is read, never modified.
    """
    from hyperspy.signal import BaseSignal

    nav_shape = tuple(signal.data.shape[:-1])
    if isinstance(adf, BaseSignal):
        data = adf.data
    elif isinstance(adf, (np.ndarray, da.Array)):
        data = adf
    else:
        raise TypeError(
            f"adf must be a HyperSpy signal (the ADF tilt series) or an array, got "
            f"{type(adf).__name__}."
        )
    if tuple(data.shape) != nav_shape:
        raise ValueError(
            f"adf has data shape {tuple(data.shape)} but the EDS series has navigation "
            f"shape {nav_shape} (array order, e.g. (tilt, y, x)): they must match pixel for "
            "pixel. If the ADF was scanned finer, bin it first, e.g. "
            "adf.rebin(scale=(1, 2, 2)); if it has more tilts, select the EDS tilts with inav."
        )
    if isinstance(adf, BaseSignal):
        tilt = [a for a in adf.axes_manager._axes if a.name == "tilt"]
        if tilt:
            ours = np.asarray(signal.axes_manager["tilt"].axis, float)
            theirs = np.asarray(tilt[0].axis, float)
            if theirs.shape != ours.shape or not np.allclose(theirs, ours, atol=1e-6):
                raise ValueError(
                    f"adf's tilt axis {theirs.tolist()} differs from the EDS series' tilt "
                    f"angles {ours.tolist()} (degrees)."
                )
        _check_adf_pixel_size(signal, adf)
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise TypeError(f"adf data must be real numbers, got dtype {data.dtype}.")
    if isinstance(data, np.ndarray) and not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise ValueError(f"adf contains {bad} NaN or infinite values.")
    return data


#: Largest relative difference of ADF and EDS pixel sizes taken as the same size.
PIXEL_SIZE_TOLERANCE = 0.01


def _check_adf_pixel_size(signal, adf) -> None:
    """Refuse an ADF whose pixel size differs from the EDS series'.

    Scan axes are matched by name; lengths differing by more than :data:`PIXEL_SIZE_TOLERANCE` are
    refused: equal shapes with other pixel sizes are another field of view, not the same pixels.
    Axes without a length unit are not compared.
    """
    theirs = {a.name: a for a in adf.axes_manager._axes if a.name != "tilt"}
    for ours in signal.axes_manager.navigation_axes:
        other = theirs.get(ours.name)
        if other is None or not (ours.is_uniform and other.is_uniform):
            continue
        our_factor, their_factor = nm_per_unit(ours.units), nm_per_unit(other.units)
        if our_factor is None or their_factor is None:
            continue
        our_nm = abs(float(ours.scale)) * our_factor
        their_nm = abs(float(other.scale)) * their_factor
        if abs(their_nm - our_nm) > PIXEL_SIZE_TOLERANCE * our_nm:
            raise ValueError(
                f"adf's pixel size along '{ours.name}' is {their_nm:.4g} nm but the EDS "
                f"series' is {our_nm:.4g} nm: the same pixel count over another field of "
                "view. Bin or crop the ADF to the EDS scan, or correct the calibration "
                "that is wrong.")


def title_of(adf) -> str:
    """``adf.metadata.General.title`` for a signal, "" for an array."""
    metadata = getattr(adf, "metadata", None)
    return metadata.get_item("General.title", "") if metadata is not None else ""


def normalise_per_tilt(lines, tilt_index: int):
    """Lines whose maps have the same total at every tilt (shadowing correction).

    ``tilt_index`` is the tilt axis' position in the navigation-shaped maps. The
    totals are computed now (one pass for lazy maps); the factors (mean total /
    tilt total) go into the provenance.
    """
    out = []
    for line in lines:
        data = line.data
        axes = tuple(a for a in range(data.ndim) if a != tilt_index)
        totals = data.sum(axis=axes)
        totals = np.asarray(totals.compute() if isinstance(totals, da.Array) else totals,
                            dtype=float)
        if np.any(totals <= 0):
            raise ValueError(
                f"{line.xray_line} has tilts {np.flatnonzero(totals <= 0).tolist()} with no "
                "counts: per-tilt normalisation is undefined."
            )
        factors = totals.mean() / totals
        shape = [1] * data.ndim
        shape[tilt_index] = -1
        provenance = dict(line.provenance, tilt_normalisation=factors.tolist())
        factors = factors.reshape(shape)
        variance = None if line.variance is None else line.variance * factors**2
        out.append(LineIntensity(line.xray_line, data * factors, provenance, variance))
    return out
