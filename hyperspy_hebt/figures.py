"""Figures and files for reconstructed volumes: orthoslices, a 3D rendering, TIFF stacks.

A volume is a reconstruction or weight-fraction ``Signal2D`` stack as this package
returns it: navigation ``y`` (the rotation axis), signal ``x`` and ``z``; data
``(y, z, x)``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._units import nm_per_unit

__all__ = ["element_colors", "object_depth_range", "orthoslices", "render_3d", "save_volumes"]


def _volume(signal):
    data = np.asarray(signal.data.compute() if signal._lazy else signal.data, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(
            f"expected a volume (navigation y | signal x, z), got data of shape {data.shape}."
        )
    return data


def _length(axis):
    """(factor, unit) to show an axis in nm when its units are a length."""
    factor = nm_per_unit(axis.units)
    return (factor, "nm") if factor is not None else (1.0, str(axis.units))


def _extent(axis, factor=1.0):
    return ((axis.low_value - axis.scale / 2) * factor,
            (axis.high_value + axis.scale / 2) * factor)


def element_colors(n: int) -> list:
    """``n`` distinct colours (matplotlib's qualitative maps, then evenly spaced hues).

    One per element, never repeated.

    Parameters
    ----------
    n : int
        How many colours (one per element).

    Returns
    -------
    list of tuple
        ``n`` RGBA tuples: tab10 up to 10, tab20 up to 20, evenly spaced hues beyond.

    Examples
    --------
    >>> from hyperspy_hebt.figures import element_colors
    >>> len(element_colors(3))
    3
    """
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n)]
    return [matplotlib.colormaps["hsv"](i / n) for i in range(n)]


def object_depth_range(volumes: Sequence[np.ndarray], margin: float = 0.1) -> slice:
    """Return the ``z`` rows of ``(y, z, x)`` volumes where any volume is non-zero.

    The range is widened by ``margin`` of itself on each side; all rows when none is zero.

    Weight-fraction volumes are 0 outside the object, so a thin lamella's slab,
    as deep as the scan is wide, is cut to the lamella.

    Parameters
    ----------
    volumes : sequence of numpy.ndarray
        ``(y, z, x)`` volumes of one shape (weight fractions: 0 outside the object).
    margin : float
        Widening on each side, as a fraction of the occupied range.

    Returns
    -------
    slice
        The ``z`` rows to show.

    Examples
    --------
    >>> from hyperspy_hebt.figures import object_depth_range
    >>> volume = np.zeros((2, 10, 8))  # (y, z, x)
    >>> volume[:, 3:6, :] = 1
    >>> object_depth_range([volume])  # the object's depth and a margin
    slice(np.int64(2), np.int64(7), None)
    """
    occupied = np.zeros(volumes[0].shape[1], dtype=bool)
    for volume in volumes:
        occupied |= np.any(volume != 0, axis=(0, 2))
    if not occupied.any() or occupied.all():
        return slice(0, occupied.size)
    rows = np.flatnonzero(occupied)
    pad = max(1, int(round(margin * (rows[-1] - rows[0] + 1))))
    return slice(max(0, rows[0] - pad), min(occupied.size, rows[-1] + 1 + pad))


def _colorbar_label(signal) -> str:
    quantity = signal.metadata.get_item("Signal.quantity")
    return str(quantity) if quantity else str(signal.metadata.General.title)


def orthoslices(signals: Sequence, vmin=None, vmax=None, cmap: str = "inferno",
                crop_depth: bool = True):
    """Central xz, xy and yz slices of one or more volumes, one row per volume.

    Lengths are shown in nm (axes in µm or Å are converted), and every colour bar
    says what it shows (``metadata.Signal.quantity``, else the title).

    Parameters
    ----------
    signals : sequence of Signal2D
        Volumes on the same grid (e.g. one weight-fraction map per element).
    vmin, vmax : float, optional
        Colour limits (weight fractions: 0 and 1).
    cmap : str
        Matplotlib colour map.
    crop_depth : bool
        Show only the depth (``z``) range where some volume is non-zero (see
        :func:`object_depth_range`): for a lamella, the lamella, not the whole slab.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt.figures import orthoslices
    >>> fractions = series.quantify_cross_section(
    ...     series.reconstruct_sirt(iterations=20, show_progressbar=False))
    >>> figure = orthoslices(fractions, vmin=0, vmax=1)
    """
    import matplotlib.pyplot as plt

    volumes = [_volume(signal) for signal in signals]
    depth = object_depth_range(volumes) if crop_depth else slice(0, volumes[0].shape[1])
    fig, axes = plt.subplots(len(signals), 3, figsize=(12, 3.6 * len(signals)), squeeze=False)
    for row, signal, data in zip(axes, signals, volumes):
        y_axis = signal.axes_manager.navigation_axes[0]
        x_axis, z_axis = signal.axes_manager.signal_axes
        z_shown = z_axis.axis[depth]
        cy, cx = data.shape[0] // 2, data.shape[2] // 2
        cz = depth.start + (depth.stop - depth.start) // 2
        (fx, ux), (fy, uy), (fz, uz) = _length(x_axis), _length(y_axis), _length(z_axis)
        z_extent = ((z_shown[0] - z_axis.scale / 2) * fz, (z_shown[-1] + z_axis.scale / 2) * fz)
        panels = [
            (data[cy, depth], f"xz at y = {y_axis.axis[cy] * fy:.3g} {uy}",
             ("x", ux, _extent(x_axis, fx)), ("z", uz, z_extent)),
            (data[:, cz, :], f"xy at z = {z_axis.axis[cz] * fz:.3g} {uz}",
             ("x", ux, _extent(x_axis, fx)), ("y", uy, _extent(y_axis, fy))),
            (data[:, depth, cx], f"yz at x = {x_axis.axis[cx] * fx:.3g} {ux}",
             ("z", uz, z_extent), ("y", uy, _extent(y_axis, fy))),
        ]
        for ax, (image, where, horizontal, vertical) in zip(row, panels):
            shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower",
                              extent=horizontal[2] + vertical[2], aspect="equal")
            ax.set(title=f"{signal.metadata.General.title}\n{where}",
                   xlabel=f"{horizontal[0]} ({horizontal[1]})",
                   ylabel=f"{vertical[0]} ({vertical[1]})")
            bar = fig.colorbar(shown, ax=ax, shrink=0.8)
            bar.set_label(_colorbar_label(signal), fontsize=8)
    fig.tight_layout()
    return fig


#: Voxels per axis of the volumes given to marching cubes: the mesh of a noisy
#: full-size volume has millions of faces (tens of GB as matplotlib polygons).
RENDER_VOXELS = 96
#: Faces per iso-surface above which marching cubes takes coarser steps: matplotlib
#: draws every polygon one by one (17 s for five noisy 64^3 surfaces before this cap).
RENDER_FACES = 20000


def _downsampled(data, factor):
    if factor == 1:
        return data
    shape = [n // factor * factor for n in data.shape]
    data = data[: shape[0], : shape[1], : shape[2]]
    return data.reshape(shape[0] // factor, factor, shape[1] // factor, factor,
                        shape[2] // factor, factor).mean(axis=(1, 3, 5))


def render_3d(signals: Sequence, levels: Sequence[float] | None = None,
              colors: Sequence | None = None, max_voxels: int = RENDER_VOXELS,
              crop_depth: bool = True):
    """Iso-surfaces of volumes (marching cubes) in one 3D matplotlib view.

    Parameters
    ----------
    signals : sequence of Signal2D
        Volumes on the same grid, e.g. weight fractions per element.
    levels : sequence of float, optional
        Iso-value per volume; default: half of each volume's maximum.
    colors : sequence, optional
        One colour per volume; default: :func:`element_colors` (never repeated).
    max_voxels : int
        Volumes are averaged in blocks down to at most this many voxels per axis
        before meshing (bounded memory and a readable figure).
    crop_depth : bool
        Mesh only the depth range where some volume is non-zero.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        ``colors`` does not give one colour per volume.

    Notes
    -----
    For a readable figure in bounded memory and time, each volume is smoothed
    (Gaussian, sigma 1 voxel) before meshing, and a surface of more than
    :data:`RENDER_FACES` faces is meshed again with coarser steps.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt.figures import render_3d
    >>> fractions = series.quantify_cross_section(
    ...     series.reconstruct_sirt(iterations=20, show_progressbar=False))
    >>> figure = render_3d(fractions, levels=[0.5, 0.5])
    """
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    if colors is None:
        colors = element_colors(len(signals))
    elif len(colors) < len(signals):
        raise ValueError(f"colors has {len(colors)} entries for {len(signals)} volumes: "
                         "give one colour per volume.")
    volumes = [_volume(signal) for signal in signals]
    depth = object_depth_range(volumes) if crop_depth else slice(0, volumes[0].shape[1])
    factor = max(1, int(np.ceil(max(volumes[0].shape[0], depth.stop - depth.start,
                                    volumes[0].shape[2]) / max_voxels)))
    x_axis, z_axis = signals[0].axes_manager.signal_axes
    y_axis = signals[0].axes_manager.navigation_axes[0]
    (fx, ux), (fy, _), (fz, _) = _length(x_axis), _length(y_axis), _length(z_axis)
    spacing = (y_axis.scale * fy * factor, z_axis.scale * fz * factor, x_axis.scale * fx * factor)
    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="3d")
    shape, skipped = None, []
    for i, (signal, data) in enumerate(zip(signals, volumes)):
        data = gaussian_filter(_downsampled(data[:, depth], factor), 1.0)
        shape = data.shape
        level = 0.5 * data.max() if levels is None else levels[i]
        if not data.min() < level < data.max():
            skipped.append(signal.metadata.General.title)  # nothing crosses this level
            continue
        step = 1
        while True:
            vertices, faces, _, _ = marching_cubes(data, level=level, spacing=spacing,
                                                   step_size=step)
            if len(faces) <= RENDER_FACES or step >= 4:
                break
            step += 1
        mesh = Poly3DCollection(vertices[faces][:, :, [2, 1, 0]], alpha=0.35,
                                facecolor=colors[i], edgecolor="none",
                                label=signal.metadata.General.title)
        ax.add_collection3d(mesh)
    assert shape is not None  # one volume at least (checked by the caller's zip)
    ax.set(xlim=(0, shape[2] * spacing[2]), ylim=(0, shape[1] * spacing[1]),
           zlim=(0, shape[0] * spacing[0]), xlabel=f"x ({ux})", ylabel=f"z ({ux})",
           zlabel=f"y ({ux})")
    ax.set_box_aspect((shape[2] * spacing[2], shape[1] * spacing[1], shape[0] * spacing[0]))
    if len(skipped) < len(signals):
        ax.legend(loc="upper left", fontsize=8)
    if skipped:  # an empty or partial picture says why, rather than nothing
        ax.text2D(0.02, 0.02, "no surface (flat volume): " + ", ".join(skipped),
                  transform=ax.transAxes, fontsize=7)
    return fig


def save_volumes(signals: Sequence, folder, formats: Sequence[str] = ("zspy", "tif")) -> list:
    """Save volumes under their titles, in every format asked for.

    Parameters
    ----------
    signals : sequence of Signal2D
    folder : str or Path
        Created if needed.
    formats : sequence of str
        File extensions rosettasciio writes: ``"zspy"``, ``"hspy"`` (HyperSpy,
        metadata kept) and ``"tif"`` (a float32 stack, one page per ``y`` slice).

    Returns
    -------
    list of Path
        The files written.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> import tempfile
    >>> from hyperspy_hebt.figures import save_volumes
    >>> fractions = series.quantify_cross_section(
    ...     series.reconstruct_sirt(iterations=20, show_progressbar=False))
    >>> for path in save_volumes(fractions, tempfile.mkdtemp(), formats=("zspy", "tif")):
    ...     print(path.name)
    Ag_weight_fraction_SIRT.zspy
    Ag_weight_fraction_SIRT.tif
    Au_weight_fraction_SIRT.zspy
    Au_weight_fraction_SIRT.tif
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for signal in signals:
        stem = re.sub(r"[^A-Za-z0-9-]+", "_", signal.metadata.General.title).strip("_")
        for extension in formats:
            path = folder / f"{stem}.{extension}"
            out = signal
            if extension in ("tif", "tiff") and signal.data.dtype != np.float32:
                # A float32 copy for readers that take no float64; the caller's signal
                # is left as it is (float32 volumes are saved without a copy).
                out = signal.deepcopy() if not signal._lazy else signal.as_lazy()
                out.change_dtype("float32")
            with warnings.catch_warnings():
                # rosettasciio writes .zspy through a zarr-2 store that zarr deprecates:
                # about its code, not the user's; only that message, only here.
                warnings.filterwarnings("ignore", message="The NestedDirectoryStore is deprecated")
                out.save(path, overwrite=True)
            written.append(path)
    return written
