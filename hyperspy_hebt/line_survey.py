"""Which X-ray lines are in the data: the listed ones, and the ones nobody listed.

Acquisition software lists whatever its own identification found, and users list
what they expect; neither is proof. :func:`survey_lines` reads the sum spectrum of a
tilt series (one pass over a lazy series), estimates its bremsstrahlung background
(SNIP) and reports, by name:

- listed lines with no significant counts above the background (an absent element,
  or one whose map would be noise);
- peaks that no line of a listed element explains (stray Cu from the grid, Ga from
  the FIB, an element the user forgot), with the lines that could be them.

The arithmetic is on plain arrays (:func:`snip_background`, :func:`survey_spectrum`);
only :func:`survey_lines` knows HyperSpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from ._reconstruction.intensities import resolve_xray_lines
from .physics.line_shapes import line_fwhm_kev

__all__ = ["LineSurvey", "snip_background", "survey_lines", "survey_spectrum"]

#: A listed line whose net counts are below this many standard deviations (Poisson,
#: of all counts in its window) has "no significant counts" (3 sigma: a 0.1 % false alarm).
MISSING_SIGMA = 3.0
#: An unlisted peak must stand this many standard deviations above the background
#: (5 sigma: on a 2048-channel spectrum, 3 sigma would flag a few noise bumps).
UNLISTED_SIGMA = 5.0
#: ... and hold at least this share of the strongest listed line's net counts, so that
#: escape and sum peaks of a rich spectrum do not bury the report.
UNLISTED_MIN_FRACTION = 0.005


def snip_background(spectrum: np.ndarray, width_channels: np.ndarray | int,
                    iterations: int | None = None) -> np.ndarray:
    """Background under the peaks of a spectrum by SNIP (Ryan et al. 1988).

    Each pass replaces a channel by the mean of its neighbours ``w`` channels away
    when that is lower (peaks are clipped, the smooth continuum stays), on the
    log-log-sqrt scale that keeps the clipping even for strong and weak peaks;
    ``w`` shrinks from the widest window to 1.

    Parameters
    ----------
    spectrum : numpy.ndarray
        Counts per channel (1D, >= 0).
    width_channels : int or numpy.ndarray
        Clipping half-width per channel (about one peak FWHM), a number or one per
        channel (peaks widen with energy).
    iterations : int, optional
        Passes; default: the largest half-width.

    Returns
    -------
    numpy.ndarray
        The background, same shape, never above the spectrum.

    Examples
    --------
    A peak at 5 keV on a falling continuum: the background under it is the continuum's.

    >>> from hyperspy_hebt.line_survey import snip_background
    >>> energy = np.linspace(0, 10, 200)
    >>> spectrum = 5 * np.exp(-energy / 5) + 50 * np.exp(-(energy - 5) ** 2 / 0.01)
    >>> background = snip_background(spectrum, 10)
    >>> round(float(background[100]), 1), round(float(spectrum[100]), 1)
    (1.8, 48.8)
    """
    counts = np.clip(np.asarray(spectrum, dtype=float), 0, None)
    n = counts.size
    widths = np.broadcast_to(np.asarray(width_channels, dtype=int), (n,))
    widths = np.clip(widths, 1, max(1, n // 4))
    passes = int(widths.max()) if iterations is None else int(iterations)
    v = np.log(np.log(np.sqrt(counts + 1) + 1) + 1)
    index = np.arange(n)
    for p in range(passes, 0, -1):
        w = np.minimum(widths, p)
        left, right = np.clip(index - w, 0, n - 1), np.clip(index + w, 0, n - 1)
        v = np.minimum(v, 0.5 * (v[left] + v[right]))
    background = (np.exp(np.exp(v) - 1) - 1) ** 2 - 1
    return np.minimum(np.clip(background, 0, None), counts)


@dataclass
class LineSurvey:
    """What the sum spectrum says about the line list.

    Attributes
    ----------
    listed : list of dict
        Per listed line: ``xray_line``, ``energy_kev``, ``net_counts`` (above the
        background, within 1.2 FWHM), ``significance`` (net / sqrt(all counts in
        that window)).
    missing : list of str
        Listed lines with no significant counts.
    unlisted : list of dict
        Peaks no listed element explains: ``energy_kev``, ``net_counts``,
        ``significance``, ``candidates`` (exspy's alpha and beta lines within one FWHM,
        in exspy's order).
    zero_peak_kev : float
        Peaks below this energy are the detector's zero-energy (noise) peak and
        are not reported.

    Examples
    --------
    >>> from hyperspy_hebt.line_survey import survey_spectrum
    >>> energy_kev = np.arange(0, 10, 0.01)
    >>> counts = np.random.default_rng(0).poisson(np.full(energy_kev.size, 5.0)).astype(float)
    >>> survey = survey_spectrum(energy_kev, counts, ["Fe_Ka"], ["Fe"], 130.0)  # no Fe peak
    >>> survey.missing
    ['Fe_Ka']
    """

    listed: list
    missing: list
    unlisted: list
    zero_peak_kev: float
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every listed line has counts and no peak is left unexplained."""
        return not self.missing and not self.unlisted

    def messages(self) -> list[str]:
        """One plain sentence per finding.

        Returns
        -------
        list of str
            Missing lines, then unlisted peaks with their candidate lines; empty when the
            spectrum holds what was listed and nothing else.

        Examples
        --------
        >>> from hyperspy_hebt.line_survey import survey_spectrum
        >>> energy_kev = np.arange(0, 10, 0.01)
        >>> def peak(centre_kev, height):
        ...     return height * np.exp(-0.5 * ((energy_kev - centre_kev) / 0.06) ** 2)
        >>> spectrum = 5.0 + peak(6.40, 400.0) + peak(8.04, 300.0)  # Fe Ka, and Cu Ka unlisted
        >>> counts = np.random.default_rng(0).poisson(spectrum).astype(float)
        >>> survey = survey_spectrum(energy_kev, counts, ["Fe_Ka"], ["Fe"], 130.0)
        >>> survey.messages()  # doctest: +NORMALIZE_WHITESPACE
        ['A peak at 8.04 keV (... counts, ... sigma) is not explained by the listed
          elements; it could be Cu_Ka, ...']
        """
        out = []
        for line in self.missing:
            row = next(r for r in self.listed if r["xray_line"] == line)
            out.append(f"{line} has no significant counts in the sum spectrum "
                       f"({row['significance']:.1f} sigma above the background): its map "
                       "would be noise; drop it or check the element list.")
        for peak in self.unlisted:
            candidates = ", ".join(peak["candidates"][:4]) or "no line in exspy's table"
            out.append(f"A peak at {peak['energy_kev']:.2f} keV ({peak['net_counts']:.0f} "
                       f"counts, {peak['significance']:.0f} sigma) is not explained by the "
                       f"listed elements; it could be {candidates}. Unlisted mass biases "
                       "HEBT; list the element if it is in the specimen.")
        return out

    def as_metadata(self) -> dict:
        """The survey as nested dicts for ``metadata`` (saves and loads with the signal).

        Returns
        -------
        dict
            ``listed`` (per line: energy, net counts, significance), ``missing``, the unlisted
            peaks' energies, candidates and net counts, the zero peak, the messages and the
            method, in plain types.

        Examples
        --------
        >>> from hyperspy_hebt.line_survey import survey_spectrum
        >>> energy_kev = np.arange(0, 10, 0.01)
        >>> def peak(centre_kev, height):
        ...     return height * np.exp(-0.5 * ((energy_kev - centre_kev) / 0.06) ** 2)
        >>> spectrum = 5.0 + peak(6.40, 400.0) + peak(8.04, 300.0)  # Fe Ka, and Cu Ka unlisted
        >>> counts = np.random.default_rng(0).poisson(spectrum).astype(float)
        >>> survey = survey_spectrum(energy_kev, counts, ["Fe_Ka"], ["Fe"], 130.0)
        >>> node = survey.as_metadata()
        >>> node["missing"], node["unlisted_peaks_kev"]
        ([], [8.04])
        """
        return {
            "listed": {r["xray_line"]: {k: v for k, v in r.items() if k != "xray_line"}
                       for r in self.listed},
            "missing": list(self.missing),
            "unlisted_peaks_kev": [float(p["energy_kev"]) for p in self.unlisted],
            "unlisted_candidates": [", ".join(p["candidates"][:4]) for p in self.unlisted],
            "unlisted_net_counts": [float(p["net_counts"]) for p in self.unlisted],
            "zero_peak_kev": self.zero_peak_kev,
            "messages": self.messages(),
            "method": "sum spectrum, SNIP background, net counts within 1.2 FWHM",
        }


def _element_lines(element: str) -> list[tuple[str, float]]:
    """Return (line, keV) of every line exspy lists for an element, however weak.

    A peak of a listed element explains itself whatever its weight: at a few thousand
    counts the weak lines (Ag Ll and Lg1, Au Mz, at 0.013-0.04 of their family's
    strongest) stand 50 sigma above the background, and leaving them out reported them
    as unlisted elements (Cl, Ca, K) on a plain Ag-Au spectrum.
    """
    from exspy.material import elements

    table = elements[element].Atomic_properties.get_item("Xray_lines")
    if table is None:
        return []
    return [(f"{element}_{name}", float(table[name].energy_keV)) for name in table.keys()]


def _candidates(energy_kev: float, width_kev: float) -> list[str]:
    from exspy.utils.eds import get_xray_lines_near_energy

    return list(get_xray_lines_near_energy(energy_kev, width=2 * width_kev,
                                           only_lines=("a", "b")))


def survey_spectrum(energy_kev: np.ndarray, counts: np.ndarray, xray_lines, elements,
                    energy_resolution_mnka_ev: float) -> LineSurvey:
    """:class:`LineSurvey` of one (sum) spectrum.

    Parameters
    ----------
    energy_kev : numpy.ndarray
        Channel energies (keV), uniform.
    counts : numpy.ndarray
        Counts per channel.
    xray_lines : sequence of str
        The lines that will be reconstructed.
    elements : sequence of str
        Every listed element (its whole line family explains peaks).
    energy_resolution_mnka_ev : float
        Detector FWHM at Mn Ka (eV).

    Returns
    -------
    LineSurvey

    Examples
    --------
    A Fe Ka peak on a flat background, Fe listed:

    >>> from hyperspy_hebt.line_survey import survey_spectrum
    >>> energy_kev = np.arange(0, 10, 0.01)
    >>> expected = 5 + 200 * np.exp(-(energy_kev - 6.4039) ** 2 / (2 * 0.055 ** 2))
    >>> counts = np.random.default_rng(0).poisson(expected).astype(float)
    >>> survey = survey_spectrum(energy_kev, counts, ["Fe_Ka"], ["Fe"], 130.0)
    >>> survey.ok, survey.missing, survey.unlisted
    (True, [], [])
    """
    from exspy.material import elements as database

    energy_kev = np.asarray(energy_kev, dtype=float)
    counts = np.asarray(counts, dtype=float)
    step = float(energy_kev[1] - energy_kev[0])
    fwhm = np.array([line_fwhm_kev(max(e, 0.0), energy_resolution_mnka_ev)
                     for e in energy_kev])
    sigma_channels = max(1.0, float(np.median(fwhm)) / step / 2.355)
    # Smoothed first: at a few counts per channel the clipping would otherwise follow
    # the empty channels down to zero and call the continuum "peak".
    smooth_counts = gaussian_filter1d(counts, sigma_channels)
    background = np.minimum(snip_background(smooth_counts, np.ceil(fwhm / step).astype(int)),
                            smooth_counts)
    net = counts - background

    def measure(centre_kev):
        width = line_fwhm_kev(max(centre_kev, 0.0), energy_resolution_mnka_ev)
        inside = np.abs(energy_kev - centre_kev) <= 0.6 * width  # 1.2 FWHM: 84 % of a peak
        signal = float(net[inside].sum())
        # Poisson noise of everything counted in the window, peak included.
        noise = float(np.sqrt(max(counts[inside].sum(), 1.0)))
        return signal, signal / noise, width

    listed = []
    for line in xray_lines:
        element, name = line.split("_", 1)
        energy = float(database[element].Atomic_properties.Xray_lines[name].energy_keV)
        signal, significance, _ = measure(energy)
        listed.append({"xray_line": line, "energy_kev": energy, "net_counts": signal,
                       "significance": float(significance)})
    missing = [r["xray_line"] for r in listed if r["significance"] < MISSING_SIGMA]

    known = [energy for element in set(elements) | {line.split("_")[0] for line in xray_lines}
             for _, energy in _element_lines(element)]
    zero_peak = max(0.12, 2.5 * line_fwhm_kev(0.0, energy_resolution_mnka_ev))
    strongest = max([r["net_counts"] for r in listed] + [1.0])
    smooth = gaussian_filter1d(net, sigma_channels)
    peaks, _ = find_peaks(smooth, distance=max(1, int(round(2 * sigma_channels))))
    unlisted = []
    for index in peaks:
        energy = float(energy_kev[index])
        if energy < zero_peak or energy > energy_kev[-1] - 2 * step:
            continue
        signal, significance, width = measure(energy)
        if significance < UNLISTED_SIGMA or signal < UNLISTED_MIN_FRACTION * strongest:
            continue
        if any(abs(energy - e) <= max(width, 2 * step) for e in known):
            continue
        unlisted.append({"energy_kev": energy, "net_counts": signal,
                         "significance": float(significance),
                         "candidates": _candidates(energy, width)})
    return LineSurvey(listed, missing, unlisted, float(zero_peak))


def survey_lines(signal, xray_lines=None, sum_spectrum=None) -> LineSurvey:
    """Check a tilt series' line list against its sum spectrum.

    Parameters
    ----------
    signal : TomographicEDSSpectrum
        The series (eager, or lazy: its sum spectrum is one pass over the data).
    xray_lines : sequence of str, optional
        The lines to check; default: the lines the series would reconstruct
        (``metadata.Sample.xray_lines``, else the alpha lines of its elements).
    sum_spectrum : numpy.ndarray, optional
        The series' spectra summed over every pixel and tilt (counts per channel),
        when the caller computed it already (with the line maps, in the same pass
        over a lazy series); default: summed here.

    Returns
    -------
    LineSurvey
        Listed lines without significant counts (``missing``) and peaks no listed
        element explains (``unlisted``), with ``messages()`` in plain words.

    Raises
    ------
    ValueError
        The energy axis is not in keV or eV, or non-uniform, or the detector
        resolution is missing.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt.line_survey import survey_lines
    >>> survey = survey_lines(series)
    >>> survey.missing, survey.unlisted
    ([], [])
    """
    lines = resolve_xray_lines(signal, xray_lines)
    axis = signal.axes_manager.signal_axes[0]
    if axis.units not in ("keV", "eV") or not axis.is_uniform:
        raise ValueError(f"The energy axis must be uniform in keV or eV, got units "
                         f"{axis.units!r} (uniform: {axis.is_uniform}).")
    energy = np.asarray(axis.axis, dtype=float) / (1000.0 if axis.units == "eV" else 1.0)
    resolution = signal.metadata.get_item(
        "Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa")
    if resolution is None:
        raise ValueError(
            "The detector resolution is not in the metadata; set it (eV) with s.metadata."
            "set_item('Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa', 130).")
    if sum_spectrum is None:
        total = _sum_spectrum_of(signal)
        if hasattr(total, "compute"):
            total = total.compute()
    else:
        total = np.asarray(sum_spectrum, dtype=float)
        if total.shape != (axis.size,):
            raise ValueError(f"sum_spectrum must hold one value per channel ({axis.size}), "
                             f"got shape {total.shape}.")
    elements = list(signal.metadata.get_item("Sample.elements", []))
    return survey_spectrum(energy, np.asarray(total), lines, elements, float(resolution))


def _sum_spectrum_of(signal):
    """Sum the spectra of ``signal`` over every navigation axis.

    Float64; a dask array for a lazy signal, to compute together with other results.
    """
    return signal.data.sum(axis=tuple(range(signal.data.ndim - 1)), dtype=np.float64)
