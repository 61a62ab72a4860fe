"""Plumbing between a tilt-series signal and the tomography kernels.

Finds the tilt, slice and scan axes, gets line intensities (exspy integration
or the user's), filters them, runs the kernel eagerly (with a progress bar) or
as a dask graph (blocks = runs of slices holding every tilt), and wraps the
volumes as ``Signal2D`` stacks with the source's metadata.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import dask.array as da
import numpy as np
import scipy.ndimage as ndi

from ._version import __version__
from .tilt_series import get_tilt_axis
from .tomography import ParallelBeamGeometry, get_projector, sirt, validate_sirt_parameters
from .tomography.geometry import validate_tilt_angles

_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default, fixes the overlap depth


@dataclass
class TiltSeriesLayout:
    """Which array axes of a tilt series are slice, tilt and scan (detector).

    Positions are array indices of the navigation part of ``signal.data``; a
    navigation-shaped array (a line-intensity map) uses the same positions.
    """

    tilt_axis: object
    slice_axis: object | None
    detector_axis: object
    tilt_angles_deg: np.ndarray

    @classmethod
    def from_signal(cls, signal, rotation_axis: str = "y") -> "TiltSeriesLayout":
        nav = signal.axes_manager.navigation_axes
        if len(nav) not in (2, 3):
            raise ValueError(
                "A tilt series needs navigation axes (x, y, tilt) or (x, tilt); this "
                f"signal has navigation shape {signal.axes_manager.navigation_shape} "
                f"with axes {[a.name for a in nav]}."
            )
        tilt = get_tilt_axis(signal)
        if tilt is None:
            raise ValueError(
                f"No navigation axis is named 'tilt' (axes: {[a.name for a in nav]}); "
                "set the angles with set_tilt_angles(angles) or stack_tilt_series."
            )
        angles = validate_tilt_angles(np.asarray(tilt.axis, float), name="tilt axis values")
        spatial = [a for a in nav if a is not tilt]
        if len(spatial) == 1:
            slice_axis, detector = None, spatial[0]
        else:
            if not isinstance(rotation_axis, str):
                raise TypeError(
                    f"rotation_axis must be the name of a navigation axis, got {rotation_axis!r}."
                )
            named = [a for a in spatial if a.name == rotation_axis]
            if len(named) != 1:
                raise ValueError(
                    f"rotation_axis={rotation_axis!r} must name exactly one spatial "
                    f"navigation axis; the spatial axes are {[a.name for a in spatial]}."
                )
            slice_axis = named[0]
            detector = spatial[0] if spatial[1] is slice_axis else spatial[1]
        if not detector.is_uniform:
            raise ValueError(
                f"The scan axis '{detector.name}' must be uniform (equal beam steps) "
                "for parallel-beam tomography."
            )
        return cls(tilt, slice_axis, detector, angles)

    @property
    def n_slices(self) -> int:
        return 1 if self.slice_axis is None else self.slice_axis.size

    def geometry(self) -> ParallelBeamGeometry:
        n = self.detector_axis.size
        return ParallelBeamGeometry(tuple(self.tilt_angles_deg), n_detector=n, n_x=n, n_z=n)

    def to_stack(self, array):
        """Navigation-shaped array -> sinogram stack ``(slices, tilts, detector)``."""
        order = [self.tilt_axis.index_in_array, self.detector_axis.index_in_array]
        if self.slice_axis is None:
            return array.transpose(order)[None]
        return array.transpose([self.slice_axis.index_in_array] + order)

    def sigma_in_stack_order(self, gaussian_sigma):
        """Gaussian sigma per stack axis (slice, tilt, detector), or None."""
        if gaussian_sigma is None:
            return None
        names = {self.tilt_axis.name: 1, self.detector_axis.name: 2}
        if self.slice_axis is not None:
            names[self.slice_axis.name] = 0
        if isinstance(gaussian_sigma, dict):
            sigma = [0.0, 0.0, 0.0]
            for key, value in gaussian_sigma.items():
                if key not in names:
                    raise ValueError(
                        f"gaussian_sigma has key {key!r}; keys must be navigation axis "
                        f"names {sorted(names)}."
                    )
                sigma[names[key]] = _non_negative(value, f"gaussian_sigma[{key!r}]")
        else:
            value = _non_negative(gaussian_sigma, "gaussian_sigma")
            sigma = [value if self.slice_axis is not None else 0.0, 0.0, value]
        return None if not any(sigma) else tuple(sigma)


def _non_negative(value, name):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number of pixels, got {value!r}.") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (pixels), got {value}.")
    return value


@dataclass
class LineIntensity:
    xray_line: str
    data: object  # numpy or dask array, navigation-shaped
    provenance: dict


def line_intensities(signal, xray_lines, intensities, integration_windows, background_windows):
    """Line-intensity maps, one per X-ray line, navigation-shaped."""
    nav_shape = signal.data.shape[:-1]
    if intensities is not None:
        return _user_intensities(signal, xray_lines, intensities, nav_shape)
    if xray_lines is not None and (isinstance(xray_lines, (str, dict))
                                   or not hasattr(xray_lines, "__iter__")):
        raise TypeError(
            f"xray_lines must be a list of line names such as ['Ag_La'], got {xray_lines!r}."
        )
    requested = None if xray_lines is None else list(xray_lines)
    lines = signal._parse_xray_lines(requested, only_one=True, only_lines=("a",))
    if requested is not None and list(lines) != requested:
        missing = [line for line in requested if line not in lines]
        raise ValueError(
            f"xray_lines {missing} are not within the energy axis "
            f"({signal.axes_manager.signal_axes[0].low_value}-"
            f"{signal.axes_manager.signal_axes[0].high_value} "
            f"{signal.axes_manager.signal_axes[0].units})."
        )
    if len(lines) == 0:
        raise ValueError(
            "No X-ray lines to reconstruct: call add_elements/add_lines or pass xray_lines."
        )
    if np.ndim(integration_windows) == 0:
        windows = signal.estimate_integration_windows(
            windows_width=float(integration_windows), xray_lines=lines
        )
    else:
        windows = np.asarray(integration_windows, dtype=float)
        if windows.shape != (len(lines), 2):
            raise ValueError(
                f"integration_windows must be a number or an array of shape "
                f"({len(lines)}, 2) (one [start, end] per line of {lines}), got shape "
                f"{windows.shape}."
            )
    if isinstance(background_windows, str):
        if background_windows != "auto":
            raise ValueError(
                f"background_windows must be None, 'auto' or an array of shape "
                f"({len(lines)}, 4), got {background_windows!r}."
            )
        background_windows = signal.estimate_background_windows(xray_lines=lines)
    elif background_windows is not None:
        background_windows = np.asarray(background_windows, dtype=float)
        if background_windows.shape != (len(lines), 4):
            raise ValueError(
                f"background_windows must be None, 'auto' or an array of shape "
                f"({len(lines)}, 4), got shape {background_windows.shape}."
            )
    maps = signal.get_lines_intensity(
        xray_lines=lines,
        integration_windows=[list(map(float, w)) for w in windows],
        background_windows=background_windows,
        plot_result=False,
    )
    units = signal.axes_manager.signal_axes[0].units
    out = []
    for i, (line, image) in enumerate(zip(lines, maps)):
        provenance = {
            "source": "integration",
            "integration_window": [float(v) for v in windows[i]],
            "energy_units": units,
        }
        if background_windows is not None:
            provenance["background_windows"] = [float(v) for v in background_windows[i]]
        out.append(LineIntensity(line, image.data, provenance))
    return out


def _user_intensities(signal, xray_lines, intensities, nav_shape):
    from hyperspy.signal import BaseSignal

    if isinstance(intensities, (str, dict)) or not hasattr(intensities, "__len__"):
        raise TypeError(
            "intensities must be a list of signals or arrays, one per X-ray line, "
            f"got {type(intensities).__name__}."
        )
    if len(intensities) == 0:
        raise ValueError("intensities is empty: give one line-intensity map per X-ray line.")
    if xray_lines is not None and len(xray_lines) != len(intensities):
        raise ValueError(
            f"xray_lines has {len(xray_lines)} names for {len(intensities)} intensities."
        )
    out = []
    for i, item in enumerate(intensities):
        data = item.data if isinstance(item, BaseSignal) else item
        if not isinstance(data, (np.ndarray, da.Array)):
            raise TypeError(
                f"intensities[{i}] must be a HyperSpy signal or an array, got "
                f"{type(item).__name__}."
            )
        if tuple(data.shape) != tuple(nav_shape):
            raise ValueError(
                f"intensities[{i}] has data shape {tuple(data.shape)}; it must match this "
                f"signal's navigation {tuple(nav_shape)} (array order, e.g. (tilt, y, x))."
            )
        if xray_lines is not None:
            line = xray_lines[i]
        elif isinstance(item, BaseSignal) and len(item.metadata.get_item("Sample.xray_lines", [])) == 1:
            line = item.metadata.Sample.xray_lines[0]
        else:
            raise ValueError(
                f"intensities[{i}] has no single metadata.Sample.xray_lines entry: pass "
                "xray_lines to name the line of each intensity map."
            )
        if isinstance(data, np.ndarray) and not np.all(np.isfinite(data)):
            raise ValueError(f"intensities[{i}] ({line}) contains NaN or infinite values.")
        out.append(LineIntensity(str(line), data, {"source": "user"}))
    return out


def _filter_block(block, sigma):
    return ndi.gaussian_filter(block, sigma=sigma, truncate=_TRUNCATE, mode="reflect")


def _sirt_block(block, geometry, iterations, relaxation, positivity):
    return sirt(get_projector(geometry), block, iterations, relaxation, positivity)


def _lazy_sinograms(stack, sigma, slices_per_block):
    stack = da.asarray(stack).astype(np.float32).rechunk({0: slices_per_block, 1: -1, 2: -1})
    if sigma is None:
        return stack
    depth = {0: int(_TRUNCATE * sigma[0] + 0.5), 1: 0, 2: 0}
    return stack.map_overlap(
        _filter_block, depth=depth, boundary="none", sigma=sigma, dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )


def _eager_sinograms(stack, sigma):
    stack = np.asarray(stack, dtype=np.float32)
    return stack if sigma is None else _filter_block(stack, sigma)


def run_sirt(layout, lines, *, iterations, relaxation, positivity, lazy, show_progressbar,
             slices_per_block, sigma):
    """Volumes ``(slices, n_z, n_x)`` for each line (numpy or dask)."""
    geometry = layout.geometry()
    stacks = [layout.to_stack(line.data) for line in lines]
    kernel = functools.partial(
        _sirt_block, geometry=geometry, iterations=iterations, relaxation=relaxation,
        positivity=positivity,
    )
    if lazy:
        volumes = []
        for stack in stacks:
            sinograms = _lazy_sinograms(stack, sigma, slices_per_block)
            volumes.append(sinograms.map_blocks(
                kernel, chunks=(sinograms.chunks[0], (geometry.n_z,), (geometry.n_x,)),
                dtype=np.float32, meta=np.empty((0, 0, 0), np.float32),
            ))
        return volumes
    sinograms = np.concatenate([_eager_sinograms(s, sigma) for s in stacks], axis=0)
    result = np.empty((sinograms.shape[0], geometry.n_z, geometry.n_x), np.float32)
    starts = range(0, sinograms.shape[0], slices_per_block)
    from hyperspy.external.progressbar import progressbar

    projector = get_projector(geometry)
    with progressbar(total=iterations * len(starts), disable=not show_progressbar,
                     desc="SIRT", leave=False) as bar:
        for start in starts:
            block = slice(start, start + slices_per_block)
            result[block] = sirt(projector, sinograms[block], iterations, relaxation,
                                 positivity, callback=lambda _: bar.update(1))
    n = layout.n_slices
    return [result[i * n:(i + 1) * n] for i in range(len(lines))]


def reconstruct_sirt(signal, *, iterations, xray_lines, intensities, integration_windows,
                     background_windows, gaussian_sigma, relaxation, positivity,
                     show_progressbar, rotation_axis, slices_per_block):
    """Implementation of :meth:`TomographicEDSSpectrum.reconstruct_sirt`."""
    iterations, relaxation = validate_sirt_parameters(iterations, relaxation)
    if isinstance(slices_per_block, bool) or not isinstance(slices_per_block, (int, np.integer)) \
            or slices_per_block < 1:
        raise ValueError(f"slices_per_block must be a positive integer, got {slices_per_block!r}.")
    layout = TiltSeriesLayout.from_signal(signal, rotation_axis)
    sigma = layout.sigma_in_stack_order(gaussian_sigma)
    if show_progressbar is None:
        from hyperspy.defaults_parser import preferences

        show_progressbar = preferences.General.show_progressbar
    lines = line_intensities(signal, xray_lines, intensities, integration_windows,
                             background_windows)
    volumes = run_sirt(
        layout, lines, iterations=iterations, relaxation=relaxation, positivity=positivity,
        lazy=signal._lazy, show_progressbar=show_progressbar,
        slices_per_block=int(slices_per_block), sigma=sigma,
    )
    parameters = {
        "algorithm": "SIRT",
        "iterations": iterations,
        "relaxation": relaxation,
        "positivity": bool(positivity),
        "tilt_angles_deg": layout.tilt_angles_deg.tolist(),
        "rotation_axis": layout.slice_axis.name if layout.slice_axis is not None else "",
        "scan_axis": layout.detector_axis.name,
        "projector": "parallel beam, Joseph linear interpolation",
        "gaussian_sigma": _sigma_description(layout, sigma),
        "package": f"hyperspy_hebt {__version__}",
    }
    return [
        reconstruction_signal(signal, layout, volume, line, parameters)
        for volume, line in zip(volumes, lines)
    ]


def _sigma_description(layout, sigma):
    if sigma is None:
        return {}
    axes = [layout.slice_axis, layout.tilt_axis, layout.detector_axis]
    return {axis.name: float(s) for axis, s in zip(axes, sigma) if axis is not None and s}


def reconstruction_signal(source, layout, volume, line: LineIntensity, parameters: dict):
    """Wrap a volume ``(slices, n_z, n_x)`` as a Signal2D stack of ``source``."""
    from hyperspy.signals import LazySignal2D, Signal2D

    detector = layout.detector_axis
    n_z = volume.shape[1]
    x_axis = detector.get_axis_dictionary()
    x_axis["navigate"] = False
    z_axis = {
        "name": "z", "units": detector.units, "size": n_z, "scale": detector.scale,
        "offset": -(n_z - 1) / 2 * detector.scale, "navigate": False,
    }
    axes = [z_axis, x_axis]
    data = volume
    if layout.slice_axis is None:
        data = volume[0]
    else:
        y_axis = layout.slice_axis.get_axis_dictionary()
        y_axis["navigate"] = True
        axes.insert(0, y_axis)
    metadata = copy.deepcopy(source.metadata.as_dictionary())
    metadata.pop("_HyperSpy", None)
    element = line.xray_line.split("_")[0]
    metadata.setdefault("General", {})["title"] = (
        f"{parameters['algorithm']} reconstruction of {line.xray_line}"
    )
    metadata.setdefault("Signal", {})["signal_type"] = ""
    metadata["Signal"]["quantity"] = f"{line.xray_line} intensity per voxel"
    metadata.setdefault("Sample", {})["elements"] = [element]
    metadata["Sample"]["xray_lines"] = [line.xray_line]
    reconstruction = dict(parameters)
    reconstruction["xray_line"] = line.xray_line
    reconstruction["intensities"] = dict(line.provenance)
    metadata["Reconstruction"] = reconstruction
    cls = LazySignal2D if isinstance(data, da.Array) else Signal2D
    signal = cls(data, axes=axes, metadata=metadata,
                 original_metadata=source.original_metadata.as_dictionary())
    return signal
