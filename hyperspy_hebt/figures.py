"""Figures and files for reconstructed volumes: orthoslices, a 3D rendering, TIFF stacks.

A volume is a reconstruction or weight-fraction ``Signal2D`` stack as this package
returns it: navigation ``y`` (the rotation axis), signal ``x`` and ``z``; data
``(y, z, x)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["orthoslices", "render_3d", "save_volumes"]


def _volume(signal):
    data = np.asarray(signal.data.compute() if signal._lazy else signal.data, dtype=float)
    if data.ndim != 3:
        raise ValueError(
            f"expected a volume (navigation y | signal x, z), got data of shape {data.shape}."
        )
    return data


def _extent(axis):
    return (axis.low_value - axis.scale / 2, axis.high_value + axis.scale / 2)


def orthoslices(signals: Sequence, vmin=None, vmax=None, cmap: str = "inferno"):
    """Central xz, xy and yz slices of one or more volumes, one row per volume.

    Parameters
    ----------
    signals : sequence of Signal2D
        Volumes on the same grid (e.g. one weight-fraction map per element).
    vmin, vmax : float, optional
        Colour limits (weight fractions: 0 and 1).
    cmap : str
        Matplotlib colour map.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(signals), 3, figsize=(12, 3.6 * len(signals)), squeeze=False)
    for row, signal in zip(axes, signals):
        data = _volume(signal)
        y_axis = signal.axes_manager.navigation_axes[0]
        x_axis, z_axis = signal.axes_manager.signal_axes
        cy, cz, cx = (n // 2 for n in data.shape)
        panels = [
            (data[cy], f"xz at y = {y_axis.axis[cy]:.3g} {y_axis.units}", x_axis, z_axis),
            (data[:, cz, :], f"xy at z = {z_axis.axis[cz]:.3g} {z_axis.units}", x_axis, y_axis),
            (data[:, :, cx], f"yz at x = {x_axis.axis[cx]:.3g} {x_axis.units}", z_axis, y_axis),
        ]
        for ax, (image, where, horizontal, vertical) in zip(row, panels):
            shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower",
                              extent=_extent(horizontal) + _extent(vertical))
            ax.set(title=f"{signal.metadata.General.title}\n{where}",
                   xlabel=f"{horizontal.name} ({horizontal.units})",
                   ylabel=f"{vertical.name} ({vertical.units})")
            fig.colorbar(shown, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def render_3d(signals: Sequence, levels: Sequence[float] | None = None,
              colors: Sequence[str] = ("tab:orange", "tab:blue", "tab:green", "tab:red")):
    """Iso-surfaces of volumes (marching cubes) in one 3D matplotlib view.

    Parameters
    ----------
    signals : sequence of Signal2D
        Volumes on the same grid, e.g. weight fractions per element.
    levels : sequence of float, optional
        Iso-value per volume; default: half of each volume's maximum.
    colors : sequence of str
        One colour per volume.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    from skimage.measure import marching_cubes

    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="3d")
    for i, signal in enumerate(signals):
        data = _volume(signal)
        level = 0.5 * data.max() if levels is None else levels[i]
        if not data.min() < level < data.max():
            continue  # nothing crosses this level
        x_axis, z_axis = signal.axes_manager.signal_axes
        y_axis = signal.axes_manager.navigation_axes[0]
        spacing = (y_axis.scale, z_axis.scale, x_axis.scale)
        vertices, faces, _, _ = marching_cubes(data, level=level, spacing=spacing)
        mesh = Poly3DCollection(vertices[faces][:, :, [2, 1, 0]], alpha=0.35,
                                facecolor=colors[i % len(colors)], edgecolor="none",
                                label=signal.metadata.General.title)
        ax.add_collection3d(mesh)
    shape = _volume(signals[0]).shape
    x_axis, z_axis = signals[0].axes_manager.signal_axes
    y_axis = signals[0].axes_manager.navigation_axes[0]
    ax.set(xlim=(0, shape[2] * x_axis.scale), ylim=(0, shape[1] * z_axis.scale),
           zlim=(0, shape[0] * y_axis.scale), xlabel=f"x ({x_axis.units})",
           ylabel=f"z ({z_axis.units})", zlabel=f"y ({y_axis.units})")
    ax.legend(loc="upper left", fontsize=8)
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
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for signal in signals:
        stem = re.sub(r"[^A-Za-z0-9-]+", "_", signal.metadata.General.title).strip("_")
        for extension in formats:
            path = folder / f"{stem}.{extension}"
            out = signal
            if extension in ("tif", "tiff"):
                out = signal.deepcopy() if not signal._lazy else signal.as_lazy()
                out.change_dtype("float32")
            out.save(path, overwrite=True)
            written.append(path)
    return written
