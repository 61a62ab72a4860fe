"""Per-voxel uncertainty of a reconstruction by parametric bootstrap (issue 16).

Why a parametric bootstrap about the fitted projections and not a tilt jackknife:
leaving a tilt out changes the missing wedge and the angular sampling, so a jackknife's
spread mixes the counting noise with the geometry's own artefacts, and it is biased for
semi-converged iterative estimators. Repeating the measurement's noise about the
reconstruction's own projections and reconstructing each repeat exactly like the data
(same iterations, positivity, filter, grid and weights) measures the spread of the
estimator itself.

1. The fitted projections ``y_fit = W x`` (``x`` on the full, padded grid).
2. ``replicates`` repeats of the maps. Least-squares methods (SIRT): ``y_fit`` plus
   Gaussian noise of the measured maps' variance (the spectra's Poisson statistics
   through the integration, :func:`.intensities.integration_variance`), filtered like
   the maps. Poisson methods (ML-EM, Poisson + TV): Poisson counts of mean ``y_fit``,
   filtered like the maps. One generator per (seed, line, replicate, slice): eager and
   lazy runs draw the same noise.
3. Each repeat reconstructed; the per-voxel sample variance over the repeats.

What it does not hold: bias (a semi-converged SIRT's blur, the missing wedge), and
systematic errors (alignment, the physics factors, an absorption correction's factors,
which are taken as exact).
"""

from __future__ import annotations

import functools
from dataclasses import replace

import dask.array as da
import numpy as np

from ..filtering import filtered_sinograms
from .blocks import block_slices, independent_channels, line_volumes
from .options import Bootstrap, RunOptions
from .problem import Problem

_META = np.empty((0, 0, 0, 0), np.float32)


def _projections_kernel(solve, block, geometry, weighted, half_thickness_px):
    """(channels [+ 1], slices, T, D) -> the reconstructions projected (weights dropped)."""
    from ..tomography import get_projector

    volumes = independent_channels(solve, block, geometry, weighted, half_thickness_px)
    channels, slices = volumes.shape[:2]
    projected = get_projector(geometry).forward(
        volumes.reshape((channels * slices,) + volumes.shape[2:]))
    return projected.reshape((channels, slices) + projected.shape[1:])


def fitted_projections(solve, problem: Problem, run: RunOptions) -> list:
    """Each line's reconstruction, projected: ``W x`` with ``x`` on the whole padded grid.

    Numpy stacks for an eager problem, dask graphs (one per line, chunked by slices)
    for a lazy one.
    """
    field = problem.field
    weights = field.weights
    kernel = functools.partial(_projections_kernel, solve, geometry=field.geometry,
                               weighted=weights is not None,
                               half_thickness_px=field.half_thickness_px)
    extra = [] if weights is None else [weights]
    per_block = block_slices(run.slices_per_block, field.geometry, len(problem.eds))
    if problem.lazy:
        out = []
        for stack in problem.eds:
            stacked = da.stack([da.asarray(c) for c in [stack] + extra]).rechunk(
                {0: -1, 1: per_block, 2: -1, 3: -1})
            chunks = ((1,),) + stacked.chunks[1:]
            out.append(stacked.map_blocks(kernel, chunks=chunks, dtype=np.float32,
                                          meta=_META)[0])
        return out
    stacked = np.stack([np.asarray(c, np.float32) for c in problem.eds + extra])
    result = np.empty((len(problem.eds),) + stacked.shape[1:], np.float32)
    for start in range(0, stacked.shape[1], per_block):
        block = slice(start, start + per_block)
        result[:, block] = kernel(stacked[:, block])
    return list(result)


def _noise(block, *, seed, line, replicate, poisson, block_info=None):
    """Noise of one run of slices: Poisson counts of mean ``block``, or N(0, ``block``).

    One generator per slice, seeded by its index in the whole stack, so a run's noise
    does not depend on how the stack is chunked.
    """
    first = 0 if block_info is None else block_info[0]["array-location"][0][0]
    out = np.empty(block.shape, np.float32)
    for i in range(block.shape[0]):
        rng = np.random.default_rng([seed, line, replicate, first + i])
        if poisson:
            out[i] = rng.poisson(np.maximum(block[i], 0.0))
        else:
            out[i] = rng.standard_normal(block.shape[1:]) * np.sqrt(block[i])
    return out


def replicate_maps(problem: Problem, fitted: list, replicate: int, seed: int, poisson: bool,
                   line_ids: list) -> list:
    """The maps (filtered like ``problem.eds``) of one bootstrap repeat of the measurement.

    ``line_ids`` number the problem's lines in the whole series (they seed the noise).
    """
    out = []
    weights = problem.field.weights
    slices_per_block = problem.eds[0].chunksize[0] if problem.lazy else 1
    for index, mean in enumerate(fitted):
        source = mean if poisson else problem.variance[index]  # type: ignore[index]
        draw = functools.partial(_noise, seed=seed, line=line_ids[index],
                                 replicate=replicate, poisson=poisson)
        if problem.lazy:
            source = da.asarray(source).rechunk({0: slices_per_block, 1: -1, 2: -1})
            noise = source.map_blocks(draw, dtype=np.float32)
        else:
            noise = draw(np.asarray(source, np.float32))
        filtered = filtered_sinograms(noise, problem.sigma, problem.lazy, slices_per_block,
                                      weights)
        out.append(filtered if poisson else mean + filtered)
    return out


def bootstrap_variances(solve, problem: Problem, run: RunOptions, iterations: int,
                        description: str, poisson: bool) -> list:
    """Per-voxel variance of each line's reconstruction, over ``run.bootstrap`` repeats.

    Parameters
    ----------
    solve : callable
        The slice-stack kernel with its settings bound, as for :func:`.blocks.line_volumes`.
    problem : Problem
        The prepared series; ``problem.variance`` is needed unless ``poisson``.
    run : RunOptions
        With ``bootstrap`` set.
    iterations : int
        For the progress bar.
    description : str
        The method's name, for the progress bar.
    poisson : bool
        Poisson repeats of the fitted counts (ML-EM, Poisson + TV) instead of Gaussian
        noise of the maps' variance (SIRT).

    Returns
    -------
    list
        One variance volume per line ``(slices, n_z, n_detector)``, float32, numpy or dask
        like the reconstructions.
    """
    from hyperspy.external.progressbar import progressbar

    bootstrap = run.bootstrap
    assert bootstrap is not None
    quiet = replace(run, show_progressbar=False, bootstrap=None)
    count = bootstrap.replicates
    volumes = functools.partial(line_volumes, solve, run=quiet, iterations=iterations,
                                description=description)
    fitted = fitted_projections(solve, problem, quiet)
    if problem.lazy:
        out = []
        for line in range(len(problem.lines)):
            single = problem.only(line)
            repeats = [volumes(replace(single, eds=replicate_maps(
                single, [fitted[line]], b, bootstrap.seed, poisson, [line])))[0]
                for b in range(count)]
            out.append(_sample_variance(repeats))
        return out
    # Eager: a running sum about the first repeat (the spread is shift-invariant; centring
    # keeps float32 sums exact enough), two volumes held besides the current repeat.
    first = sums = squares = None
    with progressbar(total=count, disable=not run.show_progressbar,
                     desc=f"{description} bootstrap", leave=False) as bar:
        for b in range(count):
            repeat = np.stack(volumes(replace(problem, eds=replicate_maps(
                problem, fitted, b, bootstrap.seed, poisson,
                list(range(len(fitted)))))))
            if first is None:
                first, sums, squares = repeat, np.zeros_like(repeat), np.zeros_like(repeat)
            else:
                repeat -= first
                sums += repeat
                squares += repeat * repeat
            bar.update(1)
    assert sums is not None and squares is not None
    return list(np.maximum((squares - sums * sums / count) / (count - 1), 0.0))


def _sample_variance(repeats: list):
    """Per-voxel sample variance of dask volumes, summed about the first."""
    first = repeats[0]
    deviations = [r - first for r in repeats[1:]]
    sums = functools.reduce(lambda a, b: a + b, deviations)
    squares = functools.reduce(lambda a, b: a + b, [d * d for d in deviations])
    count = len(repeats)
    return da.maximum((squares - sums * sums / count) / (count - 1), 0.0).astype(np.float32)


def record(bootstrap: Bootstrap, poisson: bool) -> dict:
    """``metadata.Reconstruction.Uncertainty``: how the variance was estimated."""
    count = bootstrap.replicates
    return {
        "method": "parametric bootstrap about the fitted projections",
        "replicates": count,
        "seed": bootstrap.seed,
        "noise": ("Poisson counts of mean the fitted projections" if poisson else
                  "Gaussian, the measured maps' variance (Poisson statistics of the spectra "
                  "through the integration, or the maps' Noise_properties.variance)"),
        "variance": "metadata.Signal.Noise_properties.variance: sample variance per voxel "
                    "over the replicates, counts squared per voxel",
        "relative_precision_of_std": float(1.0 / np.sqrt(2.0 * (count - 1))),
        "not_included": "bias (semi-convergence blur, the missing wedge) and systematic "
                        "errors (alignment, physics factors, absorption factors)",
    }


def attach(signals: list, variances: list, parameters: dict) -> None:
    """Give each reconstruction its variance signal and the bootstrap's record."""
    from hyperspy.signals import LazySignal2D, Signal2D

    for signal, variance in zip(signals, variances):
        cls = LazySignal2D if isinstance(variance, da.Array) else Signal2D
        axes = [a.get_axis_dictionary() for a in signal.axes_manager._axes]
        title = signal.metadata.General.title
        holder = cls(variance, axes=axes,
                     metadata={"General": {"title": f"Variance of {title}"},
                               "Signal": {"quantity": "variance (counts squared per voxel)"}})
        signal.metadata.set_item("Signal.Noise_properties.variance", holder)
        signal.metadata.set_item("Reconstruction.Uncertainty", parameters)


def add_uncertainty(signals: list, solve, problem: Problem, run: RunOptions, iterations: int,
                    description: str, poisson: bool) -> list:
    """Attach the bootstrap's per-voxel variance to ``signals`` when ``run.bootstrap`` asks."""
    if run.bootstrap is None:
        return signals
    variances = bootstrap_variances(solve, problem, run, iterations, description, poisson)
    attach(signals, variances, record(run.bootstrap, poisson))
    return signals
