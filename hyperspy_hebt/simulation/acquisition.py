"""Synthetic acquisitions as a microscope writes them: EDS spectrum images and ADF images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..tomography.geometry import TiltAngles
from .forward import alloy_density, project_volume, thin_film_adf_counts, thin_film_line_counts
from .phantoms import Phantom, core_shell_particle

if TYPE_CHECKING:
    from hyperspy.signal import BaseSignal

__all__ = ["SimulatedAcquisition", "simulate_acquisition", "synthetic_adf_series",
           "synthetic_tilt_series", "write_acquisition_files"]

ELEMENTARY_CHARGE_C = 1.602176634e-19
PAPER_TILTS_DEG = np.linspace(-75.0, 75.0, 31)


def synthetic_adf_series(sinograms: np.ndarray, tilt_angles_deg: TiltAngles,
                         pixel_size_nm: float = 1.5, noise: bool = True, seed: int | None = 1,
                         lazy: bool = False):
    """An ADF tilt series as a microscope writes it: ``Signal2D`` stack, navigation tilt.

    Parameters
    ----------
    sinograms : numpy.ndarray
        Expected counts ``(n_slices, n_tilts, n_x)`` (or ``(n_tilts, n_x)`` for a
        single slice, giving a ``Signal1D`` line per tilt).
    tilt_angles_deg : sequence of float
        Tilt angles in degrees.
    pixel_size_nm : float
        Scan step in nm.
    noise : bool
        Poisson counts (``seed``), else the expected values.
    seed : int, optional
        Seed of the Poisson noise.
    lazy : bool
        Return a lazy signal.

    Returns
    -------
    Signal2D (navigation: tilt; signal: x, y) or Signal1D for one slice
        float32 data of shape ``(n_tilts, n_slices, n_x)``, a ``tilt`` axis in
        degrees and calibrated x, y axes.

    Raises
    ------
    ValueError
        Negative expected counts.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import synthetic_adf_series
    >>> synthetic_adf_series(np.ones((2, 5, 8)), np.linspace(-40, 40, 5))
    <Signal2D, title: Synthetic ADF tilt series, dimensions: (5|8, 2)>
    """
    import hyperspy.api as hs

    from ..tilt_series import apply_tilt_angles

    expected = np.asarray(sinograms, dtype=np.float64)
    if expected.ndim == 3:
        expected = np.moveaxis(expected, 1, 0)  # (tilt, y, x)
    if np.any(expected < 0):
        raise ValueError("ADF sinograms are expected counts and must be >= 0.")
    data = (np.random.default_rng(seed).poisson(expected) if noise else expected
            ).astype(np.float32)
    signal = (hs.signals.Signal2D(data) if data.ndim == 3 else hs.signals.Signal1D(data))
    for axis, name in zip(signal.axes_manager.signal_axes, ("x", "y")):
        axis.name, axis.units, axis.scale = name, "nm", pixel_size_nm
        axis.offset = -(axis.size - 1) / 2 * pixel_size_nm
    signal.axes_manager.navigation_axes[0].name = "tilt"
    apply_tilt_angles(signal, tilt_angles_deg)
    signal.metadata.General.title = "Synthetic ADF tilt series"
    signal.metadata.Signal.quantity = "ADF counts"
    return signal.as_lazy() if lazy else signal


def _spectra_block(maps, profiles, background, noise, seed, dtype, block_id=None):
    """Spectra of one block of pixels: (tilts, ..., lines) -> (tilts, ..., energy)."""
    expected = maps @ profiles + background
    if not noise:
        return expected.astype(np.float32)
    # One generator per block, seeded by the block's position: eager and lazy
    # builds give the same counts, whatever order the blocks run in.
    rng = np.random.default_rng([seed, *block_id])
    counts = rng.poisson(expected)
    if counts.max(initial=0) > np.iinfo(dtype).max:
        raise ValueError(
            f"a channel holds {counts.max()} counts, more than {np.dtype(dtype).name} can; "
            "use a wider counts_dtype."
        )
    return counts.astype(dtype)


def synthetic_tilt_series(
    line_sinograms: Mapping[str, np.ndarray],
    tilt_angles_deg: TiltAngles,
    pixel_size_nm: float = 1.5,
    energy_axis_kev: tuple[float, float, int] = (0.0, 0.02, 1024),
    energy_resolution_mnka_ev: float = 130.0,
    background_counts: float = 0.05,
    beam_energy_kev: float = 200.0,
    live_time_s: float = 0.5,
    beam_current_na: float = 0.1,
    noise: bool = True,
    seed: int = 0,
    lazy: bool = False,
    counts_dtype=np.uint32,
):
    """Build an EDS spectrum-image tilt series from per-line sinograms.

    Parameters
    ----------
    line_sinograms : dict of str -> numpy.ndarray
        For each X-ray line (e.g. ``"Ag_La"``), its expected counts per pixel,
        shape ``(n_slices, n_tilts, n_x)`` or ``(n_tilts, n_x)`` (a single
        slice, giving navigation ``(x, tilt)``). The other lines of the family
        (e.g. Ag Lb1 for Ag La) are added with exspy's relative weights.
    tilt_angles_deg : sequence of float
        Tilt angles in degrees.
    pixel_size_nm : float
        Scan step in nm (both x and y).
    energy_axis_kev : (offset, scale, size)
        Energy axis in keV.
    energy_resolution_mnka_ev : float
        Detector FWHM at Mn Ka in eV; peak widths follow exspy's scaling.
    background_counts : float
        Expected background counts per channel per pixel (flat, plus a gentle
        slope falling to half at the end of the axis).
    beam_energy_kev, live_time_s, beam_current_na : float
        Written to the metadata (keV, s per pixel, nA).
    noise : bool
        Draw Poisson counts (``seed`` sets the generator); otherwise the
        expected counts as float32.
    seed : int
        Seed of the Poisson noise (one stream per tilt, so eager and lazy
        series hold the same counts).
    lazy : bool
        Return a lazy signal whose spectra are generated block by block (one
        tilt, a run of rows of at most ~64 MB of float64) when computed: a large
        series never sits in memory whole.
    counts_dtype : numpy dtype
        Integer type of the Poisson counts (``uint8`` as detectors often
        write); a count that does not fit raises an error rather than wrapping.

    Returns
    -------
    TomographicEDSSpectrum or LazyTomographicEDSSpectrum
        Navigation ``(x, y, tilt)`` (or ``(x, tilt)``), energy in keV, counts
        as uint32 (noise) or float32, elements and lines in metadata.

    Raises
    ------
    ValueError
        No line, lines of different shapes, or negative expected counts.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import synthetic_tilt_series
    >>> counts = np.ones((2, 5, 8))  # Fe Ka counts per pixel: 2 slices, 5 tilts, 8 pixels
    >>> synthetic_tilt_series({"Fe_Ka": counts}, np.linspace(-40, 40, 5))
    <TomographicEDSSpectrum, title: Synthetic EDS tilt series, dimensions: (8, 2, 5|1024)>
    """
    import dask.array as da
    import hyperspy.api as hs

    from ..physics.line_shapes import family_profile
    from ..tilt_series import SIGNAL_TYPE, apply_tilt_angles

    if not line_sinograms:
        raise ValueError("line_sinograms is empty: give at least one X-ray line.")
    offset, scale, size = energy_axis_kev
    energy = offset + scale * np.arange(int(size))
    lines = list(line_sinograms)
    maps = [np.asarray(line_sinograms[line], dtype=np.float64) for line in lines]
    shape = maps[0].shape
    if any(m.shape != shape for m in maps) or len(shape) not in (2, 3):
        raise ValueError(
            "every line sinogram must have the same shape (n_slices, n_tilts, n_x) or "
            f"(n_tilts, n_x); got {[m.shape for m in maps]}."
        )
    if any(np.any(m < 0) for m in maps):
        raise ValueError("line sinograms are expected counts and must be >= 0.")
    profiles = np.stack([family_profile(line, energy, scale, energy_resolution_mnka_ev)
                         for line in lines])
    background = background_counts * (1 - 0.5 * (energy - offset) / (energy[-1] - offset))
    stacked = np.stack(maps, axis=-1)  # (slices, tilts, x, lines) or (tilts, x, lines)
    if len(shape) == 3:
        stacked = np.moveaxis(stacked, 1, 0)  # array order (tilt, y, x, lines)
    chunks = (1,) + stacked.shape[1:]
    if stacked.ndim == 4:
        pixel_bytes = 8 * stacked.shape[2] * energy.size
        chunks = (1, max(1, min(stacked.shape[1], int(64e6 // pixel_bytes)))) + chunks[2:]
    maps_dask = da.from_array(stacked, chunks=chunks)
    spectra = maps_dask.map_blocks(
        _spectra_block, profiles, background, noise, seed, np.dtype(counts_dtype),
        chunks=maps_dask.chunks[:-1] + ((energy.size,),),
        dtype=np.dtype(counts_dtype) if noise else np.float32,
    )
    signal = (hs.signals.LazySignal1D(spectra) if lazy
              else hs.signals.Signal1D(spectra.compute()))
    nav = signal.axes_manager.navigation_axes
    names = ["x", "y", "tilt"] if len(shape) == 3 else ["x", "tilt"]
    for axis, name in zip(nav, names):
        axis.name = name
        if name != "tilt":
            axis.units = "nm"
            axis.scale = pixel_size_nm
            axis.offset = -(axis.size - 1) / 2 * pixel_size_nm
    e_axis = signal.axes_manager.signal_axes[0]
    e_axis.name, e_axis.units, e_axis.offset, e_axis.scale = "Energy", "keV", offset, scale
    signal.set_signal_type(SIGNAL_TYPE)
    apply_tilt_angles(signal, tilt_angles_deg)
    signal.metadata.General.title = "Synthetic EDS tilt series"
    tem = "Acquisition_instrument.TEM"
    # Set directly: exspy's set_microscope_parameters writes "beam_energy " (trailing space).
    signal.metadata.set_item(f"{tem}.beam_energy", float(beam_energy_kev))
    signal.metadata.set_item(f"{tem}.beam_current", float(beam_current_na))
    signal.metadata.set_item(f"{tem}.Detector.EDS.energy_resolution_MnKa",
                             float(energy_resolution_mnka_ev))
    signal.metadata.set_item(f"{tem}.Detector.EDS.live_time", float(live_time_s))
    signal.add_lines(lines)
    return signal


@dataclass
class SimulatedAcquisition:
    """Everything a simulated experiment produces, and the truth behind it.

    Attributes
    ----------
    series : TomographicEDSSpectrum
        EDS spectrum images (Poisson counts) with calibrated axes and metadata.
    adf : Signal2D or Signal1D
        ADF tilt series (navigation tilt), Poisson counts.
    xray_lines : list of str
    line_intensities : list of numpy.ndarray
        Poisson line counts per pixel, navigation-shaped (``(tilt, y, x)``), one
        per line: the paper's noisy EDS sinograms, for studies that skip the
        spectra (pass them as ``intensities=``). Drawn independently of the
        spectra.
    truth : dict of str -> Signal2D
        Weight fraction per element, laid out like a reconstruction (navigation
        ``y``, signal ``x``, ``z``).
    density : numpy.ndarray
        g/cm^3 per voxel.
    phantom : Phantom
    expected : dict
        Noiseless sinograms ``(slices, tilts, x)`` per line and for ``"ADF"``.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> acquisition.xray_lines, sorted(acquisition.truth)
    (['Ag_La', 'Au_Ma'], ['Ag', 'Au'])
    >>> acquisition.line_intensities[0].shape  # the counts each line put in (tilt, y, x)
    (31, 2, 24)
    """

    series: BaseSignal
    adf: BaseSignal
    xray_lines: list
    line_intensities: list
    truth: dict
    density: np.ndarray
    phantom: Phantom
    expected: dict = field(repr=False)


def _truth_signal(volume, pixel_size_nm, title):
    import hyperspy.api as hs

    data = np.asarray(volume, dtype=np.float32)
    n_z, n_x = data.shape[-2:]
    axes = [
        {"name": "z", "units": "nm", "size": n_z, "scale": pixel_size_nm,
         "offset": -(n_z - 1) / 2 * pixel_size_nm, "navigate": False},
        {"name": "x", "units": "nm", "size": n_x, "scale": pixel_size_nm,
         "offset": -(n_x - 1) / 2 * pixel_size_nm, "navigate": False},
    ]
    if data.ndim == 3:
        axes.insert(0, {"name": "y", "units": "nm", "size": data.shape[0],
                        "scale": pixel_size_nm,
                        "offset": -(data.shape[0] - 1) / 2 * pixel_size_nm, "navigate": True})
    signal = hs.signals.Signal2D(data, axes=axes)
    signal.metadata.General.title = title
    return signal


def _acquisition_faults(expected, xray_lines, n_tilts, drift_px, adf_offset_px,
                        eds_tilt_factors, rotation_deg=0.0):
    """Expected sinograms (slices, tilts, x) with drift, ADF offset and shadowing."""
    import scipy.ndimage as ndi

    drift = np.zeros((n_tilts, 2)) if drift_px is None else np.asarray(drift_px, float)
    if drift.shape != (n_tilts, 2):
        raise ValueError(f"drift_px must have shape ({n_tilts}, 2), got {drift.shape}.")
    offset = np.asarray(adf_offset_px, dtype=float)
    factors = np.ones(n_tilts) if eds_tilt_factors is None else np.asarray(eds_tilt_factors,
                                                                             float)
    if factors.shape != (n_tilts,) or np.any(factors <= 0):
        raise ValueError(f"eds_tilt_factors must be {n_tilts} positive numbers.")
    if drift_px is None and not offset.any() and eds_tilt_factors is None and not rotation_deg:
        return expected

    def move(sinogram, shifts):
        single = sinogram.ndim == 2
        stack = sinogram[None] if single else sinogram  # (slices, tilts, x)
        out = np.empty_like(stack)
        for t, (dy, dx) in enumerate(shifts):
            image = stack[:, t]
            if single:
                out[:, t] = ndi.shift(image, (0, dx), order=1, mode="constant")
                continue
            if rotation_deg:
                image = ndi.rotate(image, rotation_deg, reshape=False, order=1)
            out[:, t] = ndi.shift(image, (dy, dx), order=1, mode="constant")
        return out[0] if single else out

    measured = {line: move(expected[line], drift) * _tilt_axis(factors, expected[line].ndim)
                for line in xray_lines}
    measured["ADF"] = move(expected["ADF"], drift + offset)
    return measured


def _tilt_axis(values, ndim):
    return values.reshape((-1, 1)) if ndim == 2 else values.reshape((1, -1, 1))


def simulate_acquisition(
    phantom: Phantom,
    xray_lines: Sequence[str],
    tilt_angles_deg: TiltAngles = PAPER_TILTS_DEG,
    beam_energy_kev: float = 100.0,
    eds_dose_electrons: float = 3.121e8,
    adf_dose_electrons: float = 1e5,
    solid_angle_sr: float = 0.7,
    detector_efficiency=1.0,
    adf_collection_efficiency: float = 1.0,
    beam_current_na: float = 0.1,
    energy_axis_kev: tuple[float, float, int] = (0.0, 0.02, 1024),
    seed: int = 0,
    lazy: bool = False,
    drift_px=None,
    adf_offset_px=(0.0, 0.0),
    eds_tilt_factors=None,
    tilt_axis_rotation_deg: float = 0.0,
) -> SimulatedAcquisition:
    """Simulate an EDS + ADF tilt series of a phantom with the thin-film model.

    Parameters
    ----------
    phantom : Phantom
        Weight fraction maps of any elements (see :func:`paper_phantom`).
    xray_lines : sequence of str
        One line per element to record, e.g. ``["Ag_La", "Au_Ma"]``.
    tilt_angles_deg : sequence of float
        Tilt angles in degrees (default: the paper's 31 tilts, -75 to 75).
    beam_energy_kev : float
        Beam energy in keV (paper: 100).
    eds_dose_electrons, adf_dose_electrons : float
        Electrons per beam position (paper: 3.121e8 = 0.5 s x 100 pA, and 1e5).
    solid_angle_sr : float
        EDS detector solid angle in sr.
    detector_efficiency : float, dict or callable
        EDS detector efficiency (see :func:`hyperspy_hebt.physics.eds_factor`).
    adf_collection_efficiency : float
        Share of elastically scattered electrons the ADF detector counts.
    beam_current_na : float
        Sets the live time in the metadata (dose x e / current).
    energy_axis_kev : (offset, scale, size)
        Energy axis of the spectra.
    seed : int
        Seeds every Poisson draw.
    lazy : bool
        Lazy spectra and ADF (generated tilt by tilt when computed).
    drift_px : array-like, optional
        ``(n_tilts, 2)`` specimen drift ``(dy, dx)`` in pixels at each tilt, moving
        the EDS and ADF images alike (linear interpolation of the expected counts).
    adf_offset_px : (float, float)
        Extra ``(dy, dx)`` of the ADF images against the EDS maps (scan timing).
    eds_tilt_factors : array-like, optional
        Per-tilt factor on every EDS count (detector shadowing by the holder).
    tilt_axis_rotation_deg : float
        In-plane angle of the tilt axis from the image ``y`` axis: every image is
        rotated by it (``scipy.ndimage.rotate`` convention) before drift.

    Returns
    -------
    SimulatedAcquisition
        ``expected`` holds the clean sinograms (no drift, offset or shadowing).

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> series
    <TomographicEDSSpectrum, title: Synthetic EDS tilt series, dimensions: (24, 2, 31|256)>
    >>> adf
    <Signal2D, title: Synthetic ADF tilt series, dimensions: (31|24, 2)>
    """
    fractions = phantom.weight_fractions
    counts = thin_film_line_counts(fractions, xray_lines, beam_energy_kev,
                                   dose_electrons=eds_dose_electrons,
                                   solid_angle_sr=solid_angle_sr,
                                   pixel_size_nm=phantom.pixel_size_nm,
                                   detector_efficiency=detector_efficiency)
    expected = {line: project_volume(counts[line], tilt_angles_deg) for line in xray_lines}
    expected["ADF"] = project_volume(
        thin_film_adf_counts(fractions, beam_energy_kev, dose_electrons=adf_dose_electrons,
                             pixel_size_nm=phantom.pixel_size_nm,
                             collection_efficiency=adf_collection_efficiency),
        tilt_angles_deg)
    measured = _acquisition_faults(expected, xray_lines, len(tilt_angles_deg), drift_px,
                                   adf_offset_px, eds_tilt_factors, tilt_axis_rotation_deg)
    live_time = eds_dose_electrons * ELEMENTARY_CHARGE_C / (beam_current_na * 1e-9)
    series = synthetic_tilt_series(
        {line: measured[line] for line in xray_lines}, tilt_angles_deg,
        pixel_size_nm=phantom.pixel_size_nm, energy_axis_kev=energy_axis_kev,
        beam_energy_kev=beam_energy_kev, live_time_s=live_time,
        beam_current_na=beam_current_na, seed=seed, lazy=lazy)
    adf = synthetic_adf_series(measured["ADF"], tilt_angles_deg,
                               pixel_size_nm=phantom.pixel_size_nm, seed=seed + 1, lazy=lazy)
    rng = np.random.default_rng(seed + 2)
    line_intensities = []
    for line in xray_lines:
        draw = rng.poisson(measured[line]).astype(np.float32)
        line_intensities.append(np.moveaxis(draw, 1, 0) if draw.ndim == 3 else draw)
    truth = {element: _truth_signal(fraction, phantom.pixel_size_nm,
                                    f"True {element} weight fraction")
             for element, fraction in fractions.items()}
    return SimulatedAcquisition(series, adf, list(xray_lines), line_intensities, truth,
                                alloy_density(fractions), phantom, expected)


def demo_acquisition(n_x: int = 24, n_slices: int = 2, lazy: bool = False,
                     seed: int = 0) -> SimulatedAcquisition:
    """A small simulated Ag-Au acquisition, for examples and first trials.

    A core-shell particle (:func:`core_shell_particle`, 3 nm pixels) recorded at the
    paper's 31 tilts, 100 keV and dose: 256-channel EDS spectrum images of Ag La and
    Au Ma with their families, and ADF images, Poisson noise. Seconds to make.

    Parameters
    ----------
    n_x : int
        Pixels across the scan (and the particle's box).
    n_slices : int
        Slices along the rotation axis ``y``.
    lazy : bool
        Return lazy signals, generated block by block.
    seed : int
        Seed of the noise.

    Returns
    -------
    SimulatedAcquisition
        ``series`` (a :class:`~hyperspy_hebt.TomographicEDSSpectrum`), ``adf`` and the
        truth, as :func:`simulate_acquisition` returns them.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()
    >>> acquisition.series
    <TomographicEDSSpectrum, title: Synthetic EDS tilt series, dimensions: (24, 2, 31|256)>
    """
    particle = core_shell_particle(n_x, n_slices, pixel_size_nm=3.0)
    return simulate_acquisition(particle, ["Ag_La", "Au_Ma"], energy_axis_kev=(0.0, 0.02, 256),
                                seed=seed, lazy=lazy)


def write_acquisition_files(acquisition: SimulatedAcquisition, folder, extension: str = "hspy",
                            wrong_tilt_alpha: float | None = 0.0):
    """Write a simulated acquisition as a microscope does: one file per tilt.

    Each tilt gives ``tilt_<angle>.<extension>`` (an ``EDS_TEM`` spectrum image)
    and ``adf_tilt_<angle>.<extension>`` (the ADF image), e.g. ``tilt_-35.hspy``.

    Parameters
    ----------
    acquisition : SimulatedAcquisition
    folder : str or Path
        Created if needed.
    extension : {"hspy", "zspy"}
    wrong_tilt_alpha : float or None
        Value written to every file's ``Stage.tilt_alpha`` (real files often
        carry one wrong value); None writes the true angle.

    Returns
    -------
    (list of Path, list of Path)
        Spectrum-image files and ADF files, in acquisition (sorted) order.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> import tempfile
    >>> from hyperspy_hebt.simulation import write_acquisition_files
    >>> paths, adf_paths = write_acquisition_files(acquisition, tempfile.mkdtemp())
    >>> paths[0].name, adf_paths[0].name, len(paths)
    ('tilt_-75.hspy', 'adf_tilt_-75.hspy', 31)
    """
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series, adf = acquisition.series, acquisition.adf
    paths, adf_paths = [], []
    for i, angle in enumerate(series.tilt_angles):
        spectrum = series.inav[..., i].deepcopy()
        spectrum.set_signal_type("EDS_TEM")
        spectrum.metadata.General.title = f"EDS tilt {angle:+g}"
        spectrum.metadata.set_item("Acquisition_instrument.TEM.Stage.tilt_alpha",
                                   float(angle if wrong_tilt_alpha is None else wrong_tilt_alpha))
        image = adf.inav[i].deepcopy()
        image.metadata.General.title = "HAADF"
        spectrum_path, adf_path = _write_tilt_files(folder, f"tilt_{angle:+g}.{extension}",
                                                   spectrum, image)
        paths.append(spectrum_path)
        adf_paths.append(adf_path)
    return paths, adf_paths


def _write_tilt_files(folder, name: str, spectrum, image):
    """Save one tilt as a microscope writes it, with a checksum file beside each file.

    ``name`` (the spectrum image) and ``adf_<name>`` (its ADF image) in ``folder``, each
    with its ``.sha256`` (:mod:`hyperspy_hebt.checksums`: a damaged copy is refused when
    loaded); returns both paths.
    """
    from ..checksums import write_checksum

    spectrum.save(folder / name, overwrite=True)
    image.save(folder / f"adf_{name}", overwrite=True)
    for path in (folder / name, folder / f"adf_{name}"):
        write_checksum(path)
    return folder / name, folder / f"adf_{name}"
