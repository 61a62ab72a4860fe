"""SIRT of a tilt series' line maps and of its ADF series (paper Eq. 10-11).

From a prepared problem (:mod:`.problem`) to ``Signal2D`` stacks (:mod:`.blocks`).
"""

from __future__ import annotations

import functools

import dask.array as da
import numpy as np

from ..tomography import sirt, validate_sirt_parameters
from .absorption import corrected
from .blocks import (
    base_parameters,
    independent_channels,
    kernel_backend,
    line_volumes,
    reconstruction_signal,
    run_blocks,
)
from .intensities import title_of
from .options import Absorption, GridOptions, LineSource, RunOptions
from .problem import Problem, prepare, prepare_adf
from .uncertainty import add_uncertainty


def reconstruct_sirt(signal, iterations: int, source: LineSource, grid: GridOptions,
                     run: RunOptions, absorption: Absorption | None = None,
                     detector_efficiency=1.0) -> list:
    """Implement :meth:`TomographicEDSSpectrum.reconstruct_sirt`.

    A number of iterations; ``"auto"`` is :func:`.auto.auto_sirt`. With
    ``absorption.correction`` the passes of :func:`.absorption.corrected`.
    """
    iterations = validate_sirt_parameters(iterations, run.relaxation)[0]
    correct = absorption is not None and bool(absorption.correction)
    problem = prepare(signal, None, source, grid, slices_per_block=run.slices_per_block,
                      compute=correct, variance=run.bootstrap is not None)
    if correct:
        assert absorption is not None
        return corrected(signal, problem, lambda p, count: sirt_of(signal, p, count, run),
                         iterations, absorption, run, detector_efficiency)
    return sirt_of(signal, problem, iterations, run)


def sirt_of(signal, problem: Problem, iterations: int, run: RunOptions) -> list:
    """SIRT of every line of a prepared problem, as Signal2D stacks of ``signal``."""
    layout, lines, field = problem.layout, problem.lines, problem.field
    backend = kernel_backend(run.backend, problem.lazy)
    solve = functools.partial(sirt, iterations=iterations, relaxation=run.relaxation,
                              positivity=run.positivity, backend=backend)
    volumes = line_volumes(solve, problem, run, iterations, "SIRT")
    parameters = base_parameters(layout, "SIRT", iterations, run, problem.sigma, backend)
    parameters.update(field.record)
    return add_uncertainty([reconstruction_signal(signal, layout, volume, parameters, line)
                            for volume, line in zip(volumes, lines)],
                           solve, problem, run, iterations, "SIRT", poisson=False)


def reconstruct_adf(signal, adf, iterations: int, grid: GridOptions, run: RunOptions):
    """Implement :meth:`TomographicEDSSpectrum.reconstruct_adf`.

    ``grid``'s filter and thickness are not used: the ADF is the low-noise modality.
    """
    iterations = validate_sirt_parameters(iterations, run.relaxation)[0]
    problem = prepare_adf(signal, adf, grid, slices_per_block=run.slices_per_block)
    layout, lazy, field = problem.layout, problem.lazy, problem.field
    backend = kernel_backend(run.backend, lazy)
    weights = field.weights
    solve = functools.partial(sirt, iterations=iterations, relaxation=run.relaxation,
                              positivity=run.positivity, backend=backend)
    kernel = functools.partial(independent_channels, solve, geometry=field.geometry,
                               weighted=weights is not None)
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
