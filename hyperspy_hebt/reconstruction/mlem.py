"""ML-EM / OS-EM of a tilt series' line maps (Poisson likelihood; issue 16).

From a prepared problem (:mod:`.problem`) to ``Signal2D`` stacks (:mod:`.blocks`), block by
block like SIRT (:mod:`.sirt`): lazy for a lazy series, computable on a cluster.
"""

from __future__ import annotations

import functools

import dask
import dask.array as da
import numpy as np

from ..tomography import get_projector
from ..tomography.geometry import slab_support
from ..tomography.mlem import mlem, validate_mlem_parameters
from .blocks import base_parameters, reconstruction_signal, run_blocks
from .options import AUTO, GridOptions, HebtModel, LineSource, RunOptions
from .problem import Problem, prepare


def _mlem_kernel(block, geometry, iterations, subsets, weighted=False,
                 half_thickness_px=None, columns=None, callback=None):
    """(channels [+ 1], slices, T, D) -> (channels, slices, Z, X), channels independent.

    With ``weighted`` the last channel holds ray weights shared by the others.
    """
    weights = None
    if weighted:
        block, weights = block[:-1], block[-1]
    channels, slices = block.shape[:2]
    if weights is not None:
        weights = np.broadcast_to(weights, block.shape).reshape((channels * slices,)
                                                                + block.shape[2:])
    volume = mlem(get_projector(geometry),
                  block.reshape((channels * slices,) + block.shape[2:]), iterations,
                  subsets, callback, ray_weights=weights,
                  support=slab_support(geometry, half_thickness_px), columns=columns)
    return volume.reshape((channels, slices) + volume.shape[1:])


#: Iteration counts "auto" scores (ML-EM is at its best earlier than SIRT on noisy maps).
AUTO_MLEM_ITERATIONS = (5, 10, 20, 50, 100, 200)


def counting_problem(signal, source: LineSource, grid: GridOptions, run: RunOptions,
                     method: str) -> Problem:
    """The prepared series for a Poisson method: its maps in memory and checked >= 0.

    The maps are brought into memory (one pass over the spectra) to check them here,
    naming the line, rather than in a dask block at compute time.
    """
    problem = prepare(signal, None, source, grid, slices_per_block=run.slices_per_block,
                      compute=True)
    lowest = dask.compute(*[s.min() for s in problem.eds])
    for line, low in zip(problem.names, lowest):
        if low < 0:
            raise ValueError(
                f"The {line} map holds negative counts (lowest {float(low):g}): {method}'s "
                "Poisson likelihood needs counts >= 0. Background-subtracted maps dip below "
                "0 by noise: reconstruct them with reconstruct_sirt, or give maps without "
                "background subtraction (intensities=, background_windows=None).")
    return problem


def reconstruct_mlem(signal, iterations, subsets: int, source: LineSource,
                     grid: GridOptions, run: RunOptions) -> list:
    """Implement :meth:`TomographicEDSSpectrum.reconstruct_mlem`.

    ``iterations="auto"``: each line at the ML-EM iteration count that best predicts
    held-out tilts (Poisson deviance, :func:`.auto.cross_validate_problem` on
    :data:`.auto.AUTO_SLICES` slices), recorded in ``Reconstruction.CrossValidation``.
    """
    from .auto import AUTO_SLICES, auto_folds, cross_validate_problem, metadata_of

    assert not isinstance(iterations, str) or iterations == AUTO  # checked_iterations
    problem = counting_problem(signal, source, grid, run, "ML-EM")
    if not isinstance(iterations, str):
        return mlem_of(signal, problem, iterations, subsets, run)
    result = cross_validate_problem(
        signal, problem, methods=("mlem",), iterations=AUTO_MLEM_ITERATIONS, alphas=(),
        holdout=auto_folds(len(signal.tilt_angles)), score="poisson", slices=AUTO_SLICES,
        model=HebtModel(), run=run, stop_early=True)
    record = metadata_of(result)
    out = []
    for index, name in enumerate(problem.names):
        (rec,) = mlem_of(signal, problem.only(index), result.best_per_line[name]["iterations"],
                         subsets, run)
        rec.metadata.set_item("Reconstruction.CrossValidation", record)
        out.append(rec)
    return out


def mlem_of(signal, problem: Problem, iterations: int, subsets: int, run: RunOptions) -> list:
    """ML-EM of every line of a prepared problem, as Signal2D stacks of ``signal``."""
    layout, field = problem.layout, problem.field
    geometry = field.geometry
    iterations, subsets = validate_mlem_parameters(iterations, subsets, geometry.n_tilts)
    weights = field.weights
    kernel = functools.partial(_mlem_kernel, geometry=geometry, iterations=iterations,
                               subsets=subsets, weighted=weights is not None,
                               half_thickness_px=field.half_thickness_px)
    extra = [weights] if weights is not None else []
    if problem.lazy:
        volumes = [run_blocks(kernel, da.stack([da.asarray(c) for c in [s] + extra]), 1,
                              geometry, lazy=True, slices_per_block=run.slices_per_block,
                              iterations=iterations, show_progressbar=run.show_progressbar,
                              description="ML-EM")[0]
                   for s in problem.eds]
    else:
        volumes = list(run_blocks(kernel, np.stack(problem.eds + extra), len(problem.lines),
                                  geometry, lazy=False, slices_per_block=run.slices_per_block,
                                  iterations=iterations, show_progressbar=run.show_progressbar,
                                  description="ML-EM"))
    parameters = base_parameters(layout, "ML-EM", iterations, run, problem.sigma, "cpu")
    # Multiplicative updates: no relaxation, positive by construction.
    parameters.pop("relaxation")
    parameters["positivity"] = "by construction (multiplicative updates)"
    parameters["subsets"] = subsets
    parameters["likelihood"] = "Poisson (ML-EM, Shepp and Vardi 1982" + (
        f"; ordered subsets, Hudson and Larkin 1994: {subsets} interleaved groups of "
        "tilts)" if subsets > 1 else ")")
    parameters.update(field.record)
    return [reconstruction_signal(signal, layout, volume, parameters, line)
            for volume, line in zip(volumes, problem.lines)]
