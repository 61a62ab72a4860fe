"""Line intensities by a linear fit of every spectrum: overlapping lines kept apart.

Window integration sums every count in a window, so a neighbouring line inside it
(Au Mβ 80 eV above Au Mα) is counted as the line itself. Here each spectrum is
fitted, by linear least squares, with

* one component per line family (K, L or M) of each element: its lines as
  Gaussians (:func:`~hyperspy_hebt.physics.line_shapes.family_profile`, the
  profiles the simulator draws from); its amplitude is the counts of the listed
  line alone, the quantity the cross-section factors describe;
* a polynomial background (Legendre, ``background_order``) in each energy
  cluster: the channels within ``window_fwhm`` FWHM of a modelled line,
  overlapping windows merged.

The positions and widths are fixed, so the fit is linear: one pseudo-inverse,
applied to every pixel (chunk by chunk for a lazy series; every line's map
comes from the same pass over the spectra). Least squares is unbiased for
Poisson counts; the amplitudes of a noisy pixel may be negative, as they should.

The check fits the sum spectrum over all pixels and reports, per cluster, the
residual counts as a fraction of the fitted line counts: a line the model does
not hold (an unlisted element) or shapes that do not match shows up there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from ._reconstruction.intensities import resolve_xray_lines
from .physics.line_shapes import family_profile, line_family, line_fwhm_kev

_logger = logging.getLogger(__name__)

__all__ = ["fit_line_intensities"]

#: A cluster whose unexplained counts in the sum spectrum exceed this fraction of
#: its fitted line counts is reported: the model misses a line or a shape there.
#: Clean simulations leave < 0.5 % (Poisson noise of the sum spectrum).
UNEXPLAINED_FRACTION = 0.05


@dataclass
class _Model:
    lines: list            # component lines (requested first)
    families: dict         # line -> [(energy_kev, weight relative to the line)]
    used: np.ndarray       # channel indices in the fit
    clusters: list         # [(start_kev, stop_kev)]
    cluster_of: np.ndarray  # cluster index of each used channel
    design: np.ndarray     # (n_used, n_components + n_background)
    n_components: int


def _families_in_range(elements, energy_kev) -> list:
    """One line per (element, family) with a line inside the energy axis.

    The family's alpha line when it has one (the line exspy's factors describe), else its first.
    """
    from exspy.material import elements as database

    low, high = energy_kev[0], energy_kev[-1]
    lines = []
    for element in elements:
        table = database[element].Atomic_properties.Xray_lines
        names = list(table.keys())
        for family in sorted({name[0] for name in names
                              if low <= table[name].energy_keV <= high}):
            members = [name for name in names if name[0] == family]
            alpha = family + "a"
            lines.append(f"{element}_{alpha if alpha in members else members[0]}")
    return lines


def _same_family(line_a: str, line_b: str) -> bool:
    element_a, name_a = line_a.split("_", 1)
    element_b, name_b = line_b.split("_", 1)
    return element_a == element_b and name_a[0] == name_b[0]


def _build_model(energy_kev, lines, resolution_ev, window_fwhm, background_order):
    scale = float(energy_kev[1] - energy_kev[0])
    low, high = energy_kev[0] - scale / 2, energy_kev[-1] + scale / 2
    families = {line: [(e, w) for e, w in line_family(line) if low <= e <= high]
                for line in lines}
    windows = sorted(
        (e - window_fwhm * fwhm, e + window_fwhm * fwhm)
        for members in families.values() for e, _ in members
        for fwhm in [line_fwhm_kev(e, resolution_ev)])
    clusters = []
    for start, stop in windows:
        if clusters and start <= clusters[-1][1]:
            clusters[-1][1] = max(clusters[-1][1], stop)
        else:
            clusters.append([start, stop])
    cluster_of = np.full(energy_kev.size, -1)
    for index, (start, stop) in enumerate(clusters):
        cluster_of[(energy_kev >= start) & (energy_kev <= stop)] = index
    used = np.flatnonzero(cluster_of >= 0)
    cluster_of = cluster_of[used]
    energies = energy_kev[used]
    # The whole family, as the spectra hold it: a member just off the axis adds its tail.
    columns = [family_profile(line, energies, scale, resolution_ev) for line in lines]
    for index in range(len(clusters)):
        inside = cluster_of == index
        if inside.sum() <= background_order + 1:
            raise ValueError(
                f"the fit window {clusters[index][0]:.3f}-{clusters[index][1]:.3f} keV holds "
                f"{int(inside.sum())} channels, too few for a background of order "
                f"{background_order}: widen window_fwhm or lower background_order.")
        span = energies[inside]
        t = 2 * (span - span.min()) / max(span.max() - span.min(), scale) - 1
        for order in range(background_order + 1):
            column = np.zeros(used.size)
            column[inside] = np.polynomial.legendre.Legendre.basis(order)(t)
            columns.append(column)
    design = np.column_stack(columns)
    return _Model(list(lines), families, used, [tuple(c) for c in clusters], cluster_of,
                  design, len(lines))


def _check_sum_spectrum(model: _Model, sum_spectrum: np.ndarray, pinv: np.ndarray) -> dict:
    measured = sum_spectrum[model.used].astype(float)
    coefficients = pinv @ measured
    fitted = model.design @ coefficients
    lines_only = model.design[:, :model.n_components] @ coefficients[:model.n_components]
    residual = measured - fitted
    clusters: dict[str, list] = {"start_kev": [], "stop_kev": [], "line_counts": [],
                                 "unexplained_fraction": []}
    problems = []
    for index, (start, stop) in enumerate(model.clusters):
        inside = model.cluster_of == index
        signal = float(np.abs(lines_only[inside]).sum())
        unexplained = float(np.abs(residual[inside]).sum())
        noise = float(np.sqrt(np.maximum(fitted[inside], 1.0)).sum())  # ~E|Poisson residual|
        fraction = max(0.0, unexplained - noise) / signal if signal > 0 else float("nan")
        for key, value in (("start_kev", start), ("stop_kev", stop), ("line_counts", signal),
                           ("unexplained_fraction", fraction)):
            clusters[key].append(float(value))
        if fraction > UNEXPLAINED_FRACTION:
            problems.append(f"{start:.2f}-{stop:.2f} keV: {100 * fraction:.0f} % of the "
                            "line counts unexplained (an unlisted line, or shapes unlike "
                            "the model's)")
    # Columns, not a list of dicts: HyperSpy's file formats store them.
    return {"clusters": clusters, "problems": problems,
            "verdict": "consistent" if not problems else "doubtful"}


def fit_line_intensities(series, xray_lines: Sequence[str] | None = None,
                         background_order: int = 2, window_fwhm: float = 3.0,
                         check: bool = True) -> list:
    """Line-intensity maps from a linear fit of every spectrum (see the module notes).

    Parameters
    ----------
    series : TomographicEDSSpectrum
        Eager or lazy; never modified.
    xray_lines : list of str, optional
        Lines to return, e.g. ``["Ag_La", "Au_Ma"]``. Default: as
        ``reconstruct_sirt`` (``metadata.Sample.xray_lines``, else the alpha lines
        of ``metadata.Sample.elements``). Every family (K, L, M) with a line on the
        energy axis of every element in ``metadata.Sample.elements`` and in
        ``xray_lines`` is modelled, whether returned or not, so that no listed
        element's lines are taken for another's or for background.
    background_order : int
        Order of the background polynomial in each cluster (>= 0).
    window_fwhm : float
        Half-width of the fitted range around each modelled line, in FWHM (> 0).
    check : bool
        Fit the sum spectrum too and report lines or shapes the model misses. A
        lazy series is then read once, now, for the check and the maps together
        (the lazy results hold the small maps); False keeps it fully lazy.

    Returns
    -------
    list of BaseSignal
        One map per line, shaped like the series' navigation (as exspy's
        ``get_lines_intensity``), lazy for a lazy series, with
        ``metadata.Sample.xray_lines`` and a ``LineFit`` node (modelled lines and
        their family members, clusters, background order, energy resolution,
        the check). Pass them as ``intensities=`` to the reconstructions.

    Raises
    ------
    ValueError
        ``window_fwhm`` or ``background_order`` out of range, two lines of one family
        asked for, an energy axis that is not uniform or not in keV/eV, no energy
        resolution in the metadata, or a cluster with fewer channels than unknowns.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> from hyperspy_hebt.line_fitting import fit_line_intensities
    >>> maps = fit_line_intensities(acquisition.series)
    >>> maps[1].metadata.General.title
    'Fitted intensity of Au_Ma (Synthetic EDS tilt series)'
    """
    if isinstance(background_order, bool) or not isinstance(background_order, (int, np.integer)) \
            or background_order < 0:
        raise ValueError(f"background_order must be an integer >= 0, got {background_order!r}.")
    window_fwhm = float(window_fwhm)
    if not (np.isfinite(window_fwhm) and window_fwhm > 0):
        raise ValueError(f"window_fwhm must be a number > 0, got {window_fwhm!r}.")
    axis = series.axes_manager.signal_axes[0]
    if not axis.is_uniform:
        raise ValueError("the energy axis must be uniform to fit line shapes.")
    if axis.units not in ("keV", "eV"):
        raise ValueError(f"the energy axis must be in keV or eV, got {axis.units!r}.")
    energy_kev = np.asarray(axis.axis, dtype=float) / (1000.0 if axis.units == "eV" else 1.0)
    resolution = series.metadata.get_item(
        "Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa")
    if resolution is None or not np.isfinite(float(resolution)) or float(resolution) <= 0:
        raise ValueError(
            "metadata.Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa (eV) "
            f"is {resolution!r}: set it with s.set_microscope_parameters("
            "energy_resolution_MnKa=...), the line widths depend on it.")
    wanted = resolve_xray_lines(series, xray_lines)
    for i, first in enumerate(wanted):
        for second in wanted[i + 1:]:
            if _same_family(first, second):
                raise ValueError(
                    f"{first} and {second} belong to one line family, which the fit models "
                    "as one component with fixed relative weights: ask for one of them.")
    listed = list(series.metadata.get_item("Sample.elements", []))
    elements = list(dict.fromkeys([line.split("_")[0] for line in wanted] + listed))
    modelled = wanted + [line for line in _families_in_range(elements, energy_kev)
                         if not any(_same_family(line, w) for w in wanted)]
    model = _build_model(energy_kev, modelled, float(resolution), window_fwhm,
                         int(background_order))
    pinv = np.linalg.pinv(model.design)
    weights = pinv[:len(wanted)].T  # (n_used, n_wanted)
    data = series.data
    if isinstance(data, da.Array):
        maps = da.tensordot(data[..., model.used].astype(np.float32),
                            weights.astype(np.float32), axes=([-1], [0]))
    else:
        maps = np.asarray(data[..., model.used], dtype=np.float32) @ weights.astype(np.float32)
    record = {
        "method": "linear least squares, fixed Gaussian line families",
        "modelled_lines": list(modelled),
        "family_members": {line: [list(m) for m in members]
                           for line, members in model.families.items()},
        "clusters_kev": [list(c) for c in model.clusters],
        "background_order": int(background_order),
        "window_fwhm": window_fwhm,
        "energy_resolution_MnKa_ev": float(resolution),
    }
    if check:
        total = data.sum(axis=tuple(range(data.ndim - 1)))
        if isinstance(data, da.Array):
            # One pass over the spectra for the check and the maps; the maps are small
            # (one value per pixel and line), so the lazy results hold them.
            total, computed = dask.compute(total, maps)
            maps = da.from_array(computed, chunks=data.chunks[:-1] + (len(wanted),))
        result = _check_sum_spectrum(model, np.asarray(total), pinv)
        record["check"] = result
        if result["problems"]:
            _logger.warning("The line fit misses part of the spectrum: %s. Add the missing "
                            "elements (s.add_elements) or check the energy calibration.",
                            "; ".join(result["problems"]))
    else:
        record["check"] = {"verdict": "not checked"}
    template = series.isig[0]
    out = []
    for index, line in enumerate(wanted):
        values = maps[..., index]
        image = template._deepcopy_with_new_data(
            values if isinstance(values, da.Array) else np.ascontiguousarray(values))
        image.metadata.General.title = (f"Fitted intensity of {line} "
                                        f"({series.metadata.General.title})")
        image.metadata.set_item("Sample.elements", [line.split("_")[0]])
        image.metadata.set_item("Sample.xray_lines", [line])
        image.metadata.set_item("LineFit", record)
        out.append(image.transpose(signal_axes=[]))
    return out
