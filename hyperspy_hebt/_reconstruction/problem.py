"""One preparation of a tilt series for the kernels.

Shared by SIRT, HEBT and the cross-validation that chooses between them.

:func:`prepare` turns a signal (and its ADF series) into a :class:`Problem`: the
axes' roles, the line maps (integrated, the user's, or fitted) as sinogram stacks
``(slices, tilts, detector)`` unfiltered and Gaussian-filtered, the ADF stack, the
reconstruction grid with its padding, the pixels it trusts and the slab a known
thickness allows, and whether the work is lazy. It is the one place these are
decided.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

import dask
import dask.array as da
import numpy as np

from ..filtering import filtered_sinograms
from ..tomography import ParallelBeamGeometry
from .field import check_grid_memory, invalid_pixels_of, resolve_padding, thickness_support
from .intensities import (
    LineIntensity,
    adf_series,
    line_intensities,
    normalise_per_tilt,
    warn_negative,
)
from .layout import TiltSeriesLayout
from .options import GridOptions, LineSource

__all__ = ["Field", "Problem", "prepare"]

_logger = logging.getLogger(__name__)


def in_memory(stacks, slices_per_block):
    """Compute lazy sinogram stacks once, as float32 dask arrays chunked by slices.

    They are small next to the spectra, so what is built on them does not read the spectra again.
    """
    computed = dask.compute(*[da.asarray(s).astype(np.float32) for s in stacks])
    return [da.from_array(c, chunks=(slices_per_block, -1, -1)) for c in computed]


@dataclass
class Field:
    """The reconstruction grid, where the object may be, and the measurements it trusts."""

    geometry: ParallelBeamGeometry
    weights: np.ndarray | da.Array | None  # (slices, tilts, detector) float32, 0 = no data
    record: dict
    half_thickness_px: float | None = None  # slab support |z| <= this; None = whole grid


def invalid_weights(signal, layout, invalid_pixels, lazy, slices_per_block):
    """Weights stack (0 on invalid pixels, else 1) or None, and the record of them."""
    invalid, source = invalid_pixels_of(signal, invalid_pixels, layout.navigation_shape)
    record = {"invalid_pixels": source,
              "invalid_pixel_fraction": 0.0 if invalid is None else float(invalid.mean())}
    if invalid is None:
        return None, record
    weights = np.ascontiguousarray(layout.to_stack((~invalid).astype(np.float32)))
    empty = np.flatnonzero(~weights.any(axis=(1, 2)))
    if empty.size:
        # Every solver leaves a voxel that no valid ray crosses at 0: say that these zeros
        # are no measurement, in the metadata and where the user looks.
        name = layout.slice_axis.name if layout.slice_axis is not None else "slice"
        record["slices_without_data"] = empty.tolist()
        _logger.warning(
            "%d of %d slices (%s index %s) have no valid pixel at any tilt (%s): their "
            "voxels are 0 for want of data, not measured as empty. Leave them out of "
            "figures and region statistics, or crop the series.", empty.size,
            weights.shape[0], name, empty.tolist(),
            "the alignment shifted them in from outside the images" if source == "alignment"
            else "invalid_pixels marks them all")
    if lazy:
        weights = da.from_array(weights, chunks=(slices_per_block, -1, -1))
    return weights, record


def prepare_field(layout, stacks, padding_px, weights, record, thickness_nm=None) -> Field:
    """Resolve the padding, build the geometry and the slab a known thickness allows.

    ``"auto"`` padding looks at ``stacks``.
    """
    half, thickness_record = thickness_support(thickness_nm, layout)
    padding, padding_record = resolve_padding(padding_px, layout.tilt_angles_deg,
                                              layout.detector_axis.size, stacks, weights,
                                              depth_px=None if half is None else 2 * half)
    geometry = layout.geometry(padding)
    check_grid_memory(geometry, padding_record)
    return Field(geometry, weights, {**record, **padding_record, **thickness_record}, half)


@dataclass
class Problem:
    """A tilt series prepared for the kernels.

    Attributes
    ----------
    layout : TiltSeriesLayout
        Which axes are slice, tilt and scan.
    lines : list of LineIntensity
        The line maps with their provenance.
    raw : list
        Unfiltered sinogram stacks, one per line (numpy, or dask over in-memory
        maps when lazy).
    eds : list
        The same, Gaussian-filtered (``sigma``) as the reconstructions use them.
    adf : numpy.ndarray, dask array or None
        The ADF stack (never filtered: it is the low-noise modality), None without ADF.
    lazy : bool
        Whether results are dask graphs: True when the signal, the ADF or any given
        line map is lazy.
    sigma : tuple or None
        Gaussian sigma per stack axis (slice, tilt, detector), pixels.
    field : Field
        Grid geometry (with its padding), weights of the pixels with valid data,
        the slab support and the record of how each was chosen.
    variance : list or None
        Variance of each ``raw`` stack (counts squared, same layout), when asked for
        (``prepare(..., variance=True)``, for the bootstrap of :mod:`.uncertainty`).
    line_weights : list or None
        Per line, stack-shaped ray weights in (0, 1] that multiply the field's, for the
        Poisson solvers: the share of each ray's X-rays that gets out of the specimen
        (the absorption correction, whose ``eds`` are then the counts divided by it: the
        weighted likelihood of those is the attenuated model's own). None: the field's.
    """

    layout: TiltSeriesLayout
    lines: list[LineIntensity]
    raw: list
    eds: list
    adf: np.ndarray | da.Array | None
    lazy: bool
    sigma: tuple | None
    field: Field
    variance: list | None = None
    line_weights: list | None = None

    @property
    def names(self) -> list:
        """The X-ray lines, in order."""
        return [line.xray_line for line in self.lines]

    def only(self, index: int) -> Problem:
        """The same problem with line ``index`` alone (same grid, same weights)."""
        return replace(self, lines=[self.lines[index]], raw=[self.raw[index]],
                       eds=[self.eds[index]],
                       variance=None if self.variance is None else [self.variance[index]],
                       line_weights=(None if self.line_weights is None
                                     else [self.line_weights[index]]))

    def ray_weights(self, index: int):
        """Line ``index``'s ray weights: the field's times its own (None: all 1)."""
        field, own = self.field.weights, (None if self.line_weights is None
                                          else self.line_weights[index])
        if own is None:
            return field
        return own if field is None else field * own

    @property
    def valid_pixels(self) -> np.ndarray | None:
        """Stack-shaped, False where there are no valid data; None when all are valid."""
        weights = self.field.weights
        return None if weights is None else np.asarray(weights) > 0


def prepare(signal, adf=None, source: LineSource | None = None,
            grid: GridOptions | None = None, *, slices_per_block: int = 64,
            compute: bool = False, variance: bool = False) -> Problem:
    """Prepare ``signal`` (and ``adf``) for the kernels, reading the spectra once.

    Parameters
    ----------
    signal : TomographicEDSSpectrum
        The tilt series (read, never modified).
    adf : signal or array, optional
        The ADF series (see ``reconstruct_hebt``); None for EDS only.
    source : LineSource, optional
        Where the line maps come from (default: the spectra, 2-FWHM windows).
    grid : GridOptions, optional
        The grid, its padding, the trusted pixels and the filter (default: "auto"
        padding and invalid pixels, no filter, rotation axis ``y``).
    slices_per_block : int
        Chunks of the lazy stacks along the slices.
    compute : bool
        Bring lazy maps into memory (one pass over the spectra), filtered ones too,
        kept usable as dask arrays chunked by slices. Lazy maps are brought in
        anyway when ``padding_px="auto"`` has to look at them.
    variance : bool
        Also the maps' variance (``Problem.variance``): Poisson statistics of the
        spectra through the integration, or the given maps'
        ``metadata.Signal.Noise_properties.variance``.

    Returns
    -------
    Problem

    Raises
    ------
    ValueError
        A series of one tilt or with tilts spanning under 5 deg (radians?), bad
        integration windows, tilts at which every line map is zero or the ADF has no
        contrast (checked whenever the maps are in memory: eager data, ``compute``,
        or ``"auto"`` padding; a lazy series with a number of padding pixels stays
        unread).
    """
    source = LineSource() if source is None else source
    grid = GridOptions() if grid is None else grid
    signal = private_view(signal)
    rotation_axis, padding_px = grid.rotation_axis, grid.padding_px
    invalid_pixels, thickness_nm = grid.invalid_pixels, grid.thickness_nm
    layout = TiltSeriesLayout.from_signal(signal, rotation_axis)
    sigma = layout.sigma_in_stack_order(grid.gaussian_sigma)
    refuse_non_real(signal.data, "the spectra")
    adf_data = None if adf is None else adf_series(signal, adf)  # checks its dtype too
    lines = line_intensities(signal, source.xray_lines, source.intensities,
                             source.integration_windows, source.background_windows,
                             variance=variance)
    for line in lines:
        refuse_non_real(line.data, f"the {line.xray_line} map")
    if source.normalise_tilts:
        lines = normalise_per_tilt(lines, layout.tilt_axis.index_in_array)
    lazy = signal._lazy or isinstance(adf_data, da.Array) or any(
        isinstance(line.data, da.Array) for line in lines)
    weights, record = invalid_weights(signal, layout, invalid_pixels, lazy, slices_per_block)
    raw = [layout.to_stack(line.data) for line in lines]
    variances = map_variances(lines, layout) if variance else []
    adf_stack = None if adf_data is None else filtered_sinograms(
        layout.to_stack(adf_data), None, lazy, slices_per_block)
    if lazy and (compute or isinstance(padding_px, str)):
        # The maps are small: computed once (for a fit or the padding check), with
        # every graph built on them, the spectra are read a single time.
        computed = in_memory(raw + variances + ([] if adf_stack is None else [adf_stack]),
                             slices_per_block)
        raw = computed[:len(raw)]
        variances = computed[len(raw):len(raw) + len(variances)]
        adf_stack = None if adf_stack is None else computed[-1]
    elif lazy:
        variances = [da.asarray(v).astype(np.float32).rechunk({0: slices_per_block, 1: -1, 2: -1})
                     for v in variances]
    if not lazy or compute or isinstance(padding_px, str):  # the maps are in memory
        refuse_dead_tilts(raw, layout.tilt_angles_deg)
        for line, stack in zip(lines, raw):
            refuse_impossible_negatives(line, stack)
            if lazy:  # eager maps were looked at when they were made
                warn_negative(line.xray_line, np.asarray(stack), line.provenance["source"])
        if adf_stack is not None:
            refuse_flat_adf(adf_stack, layout.tilt_angles_deg)
    # The unfiltered EDS maps say whether the object continues beyond the scan (an
    # ADF dark level would look like mass at the edges, a filter spreads it there).
    field = prepare_field(layout, raw, padding_px, weights, record, thickness_nm)
    eds = [filtered_sinograms(stack, sigma, lazy, slices_per_block, weights) for stack in raw]
    if lazy and compute:
        eds = in_memory(eds, slices_per_block)
    return Problem(layout, lines, raw, eds, adf_stack, lazy, sigma, field,
                   variances if variance else None)


def map_variances(lines, layout) -> list:
    """Each line's variance as a stack like its map (float32), or an error naming the line.

    Raises
    ------
    ValueError
        A line has no known variance (a user's map without
        ``metadata.Signal.Noise_properties.variance``).
    """
    out = []
    for line in lines:
        if line.variance is None:
            raise ValueError(
                f"The {line.xray_line} map has no known variance, which the uncertainty "
                "needs: give intensities carrying metadata.Signal.Noise_properties.variance "
                "(e.g. estimate_poissonian_noise_variance() on maps of plain counts), or let "
                "the spectra be integrated (intensities=None).")
        variance = line.variance
        if np.ndim(variance) == 0:
            variance = np.full(np.shape(line.data), float(variance), np.float32)
        stack = layout.to_stack(variance)
        out.append(stack.astype(np.float32) if isinstance(stack, da.Array)
                   else np.ascontiguousarray(stack, dtype=np.float32))
    return out


_VIEW_LOCK = threading.Lock()


def private_view(signal):
    """A signal sharing ``signal``'s data (no copy) with its own axes and metadata.

    HyperSpy's slicing and exspy's integration briefly change a signal's own state
    (threads sharing one signal crashed in ``isig`` with "too many indices"); working
    on a view of our own makes the methods safe to call from several threads on one
    signal, and leaves the user's signal as it was. Making the copy briefly takes the
    data, models and learning results off the source (HyperSpy's
    ``_deepcopy_with_new_data``), so copies are made one at a time: safe among this
    package's methods, not against other HyperSpy calls on the same signal running in
    other threads at that moment.
    """
    with _VIEW_LOCK:
        return signal._deepcopy_with_new_data(signal.data)


def prepare_adf(signal, adf, grid: GridOptions | None = None, *,
                slices_per_block: int = 64) -> Problem:
    """Prepare the ADF series alone for its own SIRT (``reconstruct_adf``).

    Parameters
    ----------
    signal : TomographicEDSSpectrum
        The tilt series whose angles and axes the ADF shares.
    adf : signal or array
        The ADF series (see ``reconstruct_hebt``).
    grid : GridOptions, optional
        Its padding (``"auto"`` looks at the ADF images: a large dark level reads as
        an object wider than the scan) and invalid pixels; the filter and the
        thickness are not used (the ADF is the low-noise modality).
    slices_per_block : int
        Chunks of the lazy stack along the slices.

    Returns
    -------
    Problem
        With no lines: ``adf`` holds the stack; lazy when the ADF is.
    """
    grid = GridOptions() if grid is None else grid
    layout = TiltSeriesLayout.from_signal(signal, grid.rotation_axis)
    data = adf_series(signal, adf)
    lazy = isinstance(data, da.Array)
    weights, record = invalid_weights(signal, layout, grid.invalid_pixels, lazy,
                                      slices_per_block)
    stack = filtered_sinograms(layout.to_stack(data), None, lazy, slices_per_block)
    if lazy and isinstance(grid.padding_px, str):
        (stack,) = in_memory([stack], slices_per_block)
    if not lazy or isinstance(grid.padding_px, str):
        refuse_flat_adf(stack, layout.tilt_angles_deg)
    field = prepare_field(layout, [stack], grid.padding_px, weights, record)
    return Problem(layout, [], [], [], stack, lazy, None, field)


def refuse_non_real(data, name: str) -> None:
    """Refuse data that are not real numbers.

    Complex values (a Fourier-filtered series whose imaginary part was not dropped) would be cast to
    their real part, booleans (a mask passed by mistake) would be read as counts of 0 and 1.

    Raises
    ------
    TypeError
        Naming ``name`` and the dtype.
    """
    kind = np.dtype(data.dtype).kind
    if kind not in "iuf":
        what = {"c": "complex", "b": "boolean"}.get(kind, str(data.dtype))
        raise TypeError(
            f"{name} hold {what} values ({data.dtype}); counts must be real numbers "
            "(integer or float). Take the real part or convert them (e.g. "
            "s.change_dtype('float32')) if that is what they are.")


#: More negative pixels than this share cannot be noise about a non-negative truth
#: (noise about zero makes at most about half of them negative): an offset.
NEGATIVE_PIXEL_SHARE_LIMIT = 0.75
#: Plain window sums of counts: a pixel below -this x sqrt(the map's 99.9th percentile
#: + 1) is no Poisson fluctuation (that percentile bounds any pixel's expected counts).
NEGATIVE_SIGMA_LIMIT = 5.0
#: Plain window sums of counts: noise-reduced counts dip below 0 only where about none
#: are expected, by about a count; negative pixels averaging below -this are an offset.
NEGATIVE_MEAN_LIMIT_COUNTS = 5.0


def refuse_impossible_negatives(line, stack) -> None:
    """Refuse a line map that counting noise cannot explain.

    Issue 13: one pixel at -1e4 changed the weight fractions by 99 %, an offset of -3 counts per
    channel the reconstruction by 22 %.

    - negative in total (a line that is absent or hidden, or a biased map);
    - more than :data:`NEGATIVE_PIXEL_SHARE_LIMIT` of its pixels negative (an offset:
      noise about zero makes about half negative);
    - window sums of the spectra without background subtraction (which should be
      counts, >= 0): a pixel below ``-NEGATIVE_SIGMA_LIMIT sqrt(p + 1)``, ``p`` the
      map's 99.9th percentile, or negative pixels averaging below
      ``-NEGATIVE_MEAN_LIMIT_COUNTS``. Background-subtracted and fitted maps are spared
      these tests: their noise includes the background's, which the map does not show.

    Parameters
    ----------
    line : LineIntensity
        The map's line and provenance.
    stack : array
        Its in-memory sinogram stack ``(slices, tilts, detector)``.

    Raises
    ------
    ValueError
        Naming the line, what was found and the ways out.
    """
    values = np.asarray(stack, dtype=float)
    name = line.xray_line
    way_out = ("If the spectra were processed (PCA, background removal), pass maps you "
               "trust as intensities=, mask bad pixels with invalid_pixels=, or clip the "
               "spectra at 0 yourself (s.data.clip(min=0)) if the negatives are an artefact")
    total = values.sum()
    if total <= 0:
        found = ("holds no counts at all (every pixel of every tilt is 0)" if not values.any()
                 else f"is negative in total ({total:.4g} counts over every pixel and tilt; "
                 f"{100 * np.mean(values < 0):.0f} % of its pixels negative)")
        raise ValueError(
            f"The {name} map {found}: the line is absent or hidden under another line or "
            f"the background, and its reconstruction would be noise. Drop {name} from the "
            f"lines, or check the spectrum. {way_out}.")
    share = np.mean(values < 0)
    if share > NEGATIVE_PIXEL_SHARE_LIMIT:
        raise ValueError(
            f"{100 * share:.0f} % of the {name} map's pixels are negative (noise about zero "
            f"makes about half negative): the spectra or the map carry a negative offset. "
            f"{way_out}.")
    plain = (line.provenance.get("source") == "integration"
             and "background_windows" not in line.provenance)
    if plain:
        limit = -NEGATIVE_SIGMA_LIMIT * np.sqrt(np.percentile(values, 99.9) + 1.0)
        low = values < limit
        if low.any():
            raise ValueError(
                f"The {name} map (window sums of the spectra, which should be counts) has "
                f"{int(low.sum())} pixel(s) below {limit:.3g}, down to {values.min():.4g}: "
                f"no counting fluctuation reaches that far below zero. {way_out}.")
        negative = values[values < 0]
        if negative.size and negative.mean() < -NEGATIVE_MEAN_LIMIT_COUNTS:
            raise ValueError(
                f"The {name} map (window sums of the spectra, which should be counts) has "
                f"{negative.size} negative pixels averaging {negative.mean():.3g}: counts "
                f"dip below zero by about one where none are expected, so the spectra carry "
                f"a negative offset. {way_out}.")


def refuse_dead_tilts(stacks, tilt_angles_deg) -> None:
    """Refuse tilts at which every line map is zero everywhere.

    A blank frame, or a chunk that was never written and reads back as zeros: the reconstruction
    would take them for "no mass seen from this direction".

    Parameters
    ----------
    stacks : sequence of array
        In-memory sinogram stacks ``(slices, tilts, detector)``, one per line.
    tilt_angles_deg : numpy.ndarray
        The tilts, degrees, in stack order.

    Raises
    ------
    ValueError
        Naming the dead tilts' angles.
    """
    totals = sum(np.abs(np.asarray(stack, dtype=float)).sum(axis=(0, 2)) for stack in stacks)
    dead = np.flatnonzero(totals == 0)
    if dead.size:
        angles = [float(a) for a in np.asarray(tilt_angles_deg)[dead]]
        raise ValueError(
            f"The line maps hold no counts at all at tilt(s) {angles} deg (every line, "
            "every pixel): a blank frame or unread data would be reconstructed as 'no "
            "mass seen from there'. Drop those tilts (e.g. with inav) or re-acquire them.")


def refuse_flat_adf(adf_stack, tilt_angles_deg) -> None:
    """Refuse ADF images with no contrast.

    Every pixel of a tilt the same value (a blank or unread frame, a detector that was off): HEBT
    would fit its ratios on nothing and read the frame as uniform mass.

    Parameters
    ----------
    adf_stack : array
        In-memory ADF sinogram stack ``(slices, tilts, detector)``.
    tilt_angles_deg : numpy.ndarray
        The tilts, degrees, in stack order.

    Raises
    ------
    ValueError
        Naming the flat tilts' angles and their value.
    """
    adf = np.asarray(adf_stack, dtype=float)
    low, high = adf.min(axis=(0, 2)), adf.max(axis=(0, 2))
    flat = np.flatnonzero(high == low)
    if flat.size:
        angles = [float(a) for a in np.asarray(tilt_angles_deg)[flat]]
        raise ValueError(
            f"The ADF image has no contrast at tilt(s) {angles} deg (every pixel "
            f"{low[flat[0]]:g}): a blank or unread frame cannot take part in the ADF model's fit "
            "or its ADF term (HEBT, the fused model). Drop those tilts from both series, or "
            "use an EDS-only method (reconstruct_sirt, reconstruct_poisson_tv).")
