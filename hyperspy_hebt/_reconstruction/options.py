"""The reconstruction methods' options in groups, each checked once, before any compute.

HyperSpy users expect flat keywords, so the signal methods keep them; each method
bundles them into these frozen groups and hands them to one function of the glue
(:mod:`.sirt`, :mod:`.hebt`, :mod:`.auto`). A value that cannot work is refused here,
naming the keyword, before a lazy series is read. Checks that need the data (an axis
name, a thickness in the scan's units, a line the spectrum lacks) stay where the data
are first seen, in :func:`.problem.prepare`.

- :class:`LineSource`: where the line maps come from;
- :class:`GridOptions`: the reconstruction grid and the measurements it trusts;
- :class:`RunOptions`: how the kernels run;
- :class:`HebtModel`: the link between the ADF and the EDS maps;
- :class:`Absorption`: whether and how X-ray absorption is corrected;
- :class:`Bootstrap`: whether and how the per-voxel uncertainty is estimated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..tomography import validate_alpha, validate_sirt_parameters
from ..tomography.backends import validate_backend

#: ``iterations``: a count, or chosen by cross-validation.
Iterations = int | Literal["auto"]
#: ``alpha``: a weight in [0, 1), or chosen by cross-validation.
Alpha = float | Literal["auto"]
#: ``padding_px``: columns per side, or chosen from the edge brightness.
Padding = int | Literal["auto"]
#: ``backend``: where the iterations run.
Backend = Literal["cpu", "cupy", "auto"]

AUTO = "auto"


def is_auto(value, name: str, expected: str = "a number") -> bool:
    """True for ``"auto"``; any other string is refused, naming ``name``."""
    if isinstance(value, str):
        if value != AUTO:
            raise ValueError(f"{name} must be {expected} or 'auto', got {value!r}.")
        return True
    return False


def checked_iterations(iterations, relaxation: float = 1.0) -> int | str:
    """``iterations`` as a positive int, or ``"auto"``."""
    if is_auto(iterations, "iterations", "a positive integer"):
        return AUTO
    return validate_sirt_parameters(iterations, relaxation)[0]


def checked_alpha(alpha) -> float | str:
    """``alpha`` in [0, 1), or ``"auto"``."""
    return AUTO if is_auto(alpha, "alpha") else validate_alpha(alpha)


def check_line_name(name) -> None:
    """Refuse a line exspy's element database does not know, naming what it has.

    Raises
    ------
    ValueError
        ``name`` is not ``"<element>_<line>"``, the element is unknown, or the element
        has no such line (listing the lines it has).
    """
    from exspy.material import elements

    if not isinstance(name, str) or name.count("_") != 1:
        raise ValueError(f"xray_lines: {name!r} is not a line name such as 'Fe_Ka' "
                         "(element, underscore, line).")
    element, line = name.split("_")
    if element not in elements:
        raise ValueError(f"xray_lines: {name!r} names no known element ({element!r}); "
                         "elements are written as in the periodic table, e.g. 'Fe'.")
    lines = elements[element].Atomic_properties.get_item("Xray_lines")
    known = [] if lines is None else sorted(lines.keys())
    if line not in known:
        raise ValueError(f"xray_lines: {element} has no line {line!r}; its lines are "
                         f"{known}.")


@dataclass(frozen=True, eq=False)
class LineSource:
    """Where the line maps come from (see ``reconstruct_sirt``'s parameters).

    Attributes
    ----------
    xray_lines : sequence of str or None
    intensities : sequence of signals or None
        Precomputed maps; the spectra are then not integrated.
    integration_windows : float or array
        In FWHM (a number) or energy windows (an array); checked against the lines
        where they are integrated.
    background_windows : None, "auto" or array
    normalise_tilts : bool
    """

    xray_lines: Sequence[str] | None = None
    intensities: Sequence | None = None
    integration_windows: object = 2.0
    background_windows: object = None
    normalise_tilts: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.xray_lines, str):
            raise TypeError(f"xray_lines must be a list of line names such as ['Fe_Ka'], "
                            f"got the string {self.xray_lines!r}.")
        for name in self.xray_lines if self.xray_lines is not None else ():
            check_line_name(name)
        if not isinstance(self.normalise_tilts, (bool, np.bool_)):
            raise TypeError(f"normalise_tilts must be True or False, got "
                            f"{self.normalise_tilts!r}.")


@dataclass(frozen=True, eq=False)
class GridOptions:
    """The reconstruction grid and the measurements it trusts.

    Attributes
    ----------
    rotation_axis : str
        Navigation axis parallel to the tilt axis (checked against the signal's axes
        in :func:`.problem.prepare`).
    gaussian_sigma : float, dict or None
        Pixels (checked against the axes there too).
    padding_px : int or "auto"
    invalid_pixels : "auto", None or boolean array
    thickness_nm : float or None
        nm (its conversion to pixels needs the scan axis: checked in ``prepare``).
    """

    rotation_axis: str = "y"
    gaussian_sigma: object = None
    padding_px: Padding = "auto"
    invalid_pixels: object = AUTO
    thickness_nm: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rotation_axis, str):
            raise TypeError(f"rotation_axis must be a navigation axis name such as 'y', got "
                            f"{self.rotation_axis!r}.")
        padding = self.padding_px
        if not is_auto(padding, "padding_px", "a number of pixels >= 0"):
            if isinstance(padding, (bool, np.bool_)) or not isinstance(
                    padding, (int, np.integer)) or padding < 0:
                raise ValueError(f"padding_px must be a number of pixels >= 0 or 'auto', "
                                 f"got {padding!r}.")
            object.__setattr__(self, "padding_px", int(padding))
        if isinstance(self.invalid_pixels, str) and self.invalid_pixels != AUTO:
            raise ValueError(f"invalid_pixels must be 'auto', None or a boolean array, got "
                             f"{self.invalid_pixels!r}.")
        thickness = self.thickness_nm
        if thickness is not None:
            if isinstance(thickness, (bool, np.bool_)) or not isinstance(
                    thickness, (int, float, np.number)):
                raise TypeError(f"thickness_nm must be a number of nm or None, got "
                                f"{thickness!r}.")
            if not np.isfinite(thickness) or thickness <= 0:
                raise ValueError(f"thickness_nm must be a positive number of nm, got "
                                 f"{thickness!r}.")


@dataclass(frozen=True)
class RunOptions:
    """How the kernels run: the SIRT step and where and in what batches it runs.

    Attributes
    ----------
    relaxation : float
        In (0, 2).
    positivity : bool
    show_progressbar : bool or None
        None: HyperSpy's preference (resolved here).
    slices_per_block : int
        Slices per batch or dask block, at most.
    backend : {"cpu", "cupy", "auto"}
        Checked here; resolved where the work runs (``kernel_backend``).
    bootstrap : Bootstrap or None
        The per-voxel uncertainty's settings; None: no uncertainty.
    """

    relaxation: float = 1.0
    positivity: bool = True
    show_progressbar: bool | None = None
    slices_per_block: int = 64
    backend: Backend = "cpu"
    bootstrap: Bootstrap | None = None

    def __post_init__(self) -> None:
        _, relaxation = validate_sirt_parameters(1, self.relaxation)
        object.__setattr__(self, "relaxation", relaxation)
        blocks = self.slices_per_block
        if isinstance(blocks, (bool, np.bool_)) or not isinstance(blocks, (int, np.integer)) \
                or blocks < 1:
            raise ValueError(f"slices_per_block must be a positive integer, got {blocks!r}.")
        object.__setattr__(self, "slices_per_block", int(blocks))
        if not isinstance(self.positivity, (bool, np.bool_)):
            raise TypeError(f"positivity must be True or False, got {self.positivity!r}.")
        object.__setattr__(self, "positivity", bool(self.positivity))
        if not isinstance(self.show_progressbar, (bool, np.bool_, type(None))):
            raise TypeError(f"show_progressbar must be True, False or None, got "
                            f"{self.show_progressbar!r}.")
        if self.show_progressbar is None:
            from hyperspy.defaults_parser import preferences

            object.__setattr__(self, "show_progressbar",
                               bool(preferences.General.show_progressbar))
        validate_backend(self.backend)


@dataclass(frozen=True, eq=False)
class HebtModel:
    """HEBT's link between the ADF and the EDS maps (see ``reconstruct_hebt``).

    Attributes
    ----------
    response_ratios : None, "physics" or dict
        Fitted (None), shaped by the cross sections ("physics") or given
        ``{xray_line: ratio}`` (checked against the lines in ``response_model``).
    exclude_clipped, adf_offset, unlisted_mass : bool
    ratio_floor : float or None
        Fraction of the median ratio, in (0, 1].
    detector_efficiency : float, dict or callable
    """

    response_ratios: object = None
    exclude_clipped: bool = True
    adf_offset: bool = False
    unlisted_mass: bool = False
    ratio_floor: float | None = None
    detector_efficiency: object = 1.0

    def __post_init__(self) -> None:
        ratios = self.response_ratios
        if not (ratios is None or isinstance(ratios, dict)
                or (isinstance(ratios, str) and ratios == "physics")):
            raise TypeError(
                "response_ratios must be None (fit them), 'physics' (the cross sections' "
                f"pattern, one fitted scale) or a dict {{xray_line: ratio}}, got {ratios!r}.")
        if isinstance(ratios, dict) and self.adf_offset:
            raise ValueError("adf_offset fits the offset with the ratios: do not pass "
                             "response_ratios with it.")
        if self.ratio_floor is not None:
            try:
                floor = float(self.ratio_floor)
            except (TypeError, ValueError):
                floor = float("nan")
            if not 0 < floor <= 1:
                raise ValueError(f"ratio_floor must lie in (0, 1] (a fraction of the median "
                                 f"ratio), got {self.ratio_floor!r}.")

    @property
    def fitted(self) -> bool:
        """Whether the ratios are fitted on the data (so the maps must be in memory)."""
        return not isinstance(self.response_ratios, dict)


@dataclass(frozen=True, eq=False)
class Absorption:
    """Absorption correction settings (see ``reconstruct_sirt``'s ``absorption_correction``).

    Attributes
    ----------
    correction : bool or "exact"
        Correct the X-ray lines' absorption on the way to the detectors; "exact" (stored
        as True) sets ``coarsening`` 1.
    density : float or None
        Specimen density in g/cm^3; None estimates it from the composition (warned).
    detectors : sequence of (azimuth_deg, elevation_deg) or None
        The detectors' directions in degrees; None reads them from the metadata.
    max_iterations : int
        Outer iterations (reconstruct, quantify, attenuate) allowed.
    tolerance : float
        Largest change of a mean weight fraction (0-1) between passes to stop at.
    coarsening : int
        The composition passes run on a grid this many times coarser than the
        reconstruction's along every axis (about ``coarsening**3`` times less work),
        unless the object is too small on it (:mod:`.absorption`); 1 runs them on the
        reconstruction's grid.
    """

    correction: bool | str = False
    density: float | None = None
    detectors: object = None
    max_iterations: int = 8
    tolerance: float = 0.002
    coarsening: int = 2

    @property
    def mode(self) -> bool | str:
        """The ``absorption_correction`` value that gives these settings again."""
        if not self.correction:
            return False
        return "exact" if self.coarsening == 1 else True

    def __post_init__(self) -> None:
        from ..detectors import checked_detectors

        if isinstance(self.correction, str) and self.correction == "exact":
            # The composition passes on the reconstruction's own grid.
            object.__setattr__(self, "correction", True)
            object.__setattr__(self, "coarsening", 1)
        if not isinstance(self.correction, (bool, np.bool_)):
            raise TypeError(f"absorption_correction must be True, False or 'exact', got "
                            f"{self.correction!r}.")
        object.__setattr__(self, "correction", bool(self.correction))
        density = self.density
        if density is not None and (
                isinstance(density, (bool, np.bool_)) or not isinstance(density, (int, float))
                or not np.isfinite(density) or not 0 < density < 30):
            raise ValueError(f"density must be None (estimated from the composition) or the "
                             f"specimen's density in g/cm^3 (0-30), got {density!r}.")
        checked_detectors(self.detectors)
        if not self.correction and (density is not None or self.detectors is not None):
            raise ValueError("density and detectors are for the absorption correction: "
                             "pass absorption_correction=True with them.")
        count = self.max_iterations
        if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer)) \
                or count < 1:
            raise ValueError(f"max_iterations must be a positive integer, got {count!r}.")
        if not (isinstance(self.tolerance, (int, float)) and np.isfinite(self.tolerance)
                and 0 < self.tolerance < 1):
            raise ValueError(f"tolerance must be a weight fraction in (0, 1), got "
                             f"{self.tolerance!r}.")
        coarsening = self.coarsening
        if isinstance(coarsening, (bool, np.bool_)) or not isinstance(
                coarsening, (int, np.integer)) or not 1 <= coarsening <= 8:
            raise ValueError(f"coarsening must be an integer from 1 to 8, got {coarsening!r}.")


@dataclass(frozen=True, eq=False)
class Bootstrap:
    """The per-voxel uncertainty's parametric bootstrap (``reconstruct_sirt(uncertainty=)``).

    Attributes
    ----------
    replicates : int
        Simulated repeats of the measurement, each reconstructed like the data (>= 2).
    random_state : int or None
        Seed of the simulated noise; None draws one, recorded as ``seed``.
    """

    replicates: int
    random_state: int | None = None

    def __post_init__(self) -> None:
        count = self.replicates
        if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer)) \
                or count < 2:
            raise ValueError(f"uncertainty must be 0 (none) or a number of bootstrap "
                             f"replicates >= 2 (20 or more for a per-voxel standard deviation "
                             f"good to about 15 %), got {count!r}.")
        object.__setattr__(self, "replicates", int(count))
        seed = self.random_state
        if seed is None:
            seed = int(np.random.default_rng().integers(2**63))
        elif isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
                or seed < 0:
            raise ValueError(f"random_state must be None or an integer >= 0, got {seed!r}.")
        object.__setattr__(self, "random_state", int(seed))

    @property
    def seed(self) -> int:
        """The seed drawn from (``random_state``, or the one drawn for None)."""
        assert self.random_state is not None  # set in __post_init__
        return self.random_state

    @classmethod
    def of(cls, uncertainty, random_state) -> Bootstrap | None:
        """The settings for ``uncertainty`` replicates (0: None, no uncertainty)."""
        if isinstance(uncertainty, (int, np.integer)) and not isinstance(
                uncertainty, (bool, np.bool_)) and uncertainty == 0:
            if random_state is not None:
                raise ValueError("random_state seeds the uncertainty's bootstrap: pass "
                                 "uncertainty=<replicates> with it.")
            return None
        return cls(uncertainty, random_state)
