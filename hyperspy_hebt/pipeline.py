"""From a folder of per-tilt files to quantified volumes, figures and a summary.

:func:`reconstruct_files` is what ``python -m hyperspy_hebt reconstruct`` runs:
load (the user's line list replacing the files'), check the ADF as recorded, bin,
register the ADF on the EDS maps, align, integrate the line maps and survey the sum
spectrum (one pass over the spectra for both), normalise, reconstruct (the automatic
choice by default), save the reconstructions, quantify (into their memory, once
saved), tabulate the composition per region, and write the fractions, figures and
``summary.json``. Memory freed by each stage is handed back before the next.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from . import __version__
from ._outputs import ResultWriter
from ._reconstruction.intensities import (
    LINE_INTEGRATION,
    integration_variance,
    window_shares,
)
from ._reconstruction.options import Absorption, Bootstrap
from ._reconstruction.quantify import quantify_cross_section
from .alignment import align_tilt_series, normalise_tilt_totals, register_adf_to_eds
from .compute import compute_together
from .diagnostics import AS_RECORDED_KEY, CLIPPED_FRACTION_LIMIT, adf_as_recorded
from .export import save_tomviz_emd
from .figures import orthoslices, render_3d, save_volumes
from .io import load_tilt_series
from .line_survey import _sum_spectrum_of, survey_lines
from .regions import _parse_rule, composition_figure, composition_table
from .tilt_series import rebin_keeping_tilts
from .tomography.backends import resolve_backend

__all__ = ["reconstruct_files"]


def _peak_memory_gb() -> float | None:
    """Return this process's peak resident memory so far (GB), where the system says it."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):  # Windows has no resource module
        return None
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9  # bytes / kB


def _release_freed_memory() -> None:
    """Return the memory a stage freed to the system before the next one starts.

    glibc keeps freed small and medium blocks in its heap; after cross-validation
    that was 0.2-0.3 GB of resident memory nobody used, on top of which the next
    stage's peak was counted. A no-op where the C library is not glibc.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _Stages:
    """Report each stage's time since the start and peak memory so far to ``progress``.

    One line per stage; each stage's freed memory is returned to the system.
    """

    def __init__(self, progress):
        self.progress = progress
        self.start = time.perf_counter()

    def __call__(self, message: str, release: bool = True) -> None:
        if release:  # 0.2 s (a garbage collection): once per stage, not per line
            _release_freed_memory()
        peak = _peak_memory_gb()
        memory = "" if peak is None else f", {peak:5.2f} GB"
        self.progress(f"[{time.perf_counter() - self.start:7.1f} s{memory}] {message}")

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class _Collected(logging.Handler):
    """Keeps the package's warnings of one run, for the summary."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _auto_or(value, kind, name):
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"{name} must be a number or 'auto', got {value!r}.")
        return value
    return kind(value)


def _fit_or_power(gamma):
    """``gamma`` as "fit" or a float (its range is checked by ``reconstruct_fused``)."""
    if isinstance(gamma, str) and gamma == "fit":
        return gamma
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)):
        raise ValueError(f"gamma must be a number >= 1 or 'fit', got {gamma!r}.")
    return float(gamma)


#: The volume files the reconstruct command can write (all of them by default).
VOLUME_FORMATS = ("zspy", "tif", "emd")


def reconstruct_files(
    paths: str | Sequence[str],
    out_dir: str | Path,
    elements: Sequence[str] | None = None,
    xray_lines: Sequence[str] | None = None,
    method: str = "auto",
    alpha: float | str = "auto",
    iterations: int | str = "auto",
    bin_factor: int = 1,
    align: bool = False,
    align_method: str = "com",
    rotation_deg: float | str = 0.0,
    axis_shift_px: float | str = 0.0,
    register: bool = False,
    normalise: bool = False,
    gaussian_sigma: float | str | None = "auto",
    integration_windows: float = 1.0,
    background_windows: str | None = None,
    tilt_angles: Sequence[float] | None = None,
    tilt_from: str = "metadata",
    adf_paths: str | Sequence[str] | None = None,
    padding_px: int | str = "auto",
    fit_lines: bool = False,
    backend: str = "cpu",
    regions: Sequence[str] | dict | None = None,
    thickness_nm: float | None = None,
    absorption_correction: bool | str = False,
    density: float | None = None,
    detectors: Sequence[tuple[float, float]] | None = None,
    overwrite: bool = False,
    progress=print,
    show_progressbar: bool | None = None,
    verify_checksums: bool = True,
    uncertainty: int = 0,
    tv_weight: float | str = "auto",
    gamma: float | str = 1.0,
    adf_offset: bool = False,
    formats: Sequence[str] = VOLUME_FORMATS,
) -> dict:
    """Reconstruct and quantify a tilt series stored one file per tilt.

    Parameters
    ----------
    paths : str or sequence of str
        Glob pattern or list of per-tilt files (see :func:`load_tilt_series`).
    out_dir : str or Path
        Folder for the volumes (``.zspy`` and ``.tif``), figures and ``summary.json``.
    elements, xray_lines : sequence of str, optional
        Elements (exspy picks one line each) or explicit lines; at least one. They
        **replace** the list in the files' metadata (kept in the summary).
    method : {"auto", "hebt", "sirt", "fused", "tv"}
        ``"auto"`` (default): HEBT's automatic choice when the files hold ADF
        images (plain SIRT is one of its candidates, and a "violated" model check
        makes it SIRT), SIRT otherwise. ``"fused"``: ``reconstruct_fused`` (Poisson
        counts, the ADF as a power of the lines, joint TV; needs the ADF images; its
        model check goes to the summary). ``"tv"``: ``reconstruct_poisson_tv`` from the
        EDS alone, one total variation joint over the lines (each line's own with one
        line): the low-dose method that needs no ADF model.
    alpha : float or "auto"
        HEBT weight of the ADF term (``"auto"``: cross-validated, see
        ``reconstruct_hebt``).
    iterations : int or "auto"
        Iterations of SIRT or HEBT (``"auto"``: cross-validated), or of the fused
        model's or Poisson + TV's solver (``"auto"``: 300; they converge it, they do not
        regularise).
    bin_factor : int
        Spatial binning of spectra and ADF images (the paper binned 2 x 2).
    align, align_method : bool, {"com", "xcorr"}
        Align the series on its ADF images (:func:`align_tilt_series`).
    rotation_deg : float or "auto"
        In-plane tilt-axis rotation to undo when aligning (``"auto"`` estimates it).
    axis_shift_px : float or "auto"
        x shift that centres the tilt axis when aligning (``"auto"`` estimates it;
        use it with ``align_method="xcorr"``).
    register : bool
        Shift the ADF images onto the EDS maps first (:func:`register_adf_to_eds`).
    normalise : bool
        Equal total counts per tilt for every line (shadowing correction).
    gaussian_sigma : float, None or "auto"
        As for ``reconstruct_sirt``; ``"auto"`` (default): 0.8 px for SIRT and HEBT (the
        paper's), none for the fused model and Poisson + TV (their likelihood is of the
        counts themselves).
    integration_windows, background_windows
        As for ``reconstruct_sirt``.
    tilt_angles, tilt_from, adf_paths
        As for :func:`load_tilt_series`.
    padding_px : int or "auto"
        As for ``reconstruct_sirt`` (grid beyond the scan for wide objects); the
        aligned series' pixels without data are always left out.
    fit_lines : bool
        Line intensities from :func:`~hyperspy_hebt.line_fitting.fit_line_intensities`
        (overlapping lines kept apart; its check goes to the summary) instead of
        integration windows.
    backend : {"cpu", "cupy", "auto"}
        Where the reconstructions run, as for ``reconstruct_sirt``; the one used
        goes to the summary.
    regions : sequence of str or dict, optional
        Regions to tabulate the composition of, besides ``"inside"`` (rules of
        :mod:`hyperspy_hebt.regions`, e.g. ``["Pt dominates", "not Pt dominates"]``).
    thickness_nm : float, optional
        Specimen (lamella) thickness in nm: the reconstruction is held within it
        (see ``reconstruct_sirt``).
    absorption_correction : bool or "exact"
        Correct the lines' absorption in 3D (see ``reconstruct_sirt``). With "auto"
        method, alpha or iterations, the automatic choice is made first on the
        uncorrected maps, then the chosen method reruns with the chosen numbers and the
        correction (both recorded in the summary).
    density : float, optional
        Specimen density in g/cm^3 for the correction (None: estimated, warned).
    detectors : sequence of (azimuth_deg, elevation_deg), optional
        The EDS detectors, in degrees (None: from the files' metadata).
    overwrite : bool
        Replace a previous run's results in ``out_dir`` (whole: no file of the old
        run stays). Without it such a folder is refused; a folder holding anything
        else is always refused. The results are written into a hidden sibling and
        renamed into place at the end, so a failed or interrupted run leaves the
        previous results as they were.
    progress : callable
        Receives one line of text per stage, with the time since the start.
    show_progressbar : bool or None
        dask's progress bar while the volumes are computed; None shows it on a terminal
        only (in a log file it would be hundreds of lines).
    verify_checksums : bool
        Check the files against the ``.sha256`` files beside them (see
        :func:`load_tilt_series`); what was checked goes into the summary.
    uncertainty : int
        0 (default): none. A number of bootstrap replicates (20 or more): every volume
        and weight-fraction map carries its per-voxel variance (see
        ``reconstruct_sirt``), the composition table each element's
        ``voxel_uncertainty``; about ``uncertainty + 1`` times the reconstruction's
        time. Every method, with integrated maps (not ``fit_lines``); HEBT's and the
        fused model's lines with their covariances.
    tv_weight : float or "auto"
        The total-variation weight of the fused model or Poisson + TV (see
        ``reconstruct_fused``).
    gamma : float or "fit"
        The fused model's ADF power (see ``reconstruct_fused``).
    adf_offset : bool
        Fit the ADF's offset (a dark level) with HEBT's ratios or the fused model's ADF
        model and reconstruct the ADF less it (``adf_offset`` of ``reconstruct_hebt`` and
        ``reconstruct_fused``). Not with SIRT, which does not use the ADF.
    formats : sequence of {"zspy", "tif", "emd"}
        The volume files to write: HyperSpy's ``.zspy`` (all metadata), calibrated
        float32 ``.tif`` stacks, and tomviz's ``.emd`` (``reconstructions.emd`` and
        ``weight_fractions.emd``, a channel per line or element). At least one. Each
        format holds every volume again: at 256^3 and five elements, about 0.67 GB per
        format.

    Returns
    -------
    dict
        The summary also written to ``summary.json``: the files' and the used
        line lists, the line survey, each choice and why (the automatic choice,
        HEBT's model verdict), the composition table per region, the package's
        warnings of the run, the outputs and the time taken.

    Raises
    ------
    ValueError
        An unknown method, a bad alpha, iterations or bin factor, no element or
        line, HEBT, the fused model, alignment or registration without ADF images; an
        ``out_dir`` that is a file, holds a previous run (without ``overwrite``) or other
        files; ``uncertainty`` with ``fit_lines``.

    Examples
    --------
    Files written one per tilt (here by the simulator), reconstructed by SIRT:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from hyperspy_hebt.pipeline import reconstruct_files
    >>> from hyperspy_hebt.simulation import demo_acquisition, write_acquisition_files
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = write_acquisition_files(acquisition, folder)
    >>> summary = reconstruct_files(str(folder / "tilt_*.hspy"), folder / "results",
    ...                             adf_paths=str(folder / "adf_tilt_*.hspy"),
    ...                             tilt_from="filename", elements=["Ag", "Au"],
    ...                             method="sirt", iterations=20,
    ...                             progress=lambda message: None, show_progressbar=False)
    >>> summary["algorithm"], sorted(summary["mean_weight_fraction_inside"])
    ('SIRT', ['Ag', 'Au'])
    >>> (folder / "results" / "summary.json").exists()
    True
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if not (gaussian_sigma is None or gaussian_sigma == "auto"
            or (isinstance(gaussian_sigma, (int, float)) and gaussian_sigma >= 0)):
        raise ValueError(f"gaussian_sigma must be a number >= 0, None or 'auto', got "
                         f"{gaussian_sigma!r}.")
    if not elements and not xray_lines:
        raise ValueError("Give elements or xray_lines: which signals to reconstruct (they "
                         "replace the files' own list).")
    if isinstance(bin_factor, bool) or int(bin_factor) != bin_factor or bin_factor < 1:
        raise ValueError(f"bin_factor must be a positive integer, got {bin_factor!r}.")
    Bootstrap.of(uncertainty, None)  # checks the count
    if not isinstance(adf_offset, bool):
        raise TypeError(f"adf_offset must be True or False, got {adf_offset!r}.")
    if adf_offset and method in ("sirt", "tv"):
        raise ValueError(f"adf_offset is the ADF's dark level, and method {method!r} does "
                         "not use the ADF: pass method='hebt', 'fused' or 'auto' with it.")
    formats = tuple(formats) if not isinstance(formats, str) else (formats,)
    if not formats or any(f not in VOLUME_FORMATS for f in formats) or \
            len(set(formats)) != len(formats):
        raise ValueError(f"formats must name some of {VOLUME_FORMATS}, each once, got "
                         f"{formats!r}.")
    if uncertainty and fit_lines:
        raise ValueError("uncertainty needs the maps' variance, which fitted lines do not "
                         "give yet: integrate the lines (fit_lines=False).")
    settings = _Settings(
        paths=paths, elements=elements, xray_lines=xray_lines, method=method,
        alpha=_auto_or(alpha, float, "alpha"),
        iterations=_auto_or(iterations, int, "iterations"), bin_factor=int(bin_factor),
        align=align, align_method=align_method, rotation_deg=rotation_deg,
        axis_shift_px=axis_shift_px, register=register, normalise=normalise,
        gaussian_sigma=gaussian_sigma or None, integration_windows=integration_windows,
        background_windows=background_windows, tilt_angles=tilt_angles,
        tilt_from=tilt_from, adf_paths=adf_paths, padding_px=padding_px,
        fit_lines=fit_lines, backend=backend, regions=regions, thickness_nm=thickness_nm,
        absorption=Absorption(absorption_correction, density, detectors),
        show_progressbar=show_progressbar, verify_checksums=verify_checksums,
        uncertainty=int(uncertainty), tv_weight=_auto_or(tv_weight, float, "tv_weight"),
        gamma=_fit_or_power(gamma), adf_offset=adf_offset, formats=formats)
    stage = _Stages(progress)
    collected = _Collected()
    logger = logging.getLogger("hyperspy_hebt")
    logger.addHandler(collected)
    try:
        with ResultWriter(out_dir, overwrite) as writer:
            return _run(settings, writer, stage, collected)
    finally:
        logger.removeHandler(collected)


@dataclass(frozen=True)
class _Settings:
    """The command's options, checked by :func:`reconstruct_files` (see there)."""

    paths: str | Sequence[str]
    elements: Sequence[str] | None
    xray_lines: Sequence[str] | None
    method: str
    alpha: float | str
    iterations: int | str
    bin_factor: int
    align: bool
    align_method: str
    rotation_deg: float | str
    axis_shift_px: float | str
    register: bool
    normalise: bool
    gaussian_sigma: float | str | None
    integration_windows: float
    background_windows: str | None
    tilt_angles: Sequence[float] | None
    tilt_from: str | Callable
    adf_paths: str | Sequence[str] | None
    padding_px: int | str
    fit_lines: bool
    backend: str
    regions: Sequence[str] | dict | None
    thickness_nm: float | None
    absorption: Absorption
    show_progressbar: bool | None
    verify_checksums: bool
    uncertainty: int
    tv_weight: float | str = "auto"
    gamma: float | str = 1.0
    adf_offset: bool = False
    formats: tuple = VOLUME_FORMATS

    def sigma_for(self, method: str):
        """The maps' filter for ``method``: ``"auto"`` resolved (0.8 px; none for counts)."""
        if self.gaussian_sigma == "auto":
            return None if method in COUNTING_METHODS else 0.8
        return self.gaussian_sigma


#: What ``method`` may be.
METHODS = ("auto", "hebt", "sirt", "fused", "tv")

#: Methods whose likelihood is of the counts themselves (no filter, converged solvers).
COUNTING_METHODS = ("fused", "tv")

#: The fused model's iterations when ``iterations`` is "auto" (its solver converges; the
#: count is not a regulariser).
FUSED_ITERATIONS = 300



def _run(settings: _Settings, writer: ResultWriter, stage: _Stages, collected) -> dict:
    """The stages in order; each adds what it found to the summary."""
    series, adf, method = _load(settings, stage)
    out = writer.open()  # checked before the long run; written whole at the end
    summary = _first_summary(series, method, settings)
    series, adf = _prepare_series(series, adf, settings, summary, stage)
    maps = _line_maps(series, settings, summary, stage)
    reconstructions = _reconstruct(series, adf, maps, method, settings, summary, stage)
    files = _save(reconstructions, out, settings.formats, "reconstructions.emd")
    # Saved, the volumes give their memory to the fractions (computed block by block
    # into the same arrays): one set of volumes in memory, not two (0.34 GB less for
    # five 256^3 volumes; a dask pass holding both peaked 0.8 GB higher still).
    fractions = quantify_cross_section(
        series, reconstructions, factors=None, threshold="esf", composition_units="weight",
        detector_efficiency=1.0, overwrite_reconstructions=True)
    del reconstructions
    stage("Quantified")
    named = {"inside": "inside"}
    regions = settings.regions
    if regions:
        named.update(dict(regions) if isinstance(regions, dict) else {r: r for r in regions})
    table = composition_table(fractions, named)
    summary["composition"] = table
    summary["mean_weight_fraction_inside"] = table["inside"]["mean"]
    summary["particle_voxels"] = table["inside"]["voxels"]
    summary["threshold"] = fractions[0].metadata.Quantification.get_item("threshold")
    files += _save(fractions, out, settings.formats, "weight_fractions.emd")
    figures = _figures(fractions, table, out)
    stage(f"Saved {len(files)} volume files and {len(figures)} figures")
    summary["warnings"] = collected.messages
    summary["outputs"] = [str(writer.final_path(f)) for f in files + figures]
    summary["seconds"] = round(stage.elapsed, 1)
    summary["peak_memory_gb"] = _peak_memory_gb()
    writer.commit(summary, default=_json_default)  # summary.json last, then renamed
    means = ", ".join(f"{e} {v:.3f}" for e, v in table["inside"]["mean"].items()
                      if v is not None)
    stage(f"Mean weight fractions inside the particle ({summary['algorithm']}): {means}; "
          f"wrote {writer.out}/")
    return summary


def _save(volumes, out: Path, formats: tuple, emd_name: str) -> list:
    """The volumes in every format asked for; tomviz's as one EMD (a channel each)."""
    written = save_volumes(volumes, out, [f for f in formats if f != "emd"])
    if "emd" in formats:
        written.append(save_tomviz_emd(volumes, out / emd_name))
    return written


def _load(settings: _Settings, stage):
    """Load the series (lazy), its ADF and the method.

    With what can be checked before the run: an ADF for what needs one, the bin factor, the region
    rules.
    """
    series, adf = load_tilt_series(settings.paths, tilt_angles=settings.tilt_angles,
                                   tilt_from=settings.tilt_from, adf_paths=settings.adf_paths,
                                   lazy=True, elements=settings.elements,
                                   xray_lines=settings.xray_lines,
                                   verify_checksums=settings.verify_checksums)
    stage(f"Loaded {series} with tilts {series.tilt_angles.min():g} to "
          f"{series.tilt_angles.max():g} deg")
    method = settings.method
    if method == "auto":
        method = "hebt" if adf is not None else "sirt"
        if method == "sirt":
            stage("No ADF images in the files: EDS-only SIRT")
    if (method in ("hebt", "fused") or settings.align or settings.register
            or settings.adf_offset) and adf is None:
        raise ValueError(
            "HEBT, the fused model, alignment, registration and adf_offset need the ADF "
            "images, and the files hold none (pass adf_paths for formats that store them "
            "apart).")
    _check_before_the_run(series, settings.bin_factor, settings.regions)
    return series, adf, method


def _first_summary(series, method, settings: _Settings) -> dict:
    tree = series.original_metadata.tilt_series
    return {"package": f"hyperspy_hebt {__version__}", "files": len(series.tilt_angles),
            "tilt_angles_deg": series.tilt_angles.tolist(), "method": method,
            "alpha": settings.alpha, "iterations": settings.iterations,
            "bin_factor": settings.bin_factor,
            "file_elements": list(tree.get_item("file_elements", [])),
            "elements": list(series.metadata.Sample.elements),
            "renamed_axes": (tree.renamed_axes.as_dictionary()
                             if tree.has_item("renamed_axes") else {}),
            "checksums": _plain(tree.get_item("checksums"))}


def _plain(node):
    """A metadata node (or a plain value) as plain Python for the summary."""
    return node.as_dictionary() if hasattr(node, "as_dictionary") else node


def _prepare_series(series, adf, settings: _Settings, summary: dict, stage):
    """The ADF as recorded, then binning, registration and alignment as asked."""
    if adf is not None:
        # Saturation averages away when binned: measured on the ADF as recorded, and
        # carried with it for HEBT's model check.
        recorded = adf_as_recorded(adf.data.compute() if adf._lazy else adf.data)
        summary["adf_as_recorded"] = recorded
        adf.metadata.set_item(AS_RECORDED_KEY, recorded)
        if recorded["saturated_fraction"] > CLIPPED_FRACTION_LIMIT:
            stage(f"ADF as recorded: {recorded['saturated_fraction']:.1%} of pixels saturated")
    factor = settings.bin_factor
    if factor > 1:
        series = series.rebin(scale=(factor, factor, 1, 1))
        adf = None if adf is None else rebin_keeping_tilts(adf, scale=(1, factor, factor))
        stage(f"Binned {factor} x {factor}")
    if settings.register:
        adf = register_adf_to_eds(series, adf,
                                  integration_windows=settings.integration_windows)
        summary["adf_registration_px"] = adf.metadata.Registration.applied_px[0]
        stage(f"ADF registered on the EDS maps: {summary['adf_registration_px']} px")
    if settings.align:
        series, adf = align_tilt_series(series, adf, method=settings.align_method,
                                        rotation_deg=settings.rotation_deg,
                                        axis_shift_px=settings.axis_shift_px)
        alignment = series.metadata.Alignment.as_dictionary()
        summary["alignment"] = alignment
        stage(f"Aligned ({settings.align_method}); largest shift "
              f"{np.abs(np.array(alignment['shifts_px'])).max():.2f} px, "
              f"tilt-axis rotation {alignment['rotation_deg']:.2f} deg, "
              f"axis shift {alignment['axis_shift_px']:.2f} px")
    return series, adf


def _line_maps(series, settings: _Settings, summary: dict, stage) -> list:
    """Make the line maps (fitted or integrated) and the sum spectrum's survey.

    One pass over the spectra; the maps are normalised per tilt if asked.
    """
    if settings.fit_lines:
        maps = series.fit_line_intensities()
        check = maps[0].metadata.LineFit.check
        summary["line_fit"] = {"verdict": check.verdict, "problems": list(check.problems)}
        stage(f"Line intensities fitted; check: {check.verdict}")
    else:
        background = settings.background_windows == "auto"
        lines = series._parse_xray_lines(None, True, ("a",))  # exspy's default lines
        windows = [list(map(float, w)) for w in series.estimate_integration_windows(
            windows_width=settings.integration_windows, xray_lines=lines)]
        background_windows = (series.estimate_background_windows(xray_lines=lines)
                              if background else None)
        maps = series.get_lines_intensity(xray_lines=lines, integration_windows=windows,
                                          background_windows=background_windows)
        variances = (integration_variance(series, lines, windows, background_windows, maps)
                     if settings.uncertainty else [None] * len(maps))
        shares, share_note = window_shares(series, lines, windows, background_windows)
        for image, variance, share in zip(maps, variances, shares):
            if variance is not None:  # the spectra's Poisson statistics, for the bootstrap
                image.metadata.set_item("Signal.Noise_properties.variance",
                                        image._deepcopy_with_new_data(variance))
            # Window sums of counts: the reconstructions check them as such (a negative
            # offset or spike in the spectra is refused, not reconstructed).
            image.metadata.set_item(LINE_INTEGRATION, {
                "integration_window_fwhm": float(settings.integration_windows),
                "window_share": share, "window_share_note": share_note,
                **({"background_windows": "auto"} if background else {})})
    maps, total = _in_memory(maps, _sum_spectrum_of(series))
    survey = survey_lines(series, sum_spectrum=total)
    summary["line_survey"] = survey.as_metadata()
    if survey.ok:
        stage("Sum spectrum: every listed line is there and no peak is unexplained")
    for message in survey.messages():
        stage(f"Sum spectrum: {message}", release=False)
    if settings.normalise:
        maps = normalise_tilt_totals(maps)
        summary["normalisation_factors"] = {
            m.metadata.Sample.xray_lines[0]: m.metadata.Normalisation.factors for m in maps}
    summary["xray_lines"] = [m.metadata.Sample.xray_lines[0] for m in maps]
    return maps


def _reconstruct(series, adf, maps, method, settings: _Settings, summary: dict,
                 stage) -> list:
    """The reconstructions, computed (the automatic choice and its reasons recorded)."""
    lines = summary["xray_lines"]
    alpha, iterations = settings.alpha, settings.iterations
    common = dict(iterations=iterations, intensities=maps, xray_lines=lines,
                  gaussian_sigma=settings.sigma_for(method), show_progressbar=False,
                  padding_px=settings.padding_px, thickness_nm=settings.thickness_nm,
                  backend=resolve_backend(settings.backend))  # resolved: the blocks run here
    if method == "fused":
        return _fused(series, adf, common, settings, summary, stage)
    if method == "tv":
        return _poisson_tv(series, common, settings, summary, stage)
    automatic = isinstance(iterations, str) or (method == "hebt" and isinstance(alpha, str))
    stage(f"Reconstructing {', '.join(lines)}" + (
        " (choosing the method and settings by cross-validation)" if automatic else ""))
    absorption = settings.absorption
    if absorption.correction and not automatic:
        common.update(absorption_correction=absorption.mode, density=absorption.density,
                      detectors=absorption.detectors)
    if settings.uncertainty:
        common["uncertainty"] = settings.uncertainty
    if method == "hebt":
        reconstructions = series.reconstruct_hebt(adf, alpha=alpha,
                                                  adf_offset=settings.adf_offset, **common)
    else:
        reconstructions = series.reconstruct_sirt(**common)
    if absorption.correction and automatic:
        reconstructions = _corrected_rerun(series, adf, reconstructions,
                                           dict(common, adf_offset=settings.adf_offset),
                                           absorption, summary, stage)
    record = reconstructions[0].metadata.Reconstruction
    if record.has_item("AutomaticChoice"):
        choice = record.AutomaticChoice.as_dictionary()
        summary["automatic_choice"] = choice
        stage(f"Chose {choice['chosen']}: {choice['reason']}")
    if record.algorithm == "HEBT":
        summary.update(alpha_used=float(record.alpha), adf_offset=float(record.adf_offset),
                       response_ratios=record.response_ratios.as_dictionary(),
                       response_ratio_r_squared=record.get_item("response_ratio_r_squared"),
                       hebt_model=record.Diagnostics.as_dictionary())
        stage(f"HEBT alpha {record.alpha:g}; response ratios {summary['response_ratios']}, "
              f"R^2 {summary['response_ratio_r_squared']:.3f}; model check: "
              f"{record.Diagnostics.verdict}")
    return _computed(reconstructions, settings, summary, stage)


def _computed(reconstructions: list, settings: _Settings, summary: dict, stage) -> list:
    """What every method's record shares into the summary; the reconstructions computed."""
    record = reconstructions[0].metadata.Reconstruction
    summary.update(algorithm=record.algorithm, iterations_used=int(record.iterations))
    if record.has_item("Uncertainty"):
        summary["uncertainty"] = record.Uncertainty.as_dictionary()
        stage(f"Per-voxel uncertainty: {record.Uncertainty.replicates} bootstrap replicates "
              f"(seed {record.Uncertainty.seed})")
    summary.update(padding_px=record.padding_px, padding_reason=record.padding_reason,
                   invalid_pixel_fraction=record.invalid_pixel_fraction,
                   backend=record.backend, support=record.support,
                   thickness_nm=record.get_item("thickness_nm"))
    stage(f"Grid padding {record.padding_px} px ({record.padding_reason}); "
          f"{100 * record.invalid_pixel_fraction:.1f} % of pixels without data")
    if record.has_item("Absorption"):
        applied = record.Absorption.as_dictionary()
        summary["absorption"] = applied
        stage(f"Absorption corrected in {applied['outer_iterations']} passes "
              f"(detectors: {applied['detectors']['source']}); share of X-rays that got "
              "out: " + ", ".join(f"{line} {share:.3f}" for line, share in
                                  applied["mean_transmitted_share"].items()))
    with _progress_bar(settings.show_progressbar):
        reconstructions = compute_together(reconstructions)
    stage("Reconstructed")
    return reconstructions


def _with_absorption(run, common: dict, settings: _Settings, summary: dict, stage) -> list:
    """``run(**common)``, absorption corrected when asked.

    A weight "auto" is chosen on the uncorrected maps first (cross-validation of the
    corrected loop would cost a correction per candidate), then rerun corrected with it.
    """
    absorption = settings.absorption
    if not absorption.correction:
        return run(**common)
    corrected = dict(common, absorption_correction=absorption.mode,
                     density=absorption.density, detectors=absorption.detectors)
    if common["tv_weight"] == "auto":
        chosen = run(**common)[0].metadata.Reconstruction.tv_weight
        summary["absorption_choice"] = (
            f"the weight ({chosen:g}) was chosen on the uncorrected maps, then the "
            "reconstruction rerun with the absorption correction")
        stage(f"Correcting absorption with the weight chosen uncorrected, {chosen:g}")
        corrected["tv_weight"] = float(chosen)
    return run(**corrected)


def _fused(series, adf, common: dict, settings: _Settings, summary: dict, stage) -> list:
    """The fused model's reconstructions, computed, with its settings and model check."""
    common = dict(common, tv_weight=settings.tv_weight, gamma=settings.gamma,
                  adf_offset=settings.adf_offset,
                  iterations=(FUSED_ITERATIONS if isinstance(settings.iterations, str)
                              else settings.iterations))
    if settings.uncertainty:
        common["uncertainty"] = settings.uncertainty
    stage(f"Reconstructing {', '.join(common['xray_lines'])} with the fused model" + (
        " (choosing the weight by cross-validation)" if settings.tv_weight == "auto" else ""))
    reconstructions = _with_absorption(lambda **kw: series.reconstruct_fused(adf, **kw),
                                       common, settings, summary, stage)
    record = reconstructions[0].metadata.Reconstruction
    diagnostics = record.Diagnostics.as_dictionary()
    summary.update(tv_weight_used=float(record.tv_weight), gamma_used=float(record.gamma),
                   adf_offset=float(record.adf_offset),
                   adf_coefficients=record.adf_coefficients.as_dictionary(),
                   fused_model=diagnostics)
    stage(f"Fused model: weight {record.tv_weight:g}, gamma {record.gamma:g}, ADF fit R^2 "
          f"{diagnostics['r_squared']:.3f}; model check: {diagnostics['verdict']}")
    return _computed(reconstructions, settings, summary, stage)


def _poisson_tv(series, common: dict, settings: _Settings, summary: dict, stage) -> list:
    """Poisson + TV of the EDS alone (joint over two or more lines), computed."""
    joint = len(common["xray_lines"]) > 1
    common = dict(common, tv_weight=settings.tv_weight, joint_tv=joint,
                  iterations=(FUSED_ITERATIONS if isinstance(settings.iterations, str)
                              else settings.iterations))
    if settings.uncertainty:
        common["uncertainty"] = settings.uncertainty
    stage(f"Reconstructing {', '.join(common['xray_lines'])} by Poisson + "
          f"{'joint ' if joint else ''}TV" + (
              " (choosing the weight by cross-validation)" if settings.tv_weight == "auto"
              else ""))
    reconstructions = _with_absorption(series.reconstruct_poisson_tv, common, settings,
                                       summary, stage)
    record = reconstructions[0].metadata.Reconstruction
    summary["tv_weight_used"] = ({rec.metadata.Sample.xray_lines[0]:
                                  float(rec.metadata.Reconstruction.tv_weight)
                                  for rec in reconstructions} if not joint
                                 else float(record.tv_weight))
    stage(f"Poisson + TV: weight {summary['tv_weight_used']}")
    return _computed(reconstructions, settings, summary, stage)


def _corrected_rerun(series, adf, automatic, common: dict, absorption, summary: dict,
                     stage) -> list:
    """The automatic choice's method and numbers again, absorption corrected.

    The choice itself was made on the uncorrected maps (cross-validation of the
    corrected loop would cost a correction per candidate); the summary says so.
    """
    chosen = automatic[0].metadata.Reconstruction
    settings = dict(common, iterations=int(chosen.iterations),
                    absorption_correction=absorption.mode,
                    density=absorption.density, detectors=absorption.detectors)
    adf_offset = settings.pop("adf_offset")  # HEBT's only
    summary["absorption_choice"] = (
        "the automatic choice was made on the uncorrected maps; its method and numbers "
        "were then rerun with the absorption correction")
    stage(f"Correcting absorption: {chosen.algorithm} with {int(chosen.iterations)} "
          "iterations" + (f", alpha {float(chosen.alpha):g}"
                          if chosen.algorithm == "HEBT" else "") + ", as chosen")
    corrected = (series.reconstruct_hebt(adf, alpha=float(chosen.alpha), adf_offset=adf_offset,
                                         **settings)
                 if chosen.algorithm == "HEBT" else series.reconstruct_sirt(**settings))
    if chosen.has_item("AutomaticChoice"):
        for signal in corrected:
            signal.metadata.set_item("Reconstruction.AutomaticChoice",
                                     chosen.AutomaticChoice.as_dictionary())
    return corrected


def _check_before_the_run(series, bin_factor, regions) -> None:
    """Check arguments that could only fail late (binning, region rules).

    They are checked on the loaded series before anything is computed.
    """
    scan = [axis.size for axis in series.axes_manager.navigation_axes
            if axis.name != "tilt"]
    if any(size % bin_factor for size in scan):
        divisors = [d for d in range(2, min(scan) + 1) if all(s % d == 0 for s in scan)]
        shape = " x ".join(map(str, scan))
        raise ValueError(f"bin_factor {bin_factor} does not divide the scan ({shape} pixels); "
                         f"bin by one of {divisors[:8]}." if divisors else
                         f"bin_factor {bin_factor} does not divide the scan ({shape} pixels), "
                         "whose sizes share no divisor: crop it first.")
    elements = list(series.metadata.Sample.elements)
    named = regions.values() if isinstance(regions, dict) else (regions or ())
    for rule in named:
        if isinstance(rule, str):
            _parse_rule(rule, elements)


def _in_memory(maps, total):
    """Lazy line maps and the (lazy) sum spectrum ``total`` computed in one dask pass.

    The maps come back as lazy signals over in-memory arrays (results stay lazy, the spectra are not
    read again).
    """
    lazy = [i for i, m in enumerate(maps) if m._lazy]
    variances = [maps[i].metadata.get_item("Signal.Noise_properties.variance") for i in lazy]
    with_variance = [k for k, v in enumerate(variances) if v is not None and v._lazy]
    computed = dask.compute(total, *[maps[i].data for i in lazy],
                            *[variances[k].data for k in with_variance])
    maps = list(maps)
    for k, (i, data) in enumerate(zip(lazy, computed[1:1 + len(lazy)])):
        maps[i] = maps[i]._deepcopy_with_new_data(da.from_array(data, chunks=data.shape))
        if k in with_variance:
            values = computed[1 + len(lazy) + with_variance.index(k)]
            maps[i].metadata.set_item(
                "Signal.Noise_properties.variance",
                variances[k]._deepcopy_with_new_data(da.from_array(values, chunks=values.shape)))
    return maps, np.asarray(computed[0])


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class _progress_bar:
    """dask's progress bar: on request, or (``None``) on a terminal only.

    Nothing in a log file by default (one line per update there, hundreds of lines).
    """

    def __init__(self, show: bool | None = None):
        self.show = sys.stdout.isatty() if show is None else bool(show)

    def __enter__(self):
        self.bar = None
        if self.show:
            from dask.diagnostics import ProgressBar

            self.bar = ProgressBar()
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _figures(fractions, table, out) -> list:
    import matplotlib.pyplot as plt

    written = []
    for name, make in (("orthoslices.png", lambda: orthoslices(fractions, vmin=0, vmax=1)),
                       ("render_3d.png",
                        lambda: render_3d(fractions, levels=[0.5] * len(fractions))),
                       ("composition.png", lambda: composition_figure(table))):
        figure = make()
        figure.savefig(out / name, dpi=80)
        plt.close(figure)
        written.append(out / name)
    return written
