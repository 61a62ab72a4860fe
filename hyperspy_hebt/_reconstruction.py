"""Plumbing between a tilt-series signal and the tomography kernels.

Filters the sinogram stacks, runs a kernel eagerly (batches of slices, with a
progress bar) or as a dask graph (blocks = runs of slices holding every tilt and
channel), and wraps the volumes as ``Signal2D`` stacks with the source's
metadata. SIRT of the EDS lines and of the ADF signal live here; HEBT in
:mod:`hyperspy_hebt._hebt`.
"""

from __future__ import annotations

import copy
import functools

import dask.array as da
import numpy as np

from ._field import slab_support
from ._intensities import LineIntensity, title_of
from ._options import GridOptions, LineSource, RunOptions
from ._problem import Problem, prepare, prepare_adf
from ._version import __version__
from .tomography import get_projector, sirt, validate_sirt_parameters
from .tomography.backends import resolve_backend, validate_backend

_META = np.empty((0, 0, 0, 0), np.float32)


def _sirt_kernel(block, geometry, iterations, relaxation, positivity, weighted=False,
                 backend="cpu", half_thickness_px=None, callback=None):
    """(channels [+ 1], slices, T, D) -> (channels, slices, Z, X), channels independent;
    with ``weighted`` the last channel holds ray weights shared by the others; with
    ``half_thickness_px`` voxels farther from z = 0 are held at 0."""
    weights = None
    if weighted:
        block, weights = block[:-1], block[-1]
    channels, slices = block.shape[:2]
    if weights is not None:
        weights = np.broadcast_to(weights, block.shape).reshape((channels * slices,)
                                                                + block.shape[2:])
    volume = sirt(get_projector(geometry), block.reshape((channels * slices,) + block.shape[2:]),
                  iterations, relaxation, positivity, callback, ray_weights=weights,
                  backend=backend, support=slab_support(geometry, half_thickness_px))
    return volume.reshape((channels, slices) + volume.shape[1:])


def _cropped_to_scan(kernel, geometry):
    """``kernel`` whose volumes keep only the columns under the scan (drop the padding)."""
    if geometry.n_x == geometry.n_detector:
        return kernel
    start = (geometry.n_x - geometry.n_detector) // 2
    columns = slice(start, start + geometry.n_detector)

    def cropped(block, **kwargs):
        return np.ascontiguousarray(kernel(block, **kwargs)[..., columns])

    return cropped


#: Largest volume block (bytes of float32 voxels, every output of a run of slices) a
#: kernel works on: its working set is a few times this, once per dask thread. A
#: lamella's padded grid (3.7x the scan at 60 degrees) with five lines made 64-slice
#: blocks of 311 MB, and the reconstruct command peaked at 2 GB.
BLOCK_VOLUME_BYTES = 64 * 2**20


def block_slices(slices_per_block: int, geometry, n_out: int) -> int:
    """``slices_per_block``, or fewer so that a block's volumes fit
    :data:`BLOCK_VOLUME_BYTES`."""
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
    slices_per_block = block_slices(slices_per_block, geometry, n_out)
    out_chunks = ((n_out,), None, (geometry.n_z,), (geometry.n_detector,))
    if lazy:
        stacked = da.asarray(stacked).rechunk({0: -1, 1: slices_per_block, 2: -1, 3: -1})
        chunks = (out_chunks[0], stacked.chunks[1]) + out_chunks[2:]
        return stacked.map_blocks(kernel, chunks=chunks, dtype=np.float32, meta=_META)
    from hyperspy.external.progressbar import progressbar

    n_slices = stacked.shape[1]
    result = np.empty((n_out, n_slices, geometry.n_z, geometry.n_detector), np.float32)
    starts = range(0, n_slices, slices_per_block)
    with progressbar(total=iterations * len(starts), disable=not show_progressbar,
                     desc=description, leave=False) as bar:
        for start in starts:
            block = slice(start, start + slices_per_block)
            result[:, block] = kernel(stacked[:, block], callback=lambda _: bar.update(1))
    return result


def kernel_backend(backend, lazy: bool) -> str:
    """The ``backend`` the kernels get. Eager work runs here, so "auto" is resolved and
    a missing GPU reported now; a lazy graph's blocks may run on other machines (a
    cluster's GPU workers), so there the name is only checked and each block resolves it
    where it runs."""
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


def reconstruct_sirt(signal, iterations: int, source: LineSource, grid: GridOptions,
                     run: RunOptions) -> list:
    """Implementation of :meth:`TomographicEDSSpectrum.reconstruct_sirt` (a number of
    iterations; ``"auto"`` is :func:`._cross_validation.auto_sirt`)."""
    iterations = validate_sirt_parameters(iterations, run.relaxation)[0]
    problem = prepare(signal, None, source, grid, slices_per_block=run.slices_per_block)
    return sirt_of(signal, problem, iterations, run)


def sirt_of(signal, problem: Problem, iterations: int, run: RunOptions) -> list:
    """SIRT of every line of a prepared problem, as Signal2D stacks of ``signal``."""
    layout, lines, lazy, field = problem.layout, problem.lines, problem.lazy, problem.field
    backend = kernel_backend(run.backend, lazy)
    sinograms, weights = problem.eds, field.weights
    geometry, weighted = field.geometry, weights is not None
    kernel = functools.partial(_sirt_kernel, geometry=geometry, iterations=iterations,
                               relaxation=run.relaxation, positivity=run.positivity,
                               weighted=weighted, backend=backend,
                               half_thickness_px=field.half_thickness_px)
    blocks = functools.partial(run_blocks, kernel, geometry=geometry, lazy=lazy,
                               slices_per_block=run.slices_per_block, iterations=iterations,
                               show_progressbar=run.show_progressbar, description="SIRT")
    extra = [weights] if weighted else []
    if lazy:
        # One graph per line: computing or saving a line runs only its own SIRT.
        volumes = [blocks(da.stack([da.asarray(c) for c in [s] + extra]), n_out=1)[0]
                   for s in sinograms]
    else:
        # Eager: every line in the same batches, one pass over W for all of them.
        volumes = list(blocks(np.stack(sinograms + extra), n_out=len(lines)))
    parameters = base_parameters(layout, "SIRT", iterations, run, problem.sigma, backend)
    parameters.update(field.record)
    return [reconstruction_signal(signal, layout, volume, parameters, line)
            for volume, line in zip(volumes, lines)]


def reconstruct_adf(signal, adf, iterations: int, grid: GridOptions, run: RunOptions):
    """Implementation of :meth:`TomographicEDSSpectrum.reconstruct_adf` (``grid``'s
    filter and thickness are not used: the ADF is the low-noise modality)."""
    iterations = validate_sirt_parameters(iterations, run.relaxation)[0]
    problem = prepare_adf(signal, adf, grid, slices_per_block=run.slices_per_block)
    layout, lazy, field = problem.layout, problem.lazy, problem.field
    backend = kernel_backend(run.backend, lazy)
    weights = field.weights
    kernel = functools.partial(_sirt_kernel, geometry=field.geometry, iterations=iterations,
                               relaxation=run.relaxation, positivity=run.positivity,
                               weighted=weights is not None, backend=backend)
    assert problem.adf is not None
    channels = [problem.adf] + ([] if weights is None else [weights])
    stacked = da.stack([da.asarray(c) for c in channels]) if lazy else np.stack(channels)
    (volume,) = run_blocks(kernel, stacked, 1, field.geometry, lazy=lazy,
                           slices_per_block=run.slices_per_block, iterations=iterations,
                           show_progressbar=run.show_progressbar, description="ADF SIRT")
    parameters = base_parameters(layout, "SIRT", iterations, run, None, backend)
    parameters.update(field.record)
    parameters["signal"] = "ADF"
    parameters["adf_title"] = title_of(adf)
    return reconstruction_signal(signal, layout, volume, parameters, None)


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
