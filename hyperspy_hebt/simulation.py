"""Synthetic tilt series: phantoms and EDS spectrum images built from them.

What is here: a core-shell particle phantom (2D slice or 3D sphere), a
parallel-beam forward projection that is independent of the reconstruction's
projector (a 2x finer grid, binned back, so tests do not commit the "inverse
crime"), and :func:`synthetic_tilt_series`, which turns per-line projected
intensities into real EDS spectra (Gaussian peaks at exspy's line energies and
relative weights, detector resolution, a smooth background, Poisson noise) in
a :class:`~hyperspy_hebt.TomographicEDSSpectrum` with calibrated axes.

:func:`thin_film_line_counts` gives each line's expected counts per voxel from
weight fractions and density with the thin-film model of the paper (Eq. 4-9):
``n f_A C_A rho t``, with ``n = N_A D_e Omega / 4 pi``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .tomography import ParallelBeamGeometry, get_projector

__all__ = [
    "alloy_density",
    "core_shell_phantom",
    "project_volume",
    "synthetic_adf_series",
    "synthetic_tilt_series",
    "thin_film_adf_counts",
    "thin_film_line_counts",
]

AVOGADRO = 6.02214076e23
BARN_CM2 = 1e-24


def core_shell_phantom(
    n_x: int = 64,
    n_slices: int | None = None,
    core_radius: float = 0.25,
    shell_radius: float = 0.42,
    core_offset: tuple[float, float] = (0.06, -0.04),
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of an off-centre core inside a round shell.

    Parameters
    ----------
    n_x : int
        Pixels along x and z.
    n_slices : int, optional
        Number of slices along the rotation axis ``y``. None gives one 2D
        ``(z, x)`` slice (a disc); a number gives a sphere ``(y, z, x)``.
    core_radius, shell_radius : float
        Radii as fractions of the field of view.
    core_offset : (float, float)
        Core centre offset (x, z) as fractions of the field of view.

    Returns
    -------
    core, shell : numpy.ndarray of bool
        Disjoint masks, shape ``(n_x, n_x)`` or ``(n_slices, n_x, n_x)``.
    """
    centre = (n_x - 1) / 2
    z, x = (np.mgrid[:n_x, :n_x] - centre) / n_x
    if n_slices is None:
        y = np.zeros((1, 1, 1))
    else:
        y = ((np.arange(n_slices) - (n_slices - 1) / 2) / n_x)[:, None, None]
    r_shell = np.sqrt(x**2 + z**2 + y**2)
    r_core = np.sqrt((x - core_offset[0]) ** 2 + (z - core_offset[1]) ** 2 + y**2)
    core = r_core <= core_radius
    shell = (r_shell <= shell_radius) & ~core
    if n_slices is None:
        return core[0], shell[0]
    return core, shell


def alloy_density(weight_fractions: Mapping[str, np.ndarray]) -> np.ndarray:
    """Density (g/cm^3) of a mixture by ideal mixing of the pure elements' volumes.

    ``1 / rho = sum_A C_A / rho_A``; 0 where all fractions are 0.

    Parameters
    ----------
    weight_fractions : dict of str -> array
        Weight fraction maps per element (same shape), summing to 1 inside the
        object and 0 outside.
    """
    from .physics import mass_density

    specific_volume = sum(np.asarray(c, float) / mass_density(e)
                          for e, c in weight_fractions.items())
    with np.errstate(divide="ignore"):
        return np.where(specific_volume > 0, 1.0 / specific_volume, 0.0)


def thin_film_line_counts(
    weight_fractions: Mapping[str, np.ndarray],
    xray_lines: Sequence[str],
    beam_energy_kev: float,
    dose_electrons: float = 3.121e8,
    solid_angle_sr: float = 0.7,
    pixel_size_nm: float = 1.5,
    detector_efficiency=1.0,
) -> dict:
    """Expected X-ray counts per voxel of path for each line (paper Eq. 4-9).

    ``counts = N_A D_e (Omega / 4 pi) f_A C_A rho t`` with ``t`` one pixel, so
    projecting the returned volumes (path lengths in pixels) gives the counts
    of each beam position.

    Parameters
    ----------
    weight_fractions : dict of str -> array
        Weight fraction of each element per voxel.
    xray_lines : sequence of str
        One line per element to simulate, e.g. ``["Ag_La", "Au_Ma"]``.
    beam_energy_kev : float
        Beam energy in keV (sets the cross sections).
    dose_electrons : float
        Electrons per beam position (paper: 0.5 s x 100 pA = 3.121e8).
    solid_angle_sr : float
        EDS detector solid angle in sr.
    pixel_size_nm : float
        Voxel edge in nm.
    detector_efficiency : float, dict or callable
        See :func:`hyperspy_hebt.physics.eds_factor`.

    Returns
    -------
    dict of str -> numpy.ndarray
        Expected counts per voxel for each line.
    """
    from .physics import eds_factor, split_xray_line

    density = alloy_density(weight_fractions)
    n = AVOGADRO * dose_electrons * solid_angle_sr / (4 * np.pi)
    thickness_cm = pixel_size_nm * 1e-7
    out = {}
    for line in xray_lines:
        element, _ = split_xray_line(line)
        if element not in weight_fractions:
            raise ValueError(f"{line}: no weight fraction map for {element}.")
        f_cm2 = eds_factor(line, beam_energy_kev, detector_efficiency) * BARN_CM2
        out[line] = n * f_cm2 * np.asarray(weight_fractions[element]) * density * thickness_cm
    return out


def thin_film_adf_counts(
    weight_fractions: Mapping[str, np.ndarray],
    beam_energy_kev: float,
    dose_electrons: float = 1e5,
    pixel_size_nm: float = 1.5,
) -> np.ndarray:
    """Expected HAADF counts per voxel of path (paper Eq. 13-14).

    ``counts = D_H N_A sum_A z_A C_A rho t`` with ``z_A = sigma_elastic / M`` and
    ``t`` one pixel: every elastically scattered electron is counted, the
    paper's linear model.

    Parameters
    ----------
    weight_fractions : dict of str -> array
        Weight fraction of each element per voxel.
    beam_energy_kev : float
        Beam energy in keV.
    dose_electrons : float
        Electrons per beam position (paper: 1e5).
    pixel_size_nm : float
        Voxel edge in nm.
    """
    from .physics import haadf_factor

    density = alloy_density(weight_fractions)
    z = sum(haadf_factor(e, beam_energy_kev) * BARN_CM2 * np.asarray(c, float)
            for e, c in weight_fractions.items())
    return dose_electrons * AVOGADRO * z * density * pixel_size_nm * 1e-7


def synthetic_adf_series(sinograms: np.ndarray, tilt_angles_deg: Sequence[float],
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
    """
    import hyperspy.api as hs

    from .tilt_series import apply_tilt_angles

    expected = np.asarray(sinograms, dtype=np.float64)
    if expected.ndim == 3:
        expected = np.moveaxis(expected, 1, 0)  # (tilt, y, x)
    if np.any(expected < 0):
        raise ValueError("ADF sinograms are expected counts and must be >= 0.")
    data = (np.random.default_rng(seed).poisson(expected) if noise else expected)
    data = data.astype(np.float32)
    signal = (hs.signals.Signal2D(data) if data.ndim == 3 else hs.signals.Signal1D(data))
    for axis, name in zip(signal.axes_manager.signal_axes, ("x", "y")):
        axis.name, axis.units, axis.scale = name, "nm", pixel_size_nm
        axis.offset = -(axis.size - 1) / 2 * pixel_size_nm
    signal.axes_manager.navigation_axes[0].name = "tilt"
    apply_tilt_angles(signal, tilt_angles_deg)
    signal.metadata.General.title = "Synthetic ADF tilt series"
    signal.metadata.Signal.quantity = "ADF counts"
    return signal.as_lazy() if lazy else signal


def project_volume(volume: np.ndarray, tilt_angles_deg: Sequence[float], oversampling: int = 2
                   ) -> np.ndarray:
    """Project slices with a projector independent of the reconstruction's.

    Each slice is upsampled ``oversampling`` times (pixel replication), projected
    on a detector ``oversampling`` times finer, and the detector is binned back,
    so the rays sample the object at other positions than the reconstruction's.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(n_slices, n_z, n_x)`` or ``(n_z, n_x)``, per-pixel values.
    tilt_angles_deg : sequence of float
        Tilt angles in degrees.
    oversampling : int
        Sub-sampling factor (>= 1). 1 uses the reconstruction's own projector.

    Returns
    -------
    numpy.ndarray
        float32 sinograms ``(n_slices, n_tilts, n_x)`` (or ``(n_tilts, n_x)``),
        line integrals in units of (value x pixel length).
    """
    volume = np.asarray(volume, dtype=np.float32)
    single = volume.ndim == 2
    stack = volume[None] if single else volume
    k = int(oversampling)
    if k < 1:
        raise ValueError(f"oversampling must be a positive integer, got {oversampling!r}.")
    n_z, n_x = stack.shape[1:]
    fine = stack.repeat(k, axis=1).repeat(k, axis=2)
    geometry = ParallelBeamGeometry(tuple(tilt_angles_deg), n_detector=n_x * k,
                                    n_x=n_x * k, n_z=n_z * k)
    sinograms = get_projector(geometry).forward(fine)
    # Fine pixels are 1/k wide: path lengths shrink by k; bins of k fine rays add up.
    sinograms = sinograms.reshape(stack.shape[0], len(tilt_angles_deg), n_x, k).sum(-1) / k**2
    return sinograms[0] if single else sinograms


def _line_family(xray_line: str):
    """Energies (keV) and relative weights of the lines of ``xray_line``'s family."""
    from exspy.material import elements

    element, line = xray_line.split("_")
    lines = elements[element].Atomic_properties.Xray_lines
    family = line[0]
    energies, weights = [], []
    for name in lines.keys():
        if name[0] == family:
            energies.append(lines[name].energy_keV)
            weights.append(lines[name].weight)
    weights = np.asarray(weights) / lines[line].weight
    return np.asarray(energies), weights


def synthetic_tilt_series(
    line_sinograms: Mapping[str, np.ndarray],
    tilt_angles_deg: Sequence[float],
    pixel_size_nm: float = 1.5,
    energy_axis_kev: tuple[float, float, int] = (0.0, 0.02, 1024),
    energy_resolution_mnka_ev: float = 130.0,
    background_counts: float = 0.05,
    beam_energy_kev: float = 200.0,
    noise: bool = True,
    seed: int | None = 0,
    lazy: bool = False,
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
    beam_energy_kev : float
        Written to the metadata.
    noise : bool
        Draw Poisson counts (``seed`` sets the generator); otherwise the
        expected counts as float32.
    seed : int, optional
        Seed of the Poisson noise.
    lazy : bool
        Return a lazy signal (dask-backed).

    Returns
    -------
    TomographicEDSSpectrum
        Navigation ``(x, y, tilt)`` (or ``(x, tilt)``), energy in keV, counts
        as uint32 (noise) or float32, elements and lines in metadata.
    """
    import hyperspy.api as hs
    from exspy._misc.eds.utils import get_FWHM_at_Energy

    from .tilt_series import SIGNAL_TYPE, apply_tilt_angles

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
    if np.any([np.any(m < 0) for m in maps]):
        raise ValueError("line sinograms are expected counts and must be >= 0.")
    profiles = np.zeros((len(lines), energy.size))
    for i, line in enumerate(lines):
        energies, weights = _line_family(line)
        for e_kev, w in zip(energies, weights):
            sigma = get_FWHM_at_Energy(energy_resolution_mnka_ev, e_kev) / 2.3548
            profiles[i] += w * scale * np.exp(-0.5 * ((energy - e_kev) / sigma) ** 2) / (
                sigma * np.sqrt(2 * np.pi)
            )
    background = background_counts * (1 - 0.5 * (energy - offset) / (energy[-1] - offset))
    # (slices, tilts, x, lines) @ (lines, E) -> (tilts, slices, x, E): array order (tilt, y, x, E)
    stacked = np.stack(maps, axis=-1)
    expected = stacked @ profiles + background
    expected = np.moveaxis(expected, -3, 0) if len(shape) == 3 else expected
    if noise:
        rng = np.random.default_rng(seed)
        data = rng.poisson(expected).astype(np.uint32)
    else:
        data = expected.astype(np.float32)
    signal = hs.signals.Signal1D(data)
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
    # Set directly: exspy's set_microscope_parameters writes "beam_energy " (trailing space).
    signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", float(beam_energy_kev))
    signal.metadata.set_item("Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa",
                             float(energy_resolution_mnka_ev))
    signal.add_lines(lines)
    return signal.as_lazy() if lazy else signal
