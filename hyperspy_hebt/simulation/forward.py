"""Thin-film forward model (paper Eq. 4-14) and an independent projector.

Expected counts per voxel of path: EDS ``n f_A C_A rho t`` with
``n = N_A D_e Omega / 4 pi`` and ADF ``D_H N_A sum_A z_A C_A rho t``, from this
package's physics factors. :func:`project_volume` integrates them along rays on
a grid finer than the reconstruction's, so tests do not commit the inverse crime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..tomography import ParallelBeamGeometry, get_projector
from ..tomography.geometry import TiltAngles

__all__ = ["DemoSlice", "alloy_density", "demo_sinograms", "project_volume",
           "thin_film_adf_counts", "thin_film_line_counts"]

AVOGADRO = 6.02214076e23
BARN_CM2 = 1e-24


def alloy_density(weight_fractions: Mapping[str, np.ndarray]) -> np.ndarray:
    """Density (g/cm^3) of a mixture by ideal mixing of the pure elements' volumes.

    ``1 / rho = sum_A C_A / rho_A``; 0 where all fractions are 0.

    Parameters
    ----------
    weight_fractions : dict of str -> array
        Weight fraction maps per element (same shape), summing to 1 inside the
        object and 0 outside.

    Returns
    -------
    numpy.ndarray
        g/cm^3 per voxel (ideal mixing of the pure elements' densities); 0 where the
        fractions are all 0.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import alloy_density
    >>> np.round(alloy_density({"Au": np.array([1.0, 0.5]), "Ag": np.array([0.0, 0.5])}), 2)
    array([19.3 , 13.59])
    """
    from ..physics import mass_density

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
    density: np.ndarray | None = None,
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
    density : numpy.ndarray, optional
        g/cm^3 per voxel; default :func:`alloy_density`, which is wrong for
        compounds of gaseous elements (an oxide would come out near the density
        of oxygen gas): give the phase's density for those.

    Returns
    -------
    dict of str -> numpy.ndarray
        Expected counts per voxel for each line.

    Raises
    ------
    ValueError
        A line whose element has no weight-fraction map.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import silicate_grain, thin_film_line_counts
    >>> grain = silicate_grain(16)
    >>> counts = thin_film_line_counts(grain.weight_fractions, ["O_Ka", "Fe_Ka"], 200.0,
    ...                                pixel_size_nm=grain.pixel_size_nm,
    ...                                density=grain.density_g_cm3)
    >>> sorted(counts), counts["O_Ka"].shape
    (['Fe_Ka', 'O_Ka'], (16, 16, 16))
    """
    from ..physics import eds_factor, split_xray_line

    density = alloy_density(weight_fractions) if density is None else np.asarray(density)
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
    collection_efficiency: float = 1.0,
    density: np.ndarray | None = None,
) -> np.ndarray:
    """Expected HAADF counts per voxel of path (paper Eq. 13-14).

    ``counts = eta D_H N_A sum_A z_A C_A rho t`` with ``z_A = sigma_elastic / M``,
    ``t`` one pixel and ``eta`` the share of elastically scattered electrons the
    detector collects (the paper's linear model has eta = 1; a real annular
    detector sees only the high-angle part).

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
    collection_efficiency : float
        ``eta`` in (0, 1].
    density : numpy.ndarray, optional
        g/cm^3 per voxel (default :func:`alloy_density`, see
        :func:`thin_film_line_counts`).

    Returns
    -------
    numpy.ndarray
        Expected ADF counts per voxel path, the fractions' shape.

    Raises
    ------
    ValueError
        ``collection_efficiency`` outside (0, 1].

    Examples
    --------
    >>> from hyperspy_hebt.simulation import thin_film_adf_counts
    >>> counts = thin_film_adf_counts({"Au": np.ones((4, 4))}, 200.0)  # pure Au, 1.5 nm columns
    >>> counts.shape
    (4, 4)
    """
    from ..physics import haadf_factor

    if not 0.0 < collection_efficiency <= 1.0:
        raise ValueError(
            f"collection_efficiency must lie in (0, 1], got {collection_efficiency}."
        )
    density = alloy_density(weight_fractions) if density is None else np.asarray(density)
    z = sum(haadf_factor(e, beam_energy_kev) * BARN_CM2 * np.asarray(c, float)
            for e, c in weight_fractions.items())
    return (collection_efficiency * dose_electrons * AVOGADRO * z * density
            * pixel_size_nm * 1e-7)


def project_volume(volume: np.ndarray, tilt_angles_deg: TiltAngles, oversampling: int = 2
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

    Raises
    ------
    ValueError
        ``oversampling`` not a positive integer.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import core_shell_phantom, project_volume
    >>> core, shell = core_shell_phantom(32)
    >>> project_volume(core + 0.5 * shell, np.linspace(-60, 60, 13)).shape  # (tilts, x)
    (13, 32)
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


@dataclass(frozen=True)
class DemoSlice:
    """What :func:`demo_sinograms` returns.

    Attributes
    ----------
    tilt_angles_deg : numpy.ndarray
        The tilts, degrees.
    projector : Projector
        The reconstruction grid's projector (the sinograms were made with another one,
        :func:`project_volume`'s finer grid).
    core, shell : numpy.ndarray
        Boolean ``(n_x, n_x)`` masks of the particle's core and shell.
    truth : numpy.ndarray
        ``core + 0.5 * shell``: the slice the sinograms are of.
    sinograms : numpy.ndarray
        float32 ``(1, n_tilts, n_x)``: one slice's sinogram stack.
    line_sinograms : numpy.ndarray
        float32 ``(2, 1, n_tilts, n_x)``: the core's and the shell's own, as two lines'
        sinogram stacks (HEBT's ``eds_sinograms``).

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_sinograms
    >>> demo = demo_sinograms(n_x=16)
    >>> demo.truth.shape, demo.line_sinograms.shape  # (z, x); (lines, slices, tilts, x)
    ((16, 16), (2, 1, 13, 16))
    """

    tilt_angles_deg: np.ndarray
    projector: object
    core: np.ndarray
    shell: np.ndarray
    truth: np.ndarray
    sinograms: np.ndarray
    line_sinograms: np.ndarray


def demo_sinograms(n_x: int = 32, n_tilts: int = 13) -> DemoSlice:
    """A core-shell slice and its sinograms, for the array-level examples and first trials.

    The paper's 2D phantom (:func:`~hyperspy_hebt.simulation.core_shell_phantom`), the core
    at 1 and the shell at 0.5, projected by :func:`project_volume` at tilts evenly spread
    over +-60 degrees, no noise; with the projector of the reconstruction grid.

    Parameters
    ----------
    n_x : int
        Pixels across the slice (>= 8).
    n_tilts : int
        Tilts (>= 2).

    Returns
    -------
    DemoSlice

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_sinograms
    >>> demo = demo_sinograms()
    >>> demo.sinograms.shape, demo.projector.matrix.shape  # (slices, tilts, x); rays, voxels
    ((1, 13, 32), (416, 1024))
    """
    from .phantoms import core_shell_phantom

    tilts = np.linspace(-60.0, 60.0, int(n_tilts))
    core, shell = core_shell_phantom(n_x)
    truth = core + 0.5 * shell
    lines = project_volume(np.stack([core, shell]).astype(np.float32), tilts)[:, None]
    return DemoSlice(tilts, get_projector(ParallelBeamGeometry(tuple(tilts), n_x)), core, shell,
                     truth, project_volume(truth, tilts)[None].astype(np.float32),
                     lines.astype(np.float32))
