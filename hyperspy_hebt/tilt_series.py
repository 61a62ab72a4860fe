"""Tilt-series assembly: the ``tilt`` navigation axis and :func:`stack_tilt_series`.

Tilt angles live in a navigation axis named ``tilt`` (units ``degrees``), never
only in metadata: real files often carry one wrong ``Stage.tilt_alpha``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .tomography.geometry import validate_tilt_angles

__all__ = ["TILT_AXIS_NAME", "apply_tilt_angles", "get_tilt_axis", "rebin_keeping_tilts",
           "stack_tilt_series", "standardise_scan_axes"]

TILT_AXIS_NAME = "tilt"
TILT_AXIS_UNITS = "degrees"
SIGNAL_TYPE = "EDS_TEM_Tomography"


#: Scan-axis names that readers give, and the name this package uses for each.
#: rosettasciio's Bruker reader says width/height; Velox and HyperSpy's own files say x/y.
SCAN_AXIS_ALIASES = {"width": "x", "height": "y", "x": "x", "y": "y"}


def _spatial_axes(signal):
    """The spatial axes (navigation or signal, never tilt or energy), fastest first."""
    axes = [a for a in signal.axes_manager._axes
            if a.name != TILT_AXIS_NAME and not (signal.axes_manager.signal_dimension == 1
                                                 and not a.navigate)]
    return sorted(axes, key=lambda a: -a.index_in_array)


def standardise_scan_axes(signal) -> dict:
    """Rename the scan axes that a reader named its own way to ``x`` and ``y`` (in place).

    rosettasciio's Bruker reader names the scan axes ``width`` and ``height``;
    this package (alignment, ``rotation_axis="y"``) works with ``x`` (the fast
    scan direction) and ``y``. Names are matched case-insensitively against
    :data:`SCAN_AXIS_ALIASES`; HyperSpy's unnamed axes (``<undefined>``) are
    named by position (the fastest ``x``). Other names are left alone.

    Parameters
    ----------
    signal : BaseSignal
        A spectrum image (navigation: the scan), an image (signal: the scan) or
        a stack of either along ``tilt``.

    Returns
    -------
    dict
        ``{old name: new name}`` for every axis renamed (empty when none was).

    Raises
    ------
    ValueError
        When the renaming would give two axes one name (a file that calls its
        fast axis ``height``, say), which would silently swap the scan directions.

    Examples
    --------
    Bruker's reader names the scan axes ``width`` and ``height``:

    >>> from hyperspy_hebt.tilt_series import standardise_scan_axes
    >>> signal = hs.signals.Signal1D(np.zeros((2, 3, 4, 8)))
    >>> for axis, name in zip(signal.axes_manager.navigation_axes, ("width", "height", "tilt")):
    ...     axis.name = name
    >>> standardise_scan_axes(signal)
    {'width': 'x', 'height': 'y'}
    >>> [axis.name for axis in signal.axes_manager.navigation_axes]
    ['x', 'y', 'tilt']
    """
    spatial = _spatial_axes(signal)
    if len(spatial) not in (1, 2):
        return {}
    targets = []
    for position, axis in enumerate(spatial):
        name = str(axis.name)
        if name.lower() in SCAN_AXIS_ALIASES:
            targets.append(SCAN_AXIS_ALIASES[name.lower()])
        elif name in ("<undefined>", "", "None"):
            targets.append("xy"[position])
        else:
            targets.append(name)
    if len(set(targets)) != len(targets):
        raise ValueError(
            f"The scan axes {[a.name for a in spatial]} (fastest first) would both be named "
            f"{targets}; rename them to 'x' (fast scan) and 'y' yourself, e.g. "
            "s.axes_manager[0].name = 'x'."
        )
    mapping = {}
    for position, (axis, target) in enumerate(zip(spatial, targets)):
        if axis.name != target:
            name = str(axis.name)
            if name in ("<undefined>", "", "None"):
                name = f"unnamed axis {position} (fastest first)"
            mapping[name] = target
            axis.name = target
    return mapping


def get_tilt_axis(signal):
    """Return the navigation axis named ``tilt``, or ``None``.

    Parameters
    ----------
    signal : BaseSignal

    Returns
    -------
    hyperspy.axes.DataAxis or None

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> from hyperspy_hebt.tilt_series import get_tilt_axis
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> axis = get_tilt_axis(acquisition.series)
    >>> axis.name, axis.size
    ('tilt', 31)
    """
    for axis in signal.axes_manager.navigation_axes:
        if axis.name == TILT_AXIS_NAME:
            return axis
    return None


def apply_tilt_angles(signal, tilt_angles_deg) -> None:
    """Write tilt angles into ``signal``'s tilt axis (in place).

    The tilt axis is the navigation axis named ``tilt``; if there is none, the
    slowest navigation axis (HyperSpy's last) is renamed ``tilt``. Equally
    spaced angles give a uniform axis, others a non-uniform ``DataAxis``.

    Parameters
    ----------
    signal : BaseSignal
        Modified in place: its tilt axis gets the angles.
    tilt_angles_deg : array-like of float
        One angle per tilt, degrees, strictly increasing.

    Raises
    ------
    ValueError
        No navigation axis, wrong count, or invalid angles (see
        :func:`~hyperspy_hebt.tomography.geometry.validate_tilt_angles`), or
        angles that are not strictly increasing.

    Examples
    --------
    >>> from hyperspy_hebt.tilt_series import apply_tilt_angles
    >>> signal = hs.signals.Signal1D(np.zeros((3, 4, 8)))  # 3 tilts of 4 pixels
    >>> apply_tilt_angles(signal, [-30, 0, 30])  # the slowest navigation axis becomes "tilt"
    >>> signal.axes_manager["tilt"].axis
    array([-30.,   0.,  30.])
    """
    angles = validate_tilt_angles(tilt_angles_deg, name="tilt_angles")
    axis = get_tilt_axis(signal)
    if axis is None:
        if signal.axes_manager.navigation_dimension == 0:
            raise ValueError(
                "The signal has no navigation axis to hold tilt angles; stack the "
                "per-tilt spectrum images with stack_tilt_series."
            )
        axis = signal.axes_manager.navigation_axes[-1]
    if axis.size != angles.size:
        raise ValueError(
            f"tilt_angles has {angles.size} values but the tilt axis "
            f"('{axis.name}') has {axis.size} tilts."
        )
    if angles.size > 1 and np.any(np.diff(angles) <= 0):
        raise ValueError(
            "tilt_angles must be strictly increasing along the tilt axis, got "
            f"{angles.tolist()}. To reorder the data by angle, build the series "
            "with stack_tilt_series, which sorts it."
        )
    steps = np.diff(angles)
    uniform = angles.size == 1 or np.allclose(steps, steps[0], rtol=0, atol=1e-9)
    if uniform:
        if not axis.is_uniform:
            axis.convert_to_uniform_axis()
            axis = signal.axes_manager[axis.index_in_axes_manager]
        axis.offset = float(angles[0])
        axis.scale = float(steps[0]) if angles.size > 1 else 1.0
    else:
        if axis.is_uniform:
            axis.convert_to_non_uniform_axis()
            axis = signal.axes_manager[axis.index_in_axes_manager]
        axis.axis = angles.copy()
    axis.name = TILT_AXIS_NAME
    axis.units = TILT_AXIS_UNITS


def rebin_keeping_tilts(signal, rebin=None, **kwargs):
    """Rebin a signal whose ``tilt`` axis may be non-uniform.

    HyperSpy refuses to rebin any signal with a non-uniform axis (its check
    indexes the factors in array order), even with a factor of 1 along it. The
    tilt axis is never binned: this bins a view whose tilt axis is uniform and
    puts the angles back. The signal itself is not modified.

    Parameters
    ----------
    signal : BaseSignal
    rebin : callable, optional
        ``rebin(signal, **kwargs)`` doing the binning; default ``signal.rebin``.
    **kwargs
        ``new_shape`` or ``scale`` (axes-manager order), ``crop``, ``dtype``, ``out``.

    Returns
    -------
    BaseSignal
        The binned signal, its ``tilt`` axis carrying the original angles.

    Raises
    ------
    NotImplementedError
        A binning factor other than 1 along a non-uniform ``tilt`` axis.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> from hyperspy_hebt.tilt_series import rebin_keeping_tilts
    >>> binned = rebin_keeping_tilts(acquisition.series, scale=(2, 1, 1, 1))  # 2 x along x
    >>> binned.axes_manager.navigation_shape, binned.tilt_angles[:2]
    ((12, 2, 31), array([-75., -70.]))
    """
    rebin = rebin or (lambda target, **kw: target.rebin(**kw))
    tilt = get_tilt_axis(signal)
    if tilt is None or tilt.is_uniform:
        return rebin(signal, **kwargs)
    index = tilt.index_in_axes_manager
    scale, new_shape = kwargs.get("scale"), kwargs.get("new_shape")
    if (scale is not None and len(scale) > index and scale[index] != 1) or (
        new_shape is not None and len(new_shape) > index and new_shape[index] != tilt.size
    ):
        raise NotImplementedError(
            "Rebinning along the non-uniform 'tilt' axis would average tilt angles; "
            "only the spatial and energy axes can be rebinned."
        )
    angles = np.array(tilt.axis, dtype=float)
    view = signal._deepcopy_with_new_data(signal.data)
    view.axes_manager[index].convert_to_uniform_axis()
    result = rebin(view, **kwargs)
    apply_tilt_angles(kwargs["out"] if kwargs.get("out") is not None else result, angles)
    return result


def stack_tilt_series(spectra: Sequence, tilt_angles: Sequence[float] | np.ndarray,
                      lazy: bool | None = None):
    """Stack one EDS spectrum image per tilt into a tomographic tilt series.

    Parameters
    ----------
    spectra : sequence of EDSTEMSpectrum (or any 1D-signal HyperSpy signal)
        One spectrum image per tilt, navigation ``(x, y)`` or ``(x,)`` for a
        single scan line, signal: energy. Eager or lazy. They are not modified.
    tilt_angles : sequence of float
        Tilt angle of each spectrum image in degrees, in the same order as
        ``spectra``: finite, distinct, ``|angle| < 90``.
    lazy : bool, optional
        Force a lazy (``True``) or eager (``False``) result; by default the
        result is lazy when any input is.

    Returns
    -------
    TomographicEDSSpectrum or LazyTomographicEDSSpectrum
        Navigation ``(x, y, tilt)`` (array shape ``(tilt, y, x, energy)``),
        sorted by increasing angle. Scan axes that the reader named its own way
        (``width``/``height``) are renamed ``x``/``y``
        (:func:`standardise_scan_axes`), recorded under
        ``original_metadata.tilt_series.renamed_axes``. ``metadata`` holds the values all tilts
        share; values that differ between tilts are removed from it and listed
        per tilt (in sorted order) under
        ``original_metadata.tilt_series.per_tilt_metadata``; every tilt's full
        metadata is under ``original_metadata.stack_elements`` (HyperSpy's
        ``stack``). ``original_metadata.tilt_series.acquisition_order`` gives the
        position of each sorted tilt in ``spectra``.

    Raises
    ------
    ValueError
        Wrong number of angles; duplicated, non-finite or ``|angle| >= 90``
        angles; spectrum images that differ in shape, spatial calibration or
        energy axis.
    TypeError
        An element of ``spectra`` is not a HyperSpy signal with one signal axis.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt import stack_tilt_series
    >>> spectra = [series.inav[:, :, i] for i in (15, 14, 16)]  # 0, -5 and 5 degrees
    >>> stacked = stack_tilt_series(spectra, [0.0, -5.0, 5.0])
    >>> stacked.tilt_angles  # sorted, the spectra with them
    array([-5.,  0.,  5.])
    """
    import hyperspy.api as hs

    spectra = list(spectra)
    if len(spectra) == 0:
        raise ValueError("spectra is empty: give one spectrum image per tilt.")
    angles = validate_tilt_angles(tilt_angles, name="tilt_angles")
    if angles.size != len(spectra):
        raise ValueError(
            f"tilt_angles has {angles.size} values for {len(spectra)} spectrum images; "
            "give exactly one angle per spectrum image."
        )
    for i, spectrum in enumerate(spectra):
        _check_is_spectrum_image(spectrum, i, angles[i])
    reference = spectra[0]
    for i, spectrum in enumerate(spectra[1:], start=1):
        _check_same_layout(reference, spectrum, i, angles[i])

    order = np.argsort(angles, kind="stable")
    ordered = [spectra[i] for i in order]
    stacked = hs.stack(ordered, new_axis_name=TILT_AXIS_NAME, lazy=lazy, stack_metadata=True)
    per_tilt = _differing_metadata(ordered)
    for path in per_tilt:
        if stacked.metadata.has_item(path):
            _delete_item(stacked.metadata, path)
    stacked.metadata.General.title = f"Tilt series of {ordered[0].metadata.General.title}".strip()
    stacked.set_signal_type(SIGNAL_TYPE)
    apply_tilt_angles(stacked, angles[order])
    renamed = standardise_scan_axes(stacked)
    node = "tilt_series"
    stacked.original_metadata.set_item(f"{node}.acquisition_order", order.tolist())
    if renamed:
        stacked.original_metadata.set_item(f"{node}.renamed_axes", renamed)
    for path, values in per_tilt.items():
        stacked.original_metadata.set_item(f"{node}.per_tilt_metadata.{path}", values)
    return stacked


def _check_is_spectrum_image(spectrum, index, angle):
    from hyperspy.signal import BaseSignal

    where = f"spectra[{index}] (tilt {angle:g} deg)"
    if not isinstance(spectrum, BaseSignal):
        raise TypeError(f"{where} must be a HyperSpy signal, got {type(spectrum).__name__}.")
    if spectrum.axes_manager.signal_dimension != 1:
        raise TypeError(
            f"{where} must have one signal axis (energy), got "
            f"{spectrum.axes_manager.signal_dimension}."
        )
    if spectrum.axes_manager.navigation_dimension not in (1, 2):
        raise ValueError(
            f"{where} must be a spectrum image with navigation (x, y) or a line "
            f"scan (x,), got navigation shape {spectrum.axes_manager.navigation_shape}."
        )


def _axis_description(axis):
    if axis.is_uniform:
        return (axis.name, axis.units, axis.size, float(axis.scale), float(axis.offset))
    return (axis.name, axis.units, axis.size, tuple(np.asarray(axis.axis, float)))


def _same_description(a, b):
    if len(a) != len(b) or a[:3] != b[:3]:
        return False
    return bool(np.allclose(_flatten_numbers(a[3:]), _flatten_numbers(b[3:]),
                            rtol=1e-6, atol=1e-12))


def _flatten_numbers(values):
    out = []
    for v in values:
        out.extend(v if isinstance(v, tuple) else [v])
    return np.asarray(out, dtype=float)


def _check_same_layout(reference, spectrum, index, angle):
    where = f"spectra[{index}] (tilt {angle:g} deg)"
    if spectrum.data.shape != reference.data.shape:
        raise ValueError(
            f"{where} has data shape {spectrum.data.shape} but spectra[0] has "
            f"{reference.data.shape}; every tilt must have the same scan size and "
            "energy channels (crop or rebin first)."
        )
    ref_energy = _axis_description(reference.axes_manager.signal_axes[0])
    energy = _axis_description(spectrum.axes_manager.signal_axes[0])
    if not _same_description(ref_energy, energy):
        raise ValueError(
            f"{where} has energy axis (name, units, size, scale, offset) {energy} but "
            f"spectra[0] has {ref_energy}; recalibrate so that all tilts share one energy axis."
        )
    for ref_axis, axis in zip(reference.axes_manager.navigation_axes,
                              spectrum.axes_manager.navigation_axes):
        ref_d, d = _axis_description(ref_axis), _axis_description(axis)
        if not _same_description(ref_d, d):
            raise ValueError(
                f"{where} has navigation axis (name, units, size, scale, offset) {d} "
                f"but spectra[0] has {ref_d}; every tilt must share the spatial calibration."
            )


def _flatten_tree(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(_flatten_tree(value, path))
        else:
            flat[path] = value
    return flat


def _values_equal(a, b):
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except Exception:  # values numpy cannot compare (mixed objects)
        return a == b


_MISSING = "<missing>"


def _differing_metadata(spectra):
    """Map metadata paths whose value differs between spectra to per-tilt values."""
    flats = [_flatten_tree(s.metadata.as_dictionary()) for s in spectra]
    paths = sorted(set().union(*flats))
    differing = {}
    for path in paths:
        if path.startswith("_HyperSpy") or path == "General.title":
            continue
        values = [flat.get(path, _MISSING) for flat in flats]
        if not all(_values_equal(values[0], v) for v in values[1:]):
            differing[path] = values
    return differing


def _delete_item(tree, path):
    parent, _, leaf = path.rpartition(".")
    node = tree.get_item(parent) if parent else tree
    delattr(node, leaf)
