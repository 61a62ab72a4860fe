"""Running a kernel over a tilt series and wrapping its volumes as signals.

Runs a kernel eagerly (batches of slices, with a progress bar) or as a dask graph
(blocks = runs of slices holding every tilt and channel), bounds the volume each
block holds, and wraps the volumes as ``Signal2D`` stacks with the source's metadata
and the reconstruction record. Shared by SIRT (:mod:`.sirt`) and HEBT (:mod:`.hebt`).
"""

from __future__ import annotations

import copy
import functools

import dask.array as da
import numpy as np

from .._version import __version__
from ..tomography.backends import resolve_backend, validate_backend
from .intensities import LineIntensity
from .options import RunOptions

_META = np.empty((0, 0, 0, 0), np.float32)


def _cropped_to_scan(kernel, geometry):
    """Wrap ``kernel`` so that its volumes keep only the columns under the scan.

    The padding is dropped as the kernel copies its iterate out, not after.
    """
    if geometry.n_x == geometry.n_detector:
        return kernel
    start = (geometry.n_x - geometry.n_detector) // 2
    return functools.partial(kernel, columns=slice(start, start + geometry.n_detector))


#: Largest volume block (bytes of float32 voxels, every output of a run of slices) a
#: kernel works on: its working set is a few times this, once per dask thread. A
#: lamella's padded grid (3.7x the scan at 60 degrees) with five lines made 64-slice
#: blocks of 311 MB, and the reconstruct command peaked at 2 GB.
BLOCK_VOLUME_BYTES = 64 * 2**20


def block_slices(slices_per_block: int, geometry, n_out: int) -> int:
    """``slices_per_block``, or fewer so that a block's volumes fit :data:`BLOCK_VOLUME_BYTES`."""
    per_slice = geometry.n_x * geometry.n_z * max(1, n_out) * 4
    return max(1, min(int(slices_per_block), BLOCK_VOLUME_BYTES // per_slice))


def run_blocks(kernel, stacked, n_out, geometry, *, lazy, slices_per_block, iterations,
               show_progressbar, description):
    """Run ``kernel`` on runs of slices of ``stacked`` ``(channels, slices, T, D)``.

    Returns ``(n_out, slices, n_z, n_detector)``: a dask array built with
    ``map_blocks`` (one block per run of slices, every channel and tilt in it) for
    lazy input, else a numpy array computed batch by batch with a progress bar.
    Columns of a grid padded beyond the scan are cropped. A run holds at most
    ``slices_per_block`` slices, fewer when its volumes would pass
    :data:`BLOCK_VOLUME_BYTES` (bounded memory on large, padded grids).
    """
    kernel = _cropped_to_scan(kernel, geometry)
    width = geometry.n_detector
    slices_per_block = block_slices(slices_per_block, geometry, n_out)
    out_chunks = ((n_out,), None, (geometry.n_z,), (width,))
    if lazy:
        stacked = da.asarray(stacked).rechunk({0: -1, 1: slices_per_block, 2: -1, 3: -1})
        chunks = (out_chunks[0], stacked.chunks[1]) + out_chunks[2:]
        return stacked.map_blocks(kernel, chunks=chunks, dtype=np.float32, meta=_META)
    from hyperspy.external.progressbar import progressbar

    n_slices = stacked.shape[1]
    result = np.empty((n_out, n_slices, geometry.n_z, width), np.float32)
    starts = range(0, n_slices, slices_per_block)
    with progressbar(total=iterations * len(starts), disable=not show_progressbar,
                     desc=description, leave=False) as bar:
        for start in starts:
            block = slice(start, start + slices_per_block)
            result[:, block] = kernel(stacked[:, block], callback=lambda _: bar.update(1))
    return result


def independent_channels(solve, block, geometry, weighted=False, half_thickness_px=None,
                         columns=None, callback=None):
    """(channels [+ 1], slices, T, D) -> (channels, slices, Z, X), one kernel call.

    ``solve(projector, sinograms, callback=, ray_weights=, support=, columns=)`` is a
    slice-stack kernel (``sirt``, ``mlem``, ``poisson_tv`` with their own settings bound);
    it gets the channels' slices channel-major, and treats them as independent unless its
    settings couple them (``poisson_tv``'s ``joint_channels``).
    With ``weighted`` the last channel holds ray weights shared by the others, or with
    ``weighted="per_channel"`` the second half of the channels holds each one's own (the
    absorption correction's, :attr:`.problem.Problem.line_weights`); with
    ``half_thickness_px`` voxels farther from z = 0 are held at 0.
    """
    from ..tomography import get_projector
    from ..tomography.geometry import slab_support

    weights = None
    if weighted == "per_channel":
        half = block.shape[0] // 2
        block, weights = block[:half], block[half:]
    elif weighted:
        block, weights = block[:-1], block[-1]
    channels, slices = block.shape[:2]
    if weights is not None:
        weights = np.broadcast_to(weights, block.shape).reshape((channels * slices,)
                                                                + block.shape[2:])
    volume = solve(get_projector(geometry),
                   block.reshape((channels * slices,) + block.shape[2:]), callback=callback,
                   ray_weights=weights, support=slab_support(geometry, half_thickness_px),
                   columns=columns)
    return volume.reshape((channels, slices) + volume.shape[1:])


def line_volumes(solve, problem, run: RunOptions, iterations: int, description: str,
                 joint: bool = False) -> list:
    """Every line of a prepared problem through ``solve`` (see :func:`independent_channels`).

    Lazy: one graph per line (computing or saving a line runs only its own solver), or with
    ``joint`` (a solver that couples the lines) one graph for all of them; eager: every line
    in the same batches, one pass over ``W`` for all of them.
    """
    field = problem.field
    weights = field.weights
    per_line = problem.line_weights is not None
    kernel = functools.partial(independent_channels, solve, geometry=field.geometry,
                               weighted="per_channel" if per_line else weights is not None,
                               half_thickness_px=field.half_thickness_px)
    extra = [weights] if weights is not None else []
    blocks = functools.partial(run_blocks, kernel, geometry=field.geometry, lazy=problem.lazy,
                               slices_per_block=run.slices_per_block, iterations=iterations,
                               show_progressbar=run.show_progressbar, description=description)
    if per_line:  # each line with its own weights, after the maps
        own = [problem.ray_weights(i) for i in range(len(problem.lines))]
        if problem.lazy and not joint:
            return [blocks(da.stack([da.asarray(s), da.asarray(w)]), n_out=1)[0]
                    for s, w in zip(problem.eds, own)]
        channels = list(problem.eds) + own
        stacked = (da.stack([da.asarray(c) for c in channels]) if problem.lazy
                   else np.stack([np.asarray(c, np.float32) for c in channels]))
        volumes = blocks(stacked, n_out=len(problem.lines))
        return [volumes[i] for i in range(len(problem.lines))]
    if problem.lazy and joint:
        stacked = blocks(da.stack([da.asarray(c) for c in problem.eds + extra]),
                         n_out=len(problem.lines))
        return [stacked[i] for i in range(len(problem.lines))]
    if problem.lazy:
        return [blocks(da.stack([da.asarray(c) for c in [s] + extra]), n_out=1)[0]
                for s in problem.eds]
    return list(blocks(np.stack(problem.eds + extra), n_out=len(problem.lines)))


def kernel_backend(backend, lazy: bool) -> str:
    """The ``backend`` the kernels get.

    Eager work runs here, so "auto" is resolved and a missing GPU reported now; a lazy graph's
    blocks may run on other machines (a cluster's GPU workers), so there the name is only checked
    and each block resolves it where it runs.
    """
    return validate_backend(backend) if lazy else resolve_backend(backend)


def base_parameters(layout, algorithm, iterations, run: RunOptions, sigma, backend):
    """Reconstruction metadata shared by every algorithm."""
    return {
        "backend": backend,
        "algorithm": algorithm,
        "iterations": iterations,
        "relaxation": run.relaxation,
        "positivity": run.positivity,
        "tilt_angles_deg": layout.tilt_angles_deg.tolist(),
        "rotation_axis": layout.slice_axis.name if layout.slice_axis is not None else "",
        "scan_axis": layout.detector_axis.name,
        "projector": "parallel beam, Joseph linear interpolation",
        "gaussian_sigma": _sigma_description(layout, sigma),
        "package": f"hyperspy_hebt {__version__}",
    }


def _sigma_description(layout, sigma):
    if sigma is None:
        return {}
    axes = [layout.slice_axis, layout.tilt_axis, layout.detector_axis]
    return {axis.name: float(s) for axis, s in zip(axes, sigma) if axis is not None and s}


def reconstruction_signal(source, layout, volume, parameters: dict,
                          line: LineIntensity | None, label: str = "the ADF signal"):
    """Wrap a volume ``(slices, n_z, n_x)`` as a Signal2D stack of ``source``.

    ``line`` None marks a volume with no X-ray line (the ADF signal, or HEBT's
    unlisted mass), named by ``label``.
    """
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
    label = label if line is None else line.xray_line
    metadata.setdefault("General", {})["title"] = (
        f"{parameters['algorithm']} reconstruction of {label}"
    )
    metadata.setdefault("Signal", {})["signal_type"] = ""
    reconstruction = dict(parameters)
    if line is None:
        metadata["Signal"]["quantity"] = "ADF intensity per voxel"
        metadata.get("Sample", {}).pop("xray_lines", None)
    else:
        element = line.xray_line.split("_")[0]
        metadata["Signal"]["quantity"] = f"{line.xray_line} intensity per voxel"
        metadata.setdefault("Sample", {})["elements"] = [element]
        metadata["Sample"]["xray_lines"] = [line.xray_line]
        reconstruction["xray_line"] = line.xray_line
        reconstruction["intensities"] = dict(line.provenance)
    metadata["Reconstruction"] = reconstruction
    cls = LazySignal2D if isinstance(data, da.Array) else Signal2D
    original = source.original_metadata.as_dictionary()
    # Every tilt's full metadata (HyperSpy's stack) stays with the series: repeated in
    # every volume it was 700+ entries per file (a real Bruker file has far more),
    # most of the time spent saving. What differs between tilts is in tilt_series.
    original.pop("stack_elements", None)
    return cls(data, axes=axes, metadata=metadata, original_metadata=original)
