"""Phantoms: masks and composition maps of known objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Phantom",
    "core_shell_particle",
    "core_shell_phantom",
    "paper_phantom",
    "silicate_grain",
]


@dataclass
class Phantom:
    """A known object: weight fraction maps on a voxel grid.

    Attributes
    ----------
    weight_fractions : dict of str -> numpy.ndarray
        Per element, ``(n_z, n_x)`` for a slice or ``(n_slices, n_z, n_x)``;
        they sum to 1 inside the object and 0 outside.
    pixel_size_nm : float
        Voxel edge in nm.
    regions : dict of str -> numpy.ndarray of bool
        Named masks (e.g. ``core``, ``shell``) for region statistics.
    density_g_cm3 : numpy.ndarray, optional
        Density per voxel in g/cm^3 where the phantom defines it (0 outside).

    Examples
    --------
    >>> from hyperspy_hebt.simulation import Phantom
    >>> phantom = Phantom({"Au": np.ones((2, 4, 4))}, pixel_size_nm=2.0)  # a pure Au block
    >>> phantom.pixel_size_nm, sorted(phantom.weight_fractions)
    (2.0, ['Au'])
    """

    weight_fractions: dict
    pixel_size_nm: float
    regions: dict = field(default_factory=dict)
    density_g_cm3: np.ndarray | None = None

    @property
    def support(self) -> np.ndarray:
        """Voxels inside the object."""
        total = np.zeros(np.shape(next(iter(self.weight_fractions.values()))))
        for fraction in self.weight_fractions.values():
            total = total + np.asarray(fraction)
        return total > 0


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

    Examples
    --------
    >>> from hyperspy_hebt.simulation import core_shell_phantom
    >>> core, shell = core_shell_phantom(32)
    >>> core.shape, core.dtype, bool((core & shell).any())
    ((32, 32), dtype('bool'), False)
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


def core_shell_particle(n_x: int, n_slices: int | None = None, pixel_size_nm: float = 1.5,
                        core_composition=None, shell_composition=None,
                        core_radius: float = 0.22, shell_radius: float = 0.4) -> Phantom:
    """A core-shell particle of any two compositions (see :func:`core_shell_phantom`).

    Parameters
    ----------
    n_x : int
        Pixels along x and z.
    n_slices : int, optional
        None: one 2D slice; a number: a sphere over that many slices along ``y``
        (centred, so with ``n_slices >= 2 * shell_radius * n_x`` the whole particle
        is inside the field, as alignment by centre of mass needs).
    pixel_size_nm : float
        Voxel edge in nm.
    core_composition, shell_composition : dict of str -> float, optional
        Weight fractions per element, each summing to 1 (default: the paper's
        Au 0.8 / Ag 0.2 core and Ag 0.8 / Au 0.2 shell). Any elements may be used.
    core_radius, shell_radius : float
        Radii as fractions of the field of view.

    Returns
    -------
    Phantom
        With regions ``core`` and ``shell``.

    Raises
    ------
    ValueError
        A composition whose weight fractions are negative or do not sum to 1.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import core_shell_particle
    >>> particle = core_shell_particle(24, 2, pixel_size_nm=3.0)
    >>> sorted(particle.weight_fractions), particle.weight_fractions["Au"].shape
    (['Ag', 'Au'], (2, 24, 24))
    """
    core_composition = core_composition or {"Ag": 0.2, "Au": 0.8}
    shell_composition = shell_composition or {"Ag": 0.8, "Au": 0.2}
    for name, composition in (("core_composition", core_composition),
                              ("shell_composition", shell_composition)):
        total = sum(composition.values())
        if not np.isclose(total, 1.0) or any(v < 0 for v in composition.values()):
            raise ValueError(
                f"{name} must hold weight fractions >= 0 summing to 1, got {composition}."
            )
    core, shell = core_shell_phantom(n_x, n_slices, core_radius=core_radius,
                                     shell_radius=shell_radius)
    elements = sorted(set(core_composition) | set(shell_composition))
    fractions = {e: core_composition.get(e, 0.0) * core + shell_composition.get(e, 0.0) * shell
                 for e in elements}
    return Phantom(fractions, pixel_size_nm, {"core": core, "shell": shell})


def paper_phantom(n_slices: int | None = None, core_composition=None, shell_composition=None
                  ) -> Phantom:
    """The paper's Ag-Au core-shell phantom (its Fig. 1) on the paper's grid.

    97 beam positions from -72 to 72 nm (1.5 nm steps), the slice in the x-z
    plane; core 80 wt% Au / 20 wt% Ag, shell 20 / 80. The paper gives no
    dimensions: the particle here is 116 nm across with a 64 nm core set off
    centre, which matches its figure by eye.

    Parameters
    ----------
    n_slices : int, optional
        None: one 2D slice (as in the paper). A number: a 3D sphere of that many
        slices along the rotation axis ``y``.
    core_composition, shell_composition : dict of str -> float, optional
        As for :func:`core_shell_particle`.

    Returns
    -------
    Phantom
        Weight fractions per element, 1.5 nm voxels, regions ``core`` and ``shell``.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import paper_phantom
    >>> phantom = paper_phantom()
    >>> phantom.weight_fractions["Au"].shape, phantom.pixel_size_nm
    ((97, 97), 1.5)
    """
    return core_shell_particle(97, n_slices, 1.5, core_composition, shell_composition)


def _weight_fractions(formula: dict) -> dict:
    from ..physics import atomic_weight

    total = sum(atomic_weight(e) * n for e, n in formula.items())
    return {e: atomic_weight(e) * n / total for e, n in formula.items()}


#: The silicate grain's phases: an Fe-bearing olivine, (Mg0.8Fe0.2)2SiO4, and a magnetite
#: (Fe3O4) inclusion, with their densities in g/cm^3.
GRAIN_PHASES = {
    "matrix": ({"Mg": 1.6, "Fe": 0.4, "Si": 1.0, "O": 4.0}, 3.45),
    "inclusion": ({"Fe": 3.0, "O": 4.0}, 5.2),
}


def silicate_grain(n: int = 32, diameter_nm: float = 500.0) -> Phantom:
    """A spherical Fe-bearing silicate grain with an off-centre magnetite inclusion.

    The absorption test object of issue 15: at half a micron, O Ka leaves the grain
    attenuated by 20 % and more, Fe Ka almost freely, so thin-film quantification reads O
    low and Fe high. The grain fills 90 % of an ``n``-voxel cube; the inclusion, a third
    of its diameter, sits off centre (toward +z and -x), so paths out of it differ by
    direction.

    Parameters
    ----------
    n : int
        Voxels along each axis (>= 8).
    diameter_nm : float
        Grain diameter in nm; the voxel edge is ``diameter_nm / (0.9 n)``.

    Returns
    -------
    Phantom
        Weight fractions of O, Mg, Si and Fe on ``(n, n, n)``; regions ``matrix`` and
        ``inclusion``; densities of :data:`GRAIN_PHASES`.

    Raises
    ------
    ValueError
        ``n`` below 8 or not an integer, or ``diameter_nm`` not positive.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import silicate_grain
    >>> grain = silicate_grain(16)
    >>> sorted(grain.weight_fractions), sorted(grain.regions)
    (['Fe', 'Mg', 'O', 'Si'], ['inclusion', 'matrix'])
    """
    if int(n) != n or n < 8:
        raise ValueError(f"n must be an integer >= 8, got {n!r}.")
    if not (np.isfinite(diameter_nm) and diameter_nm > 0):
        raise ValueError(f"diameter_nm must be a positive number, got {diameter_nm!r}.")
    n = int(n)
    centred = np.indices((n, n, n)) - (n - 1) / 2
    grain = np.sqrt((centred**2).sum(0)) < 0.45 * n
    offset = np.array([0.0, 0.12 * n, -0.1 * n])[:, None, None, None]
    inclusion = grain & (np.sqrt(((centred - offset) ** 2).sum(0)) < 0.15 * n)
    matrix = grain & ~inclusion
    regions = {"matrix": matrix, "inclusion": inclusion}
    elements = ("O", "Mg", "Si", "Fe")
    fractions = {e: np.zeros((n, n, n)) for e in elements}
    density = np.zeros((n, n, n))
    for name, (formula, rho) in GRAIN_PHASES.items():
        for element, value in _weight_fractions(formula).items():
            fractions[element][regions[name]] = value
        density[regions[name]] = rho
    return Phantom(fractions, float(diameter_nm) / (0.9 * n), regions, density)
