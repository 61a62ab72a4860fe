"""A tilt series with the faults of a real one, written as per-tilt files.

The phantoms elsewhere are isolated particles recorded cleanly. A real series is a
FIB lamella wider than the field under a heavy-metal protective cap, recorded at a
few counts per pixel; its spectra carry the detector's zero-energy noise peak and
stray lines from the grid and holder that grow with tilt; its ADF saturates softly,
is clipped at black and has hot pixels; the specimen drifts and one frame jumps; the
file lists more elements than are there, and the reader names the scan axes its own
way. :func:`simulate_lamella_series` writes such a series, one ``.hspy`` EDS file and
one ADF file per tilt, generated tilt by tilt (bounded memory at any size), and
returns the truth behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..tomography.geometry import TiltAngles
from .acquisition import _write_tilt_files
from .forward import project_volume, thin_film_adf_counts, thin_film_line_counts

__all__ = ["LAMELLA_COMPOSITIONS", "RealisticSeries", "simulate_lamella_series"]

#: Weight fractions of the phases: an olivine-like silicate lamella, an Fe-sulfide
#: particle in it, and the Pt/Ga cap that FIB preparation leaves on top.
LAMELLA_COMPOSITIONS = {
    "silicate": {"O": 0.44, "Mg": 0.28, "Si": 0.19, "Fe": 0.09},
    "sulfide": {"Fe": 0.63, "S": 0.37},
    "cap": {"Pt": 0.9, "Ga": 0.1},
}
#: Densities (g/cm^3): olivine, pyrrhotite, and FIB-deposited Pt (porous, with carbon).
PHASE_DENSITIES = {"silicate": 3.3, "sulfide": 4.6, "cap": 12.0}
#: The line recorded for each element present.
LAMELLA_LINES = {"O": "O_Ka", "Mg": "Mg_Ka", "Si": "Si_Ka", "S": "S_Ka", "Fe": "Fe_Ka",
                 "Pt": "Pt_Ma", "Ga": "Ga_La"}
#: What acquisition software typically lists for such a specimen: more than is there.
FILE_ELEMENT_LIST = ["C", "O", "Na", "Mg", "Al", "Si", "S", "Cl", "K", "Ca", "Ti", "Fe",
                     "Cu", "Ga", "Pt"]


@dataclass
class RealisticSeries:
    """Files written by :func:`simulate_lamella_series` and the truth behind them.

    Attributes
    ----------
    spectrum_paths, adf_paths : list of Path
        One EDS spectrum image and one ADF image per tilt (``tilt_<angle>.hspy``
        and ``adf_tilt_<angle>.hspy``), in tilt order.
    tilt_angles_deg : numpy.ndarray
    truth : dict of str -> numpy.ndarray
        Weight fraction per element ``(y, z, x)`` over the scanned field, laid out
        as a reconstruction (0 outside the specimen).
    phase : numpy.ndarray
        Phase label per voxel ``(y, z, x)``: 0 vacuum, 1 silicate, 2 sulfide, 3 cap.
    drift_px : numpy.ndarray
        ``(tilt, 2)`` specimen drift ``(dy, dx)`` applied to each tilt.
    mean_counts_per_pixel : float
        Mean EDS counts per pixel over the whole spectrum (all tilts).
    faults : dict
        Every fault and its size, as written.

    Examples
    --------
    >>> import tempfile
    >>> from hyperspy_hebt.simulation import simulate_lamella_series
    >>> lamella = simulate_lamella_series(tempfile.mkdtemp(), n_x=16, n_slices=4,
    ...                                   tilt_angles_deg=np.linspace(-60, 60, 5),
    ...                                   energy_channels=256)
    >>> len(lamella.spectrum_paths), lamella.spectrum_paths[0].name
    (5, 'tilt_-60.hspy')
    >>> lamella.truth["Si"].shape, lamella.drift_px.shape  # (y, z, x); (tilt, 2)
    ((4, 16, 16), (5, 2))
    """

    spectrum_paths: list
    adf_paths: list
    tilt_angles_deg: np.ndarray
    truth: dict
    phase: np.ndarray
    drift_px: np.ndarray
    mean_counts_per_pixel: float
    faults: dict = field(default_factory=dict)

    @property
    def elements(self) -> list:
        """Elements in the specimen, the cap's included."""
        return sorted(self.truth)


def _phantom(n_slices, n_x, margin, thickness_fraction, cap_rows, vacuum_rows, seed):
    """Phase labels ``(slices + 2 margin, n_z, wide)``.

    The wide axis extends the lamella beyond the field on both sides.
    """
    rng = np.random.default_rng(seed)
    n_y, n_z, wide = n_slices + 2 * margin, n_x, 3 * n_x
    phase = np.zeros((n_y, n_z, wide), dtype=np.uint8)
    half = thickness_fraction * n_x / 2
    z = np.arange(n_z) - (n_z - 1) / 2
    slab = np.abs(z) <= half
    top = margin + vacuum_rows
    phase[top:, slab, :] = 1
    phase[top:top + cap_rows, slab, :] = 3
    # The sulfide particle: an ellipsoid in the slab, off-centre in x and y.
    yy, zz, xx = np.meshgrid(np.arange(n_y), z, np.arange(wide) - (wide - 1) / 2,
                             indexing="ij")
    cy = margin + vacuum_rows + cap_rows + 0.45 * (n_slices - vacuum_rows - cap_rows)
    cx = rng.uniform(-0.12, 0.12) * n_x
    radius = 0.18 * n_x
    inside = (((yy - cy) / radius) ** 2 + (zz / (0.8 * half)) ** 2
              + ((xx - cx) / (1.3 * radius)) ** 2) <= 1
    phase[inside & (phase == 1)] = 2
    return phase


_PHASES = ((1, "silicate"), (2, "sulfide"), (3, "cap"))


def _fractions(phase):
    out = {}
    for label, name in _PHASES:
        for element, value in LAMELLA_COMPOSITIONS[name].items():
            out.setdefault(element, np.zeros(phase.shape, np.float32))
            out[element][phase == label] = value
    return out


def _density(phase):
    density = np.zeros(phase.shape, np.float32)
    for label, name in _PHASES:
        density[phase == label] = PHASE_DENSITIES[name]
    return density


def _drift(n_tilts, total_px, jump_px, seed):
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 1, (n_tilts, 2))
    walk = np.cumsum(steps, axis=0)
    walk -= walk[n_tilts // 2]
    span = np.abs(walk).max()
    walk *= total_px / 2 / span if span > 0 else 0
    jumped = n_tilts // 3
    walk[jumped] += jump_px  # one frame jumps and comes back
    return walk


def _brems_shape(energy_kev, beam_energy_kev):
    """Kramers' continuum (E0 - E) / E, absorbed below ~0.6 keV by the detector window."""
    energy = np.clip(energy_kev, 1e-3, None)
    shape = np.clip(beam_energy_kev - energy, 0, None) / energy
    shape *= 1 - np.exp(-((energy / 0.6) ** 3))
    shape[energy_kev <= 0] = 0
    return shape / shape.sum()


#: Default tilts of :func:`simulate_lamella_series` (deg).
LAMELLA_TILTS_DEG = tuple(np.linspace(-60.0, 60.0, 16))


def simulate_lamella_series(
    folder,
    n_x: int = 64,
    n_slices: int = 32,
    tilt_angles_deg: TiltAngles = LAMELLA_TILTS_DEG,
    counts_per_pixel: float = 14.0,
    energy_channels: int = 2048,
    pixel_size_nm: float = 5.0,
    beam_energy_kev: float = 200.0,
    thickness_fraction: float = 0.25,
    cap_rows: int | None = None,
    drift_total_px: float = 12.0,
    jump_px: Sequence[float] = (0.0, 9.0),
    stray_fraction: float = 0.04,
    adf_saturation: float = 0.8,
    adf_black_level: float = 0.12,
    hot_pixel_fraction: float = 5e-4,
    zero_peak_counts: float = 0.5,
    counts_dtype=np.uint16,
    seed: int = 0,
) -> RealisticSeries:
    """Write a FIB-lamella tilt series with the faults of real data, one file per tilt.

    Parameters
    ----------
    folder : str or Path
        Created if needed; ``tilt_<angle>.hspy`` (EDS, ``EDS_TEM``) and
        ``adf_tilt_<angle>.hspy`` (the HAADF image) are written there.
    n_x, n_slices : int
        Scan pixels along x (across the tilt axis) and y (slices).
    tilt_angles_deg : sequence of float
        Tilt angles in degrees (default: 16 from -60 to 60).
    counts_per_pixel : float
        Mean EDS counts per pixel over the whole spectrum (real series: ~14).
    energy_channels : int
        Channels of 10 eV from -0.475 keV (as Bruker writes).
    pixel_size_nm : float
        Scan step in nm.
    beam_energy_kev : float
    thickness_fraction : float
        Lamella thickness as a fraction of the field width.
    cap_rows : int, optional
        Rows of Pt/Ga cap at the top of the lamella; default an eighth of the slices.
    drift_total_px : float
        Range of the random-walk drift over the series (px).
    jump_px : (dy, dx)
        One frame (a third of the way through) jumps by this much.
    stray_fraction : float
        Stray Cu Ka and Ti Ka counts (grid, holder) at 0 degrees as a fraction of
        the line counts; they grow as 1 / cos(tilt).
    adf_saturation : float
        The ADF compresses softly (``tanh``) towards this fraction of its unsaturated
        maximum.
    adf_black_level : float
        Dark level set too low: this fraction of the maximum is subtracted and
        negative values clipped to 0.
    hot_pixel_fraction : float
        ADF pixels stuck at full scale.
    zero_peak_counts : float
        Counts per pixel in the detector's zero-energy noise peak.
    counts_dtype : numpy dtype
        Integer type of the spectra (Bruker often writes ``uint8``); a channel that
        does not fit raises an error rather than wrapping.
    seed : int

    Returns
    -------
    RealisticSeries

    Raises
    ------
    ValueError
        A channel's counts exceed ``counts_dtype``.

    Examples
    --------
    >>> import tempfile
    >>> from hyperspy_hebt.simulation import simulate_lamella_series
    >>> lamella = simulate_lamella_series(tempfile.mkdtemp(), n_x=16, n_slices=4,
    ...                                   tilt_angles_deg=np.linspace(-60, 60, 5),
    ...                                   energy_channels=512, pixel_size_nm=20.0)
    >>> lamella.elements
    ['Fe', 'Ga', 'Mg', 'O', 'Pt', 'S', 'Si']
    >>> len(lamella.faults["file_element_list"])  # what the files list, as real software does
    15
    """
    import hyperspy.api as hs
    import scipy.ndimage as ndi

    from ..physics.line_shapes import family_profile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    angles = np.asarray(tilt_angles_deg, dtype=float)
    n_tilts = angles.size
    cap_rows = max(2, n_slices // 8) if cap_rows is None else int(cap_rows)
    vacuum_rows = max(3, n_slices // 5)  # vacuum above the cap, where black clips
    jump = np.asarray(jump_px, dtype=float)
    margin = int(np.ceil(drift_total_px / 2 + np.abs(jump).max() + 2))
    phase = _phantom(n_slices, n_x, margin, thickness_fraction, cap_rows, vacuum_rows, seed)
    fractions = _fractions(phase)
    present = [LAMELLA_LINES[e] for e in fractions]
    drift = _drift(n_tilts, drift_total_px, jump, seed + 1)

    # Expected counts per line and the ADF, projected through the wide lamella.
    density = _density(phase)
    counts = thin_film_line_counts(fractions, present, beam_energy_kev, dose_electrons=1e8,
                                   pixel_size_nm=pixel_size_nm, density=density)
    adf_volume = thin_film_adf_counts(fractions, beam_energy_kev, dose_electrons=1e5,
                                      pixel_size_nm=pixel_size_nm, density=density)
    wide = phase.shape[2]
    sinograms = {line: project_volume(counts[line], angles, oversampling=1)
                 for line in present}
    sinograms["ADF"] = project_volume(adf_volume, angles, oversampling=1)
    mass = project_volume(density, angles, oversampling=1)

    def field_of(sinogram, t):
        """The scanned field at tilt t: drift applied to the wide projection, cropped."""
        image = ndi.shift(sinogram[:, t], drift[t], order=1, mode="nearest")
        start = (wide - n_x) // 2
        return image[margin:margin + n_slices, start:start + n_x]

    energy = -0.475 + 0.01 * np.arange(energy_channels)
    resolution = 130.0
    profiles = np.stack([family_profile(line, energy, 0.01, resolution) for line in present])
    stray_lines = ["Cu_Ka", "Ti_Ka"]
    stray_profiles = np.stack([family_profile(line, energy, 0.01, resolution)
                               for line in stray_lines])
    zero = np.exp(-0.5 * (energy / (0.06 / 2.355)) ** 2)
    zero /= zero.sum()
    brems = _brems_shape(energy, beam_energy_kev)

    # Scale so that the mean total is about counts_per_pixel: lines carry 75 %, the
    # continuum (proportional to the mass thickness) 25 %; stray lines and the zero
    # peak come on top.
    family_totals = profiles.sum(axis=1)  # a family's other lines add to its alpha line
    line_totals = np.mean([sum(field_of(sinograms[line], t).mean() * total
                               for line, total in zip(present, family_totals))
                           for t in range(n_tilts)])
    mass_mean = np.mean([field_of(mass, t).mean() for t in range(n_tilts)])
    line_scale = 0.75 * counts_per_pixel / line_totals
    brems_scale = 0.25 * counts_per_pixel / max(mass_mean, 1e-12)
    stray_per_pixel = stray_fraction * 0.75 * counts_per_pixel / len(stray_lines)

    adf_top = max(float(field_of(sinograms["ADF"], t).max()) for t in range(n_tilts))
    rng = np.random.default_rng(seed + 2)
    paths, adf_paths, totals = [], [], []
    for t, angle in enumerate(angles):
        maps = np.stack([field_of(sinograms[line], t) for line in present],
                        axis=-1) * line_scale
        continuum = field_of(mass, t) * brems_scale
        stray = stray_per_pixel / np.cos(np.deg2rad(angle))
        spectra = np.empty((n_slices, n_x, energy_channels), dtype=counts_dtype)
        limit = np.iinfo(counts_dtype).max
        rows = max(1, int(32e6 // (8 * n_x * energy_channels)))
        for start in range(0, n_slices, rows):
            block = slice(start, start + rows)
            expected = (maps[block] @ profiles + continuum[block, :, None] * brems
                        + stray * stray_profiles.sum(axis=0) + zero_peak_counts * zero)
            drawn = rng.poisson(expected)
            if drawn.max(initial=0) > limit:
                raise ValueError(f"a channel holds {drawn.max()} counts, more than "
                                 f"{np.dtype(counts_dtype).name} can; use a wider counts_dtype.")
            spectra[block] = drawn
        totals.append(float(spectra.sum(dtype=np.int64)) / (n_slices * n_x))
        spectrum = hs.signals.Signal1D(spectra)
        _calibrate(spectrum.axes_manager.navigation_axes, pixel_size_nm)
        axis = spectrum.axes_manager.signal_axes[0]
        axis.name, axis.units, axis.offset, axis.scale = "Energy", "keV", energy[0], 0.01
        spectrum.set_signal_type("EDS_TEM")
        spectrum.metadata.General.title = "EDX"
        tem = "Acquisition_instrument.TEM"
        spectrum.metadata.set_item(f"{tem}.beam_energy", float(beam_energy_kev))
        spectrum.metadata.set_item(f"{tem}.Detector.EDS.energy_resolution_MnKa", resolution)
        spectrum.metadata.set_item(f"{tem}.Detector.EDS.elevation_angle", 18.0)
        spectrum.metadata.set_item(f"{tem}.Detector.EDS.azimuth_angle", 45.0)
        spectrum.metadata.set_item(f"{tem}.Stage.tilt_alpha", 0.0)  # as real files do
        spectrum.metadata.set_item("Sample.elements", list(FILE_ELEMENT_LIST))
        # The ADF: Poisson, soft saturation, a dark level set too low, hot pixels.
        adf = rng.poisson(field_of(sinograms["ADF"], t)).astype(np.float64)
        top = adf_saturation * adf_top
        adf = top * np.tanh(adf / top)
        adf = np.clip(adf - adf_black_level * top, 0, None)
        adf[rng.random(adf.shape) < hot_pixel_fraction] = top  # hot pixels at full scale
        image = hs.signals.Signal2D(adf.astype(np.float32))
        _calibrate(image.axes_manager.signal_axes, pixel_size_nm)
        image.metadata.General.title = "HAADF"
        spectrum_path, adf_path = _write_tilt_files(folder, f"tilt_{angle:+.4g}.hspy",
                                                   spectrum, image)
        paths.append(spectrum_path)
        adf_paths.append(adf_path)

    start = (wide - n_x) // 2
    crop = (slice(margin, margin + n_slices), slice(None), slice(start, start + n_x))
    truth = {element: np.ascontiguousarray(values[crop]) for element, values in fractions.items()}
    faults = {
        "lines_present": present, "file_element_list": list(FILE_ELEMENT_LIST),
        "stray_lines": stray_lines, "stray_fraction_at_0deg": stray_fraction,
        "zero_peak_counts_per_pixel": zero_peak_counts,
        "adf_soft_saturation_at": adf_saturation, "adf_black_level": adf_black_level,
        "adf_hot_pixel_fraction": hot_pixel_fraction, "drift_total_px": drift_total_px,
        "jump_px": jump.tolist(), "jumped_tilt_index": n_tilts // 3,
        "axis_names": ["width", "height"], "lamella_wider_than_field": True,
    }
    return RealisticSeries(paths, adf_paths, angles, truth, np.ascontiguousarray(phase[crop]),
                           drift, float(np.mean(totals)), faults)


def _calibrate(axes, pixel_size_nm):
    """Bruker's way: scan axes named width (fast) and height, in micrometres."""
    for axis, name in zip(axes, ("width", "height")):
        axis.name, axis.units, axis.scale, axis.offset = name, "µm", pixel_size_nm / 1000, 0.0
