"""Export of reconstructions and weight fractions for other tools (tomviz).

:func:`save_tomviz_emd` writes several volumes of one grid (one per element, say) into a
single EMD file (the Berkeley "Electron Microscopy Dataset" 0.2 layout that tomviz reads
and writes): the first volume is the EMD node's ``data``, the others are extra scalar
arrays in its ``tomviz_scalars`` group, so tomviz opens one volume with one channel per
element. rosettasciio reads the file too (the first volume, with its calibration).

Volumes are written a block of slices at a time, so a lazy volume is never held whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dask.array as da
import numpy as np

from ._units import nm_per_unit

__all__ = ["save_tomviz_emd"]

#: Slices (along the rotation axis) written per block.
BLOCK_SLICES = 16


def _channel_name(signal, index: int) -> str:
    elements = signal.metadata.get_item("Sample.elements", [])
    name = elements[0] if len(elements) == 1 else signal.metadata.General.title
    name = str(name).replace("/", "_").strip() or f"channel {index}"
    return name


def _grid(signal) -> tuple:
    """The volume's axes as (name, size, scale, offset, units), in array order."""
    return tuple((a.name, a.size, float(a.scale), float(a.offset), str(a.units))
                 for a in signal.axes_manager._axes)


def save_tomviz_emd(signals: Sequence, path, overwrite: bool = False,
                    block_slices: int = BLOCK_SLICES) -> Path:
    """Write volumes of one grid into one tomviz-readable EMD file, a channel each.

    Parameters
    ----------
    signals : sequence of Signal2D
        Reconstructions or weight-fraction maps as the reconstruct methods and
        ``quantify_cross_section`` return them (navigation axis ``y``, signal axes ``x``
        and ``z``), all on the same grid; eager or lazy. Each channel is named by the
        signal's element (its title when it has not exactly one).
    path : str or Path
        The ``.emd`` file to write.
    overwrite : bool
        Replace an existing file (default: refuse).
    block_slices : int
        Slices written per block (memory: one block of one volume at a time).

    Returns
    -------
    Path
        The file written. In it: root attributes ``version_major`` 0 and
        ``version_minor`` 2; the group ``/data/tomography`` (``emd_group_type`` 1) with
        the first volume as ``data`` (attribute ``name``), the coordinates ``dim1``,
        ``dim2``, ``dim3`` of x, y and z in nanometres (units ``[n_m]``, tomviz's
        spelling; the axes' own units when they are no length), and every volume in
        ``tomviz_scalars`` (the first as a soft link to ``data``). The arrays are
        ``(x, y, z)``, z fastest, as tomviz lays them out.

    Raises
    ------
    ValueError
        No signal, signals on different grids or not 3D, two with the same channel
        name, or an existing file without ``overwrite``.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> import tempfile
    >>> from hyperspy_hebt import save_tomviz_emd
    >>> fractions = series.quantify_cross_section(
    ...     series.reconstruct_sirt(iterations=20, show_progressbar=False))
    >>> path = save_tomviz_emd(fractions, tempfile.mkdtemp() + "/fractions.emd")
    >>> import h5py
    >>> with h5py.File(path, "r") as f:
    ...     print(list(f["data/tomography/tomviz_scalars"]))
    ['Ag', 'Au']
    """
    import h5py

    signals = list(signals)
    if not signals:
        raise ValueError("signals is empty: give at least one volume to export.")
    grid = _grid(signals[0])
    if len(grid) != 3:
        raise ValueError(f"signals must be volumes (3 axes), got {len(grid)} axes in "
                         f"{signals[0]}.")
    for i, signal in enumerate(signals[1:], start=1):
        if _grid(signal) != grid:
            raise ValueError(f"signals[{i}] is on another grid than signals[0] ({_grid(signal)} "
                             f"vs {grid}): export the volumes of one reconstruction together.")
    names = [_channel_name(s, i) for i, s in enumerate(signals)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"Two volumes would share the channel name(s) {repeated}: give "
                         "them distinct elements or titles.")
    if isinstance(block_slices, bool) or not isinstance(block_slices, (int, np.integer)) \
            or block_slices < 1:
        raise ValueError(f"block_slices must be a positive integer, got {block_slices!r}.")
    path = Path(path)
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists: pass overwrite=True to replace it.")
    # Array order (y, z, x) -> tomviz's (x, y, z).
    by_name = {a[0]: a for a in grid}
    order = [by_name.get("x", grid[2]), by_name.get("y", grid[0]), by_name.get("z", grid[1])]
    axis_index = {a[0]: i for i, a in enumerate(grid)}
    transpose = tuple(axis_index[a[0]] for a in order)
    shape = tuple(a[1] for a in order)
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        node = f.create_group("data").create_group("tomography")
        node.attrs["emd_group_type"] = 1
        for k, (axis_name, size, scale, offset, units) in enumerate(order, start=1):
            factor = nm_per_unit(units)
            values = offset + scale * np.arange(size)
            dim = node.create_dataset(f"dim{k}", data=(values * (factor or 1.0)).astype(
                np.float32))
            dim.attrs["name"] = axis_name
            dim.attrs["units"] = "[n_m]" if factor is not None else units
        scalars = node.create_group("tomviz_scalars")
        for index, (signal, name) in enumerate(zip(signals, names)):
            dtype = np.float32 if signal.data.dtype.kind == "f" else signal.data.dtype
            target = (node.create_dataset("data", shape=shape, dtype=dtype) if index == 0
                      else scalars.create_dataset(name, shape=shape, dtype=dtype))
            if index == 0:
                target.attrs["name"] = name
                scalars[name] = h5py.SoftLink("/data/tomography/data")
            _write_blocks(signal.data, target, transpose, axis_index.get("y", 0),
                          int(block_slices))
    return path


def _write_blocks(data, target, transpose, slice_axis: int, block_slices: int) -> None:
    """``target[...] = data.transpose(transpose)``, a block of slices at a time."""
    n = data.shape[slice_axis]
    destination_axis = transpose.index(slice_axis)
    for start in range(0, n, block_slices):
        stop = min(n, start + block_slices)
        source = [slice(None)] * data.ndim
        source[slice_axis] = slice(start, stop)
        block = data[tuple(source)]
        if isinstance(block, da.Array):
            block = block.compute()
        placed = [slice(None)] * data.ndim
        placed[destination_axis] = slice(start, stop)
        target[tuple(placed)] = np.asarray(block, target.dtype).transpose(transpose)
