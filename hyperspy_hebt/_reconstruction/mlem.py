"""ML-EM / OS-EM of a tilt series' line maps (Poisson likelihood; issue 16).

From a prepared problem (:mod:`.problem`) to ``Signal2D`` stacks (:mod:`.blocks`), block by
block like SIRT (:mod:`.sirt`): lazy for a lazy series, computable on a cluster.
"""

from __future__ import annotations

import functools

import dask

from ..tomography.mlem import mlem, validate_mlem_parameters
from .absorption import corrected
from .blocks import base_parameters, kernel_backend, line_volumes, reconstruction_signal
from .options import AUTO, Absorption, GridOptions, HebtModel, LineSource, RunOptions
from .problem import Problem, prepare
from .uncertainty import add_uncertainty

#: Iteration counts "auto" scores (ML-EM is at its best earlier than SIRT on noisy maps).
AUTO_MLEM_ITERATIONS = (5, 10, 20, 50, 100, 200)


def counting_problem(signal, source: LineSource, grid: GridOptions, run: RunOptions,
                     method: str, adf=None) -> Problem:
    """The prepared series for a Poisson method: its maps in memory and checked >= 0.

    The maps are brought into memory (one pass over the spectra) to check them here,
    naming the line, rather than in a dask block at compute time. ``adf``: the ADF series
    too (the fused model).
    """
    problem = prepare(signal, adf, source, grid, slices_per_block=run.slices_per_block,
                      compute=True)
    if run.bootstrap is not None:
        subtracted = [line.xray_line for line in problem.lines
                      if "background_windows" in line.provenance]
        if subtracted:
            raise ValueError(
                f"uncertainty: {method}'s bootstrap repeats the maps as Poisson counts, but "
                f"the maps of {subtracted} had a background subtracted (their variance is "
                "larger than their counts): reconstruct them with reconstruct_sirt "
                "(uncertainty=...) or integrate without background_windows.")
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
                     grid: GridOptions, run: RunOptions, absorption: Absorption | None = None,
                     detector_efficiency=1.0) -> list:
    """Implement :meth:`TomographicEDSSpectrum.reconstruct_mlem`.

    ``iterations="auto"``: each line at the ML-EM iteration count that best predicts
    held-out tilts (Poisson deviance, :func:`.auto.cross_validate_problem` on
    :data:`.auto.AUTO_SLICES` slices), recorded in ``Reconstruction.CrossValidation``.
    With ``absorption.correction`` (a number of iterations, checked by the caller): the
    passes of :func:`.absorption.corrected`, the ray factors as the likelihood's weights.
    """
    from .auto import AUTO_SLICES, auto_folds, cross_validate_problem, metadata_of

    assert not isinstance(iterations, str) or iterations == AUTO  # checked_iterations
    problem = counting_problem(signal, source, grid, run, "ML-EM")
    if absorption is not None and absorption.correction:
        return corrected(signal, problem,
                         lambda p, count: mlem_of(signal, p, count, subsets, run), iterations,
                         absorption, run, detector_efficiency, poisson=True)
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
    backend = kernel_backend(run.backend, problem.lazy)
    solve = functools.partial(mlem, iterations=iterations, subsets=subsets, backend=backend)
    volumes = line_volumes(solve, problem, run, iterations, "ML-EM")
    parameters = base_parameters(layout, "ML-EM", iterations, run, problem.sigma, backend)
    # Multiplicative updates: no relaxation, positive by construction.
    parameters.pop("relaxation")
    parameters["positivity"] = "by construction (multiplicative updates)"
    parameters["subsets"] = subsets
    parameters["likelihood"] = "Poisson (ML-EM, Shepp and Vardi 1982" + (
        f"; ordered subsets, Hudson and Larkin 1994: {subsets} interleaved groups of "
        "tilts)" if subsets > 1 else ")")
    parameters.update(field.record)
    return add_uncertainty([reconstruction_signal(signal, layout, volume, parameters, line)
                            for volume, line in zip(volumes, problem.lines)],
                           solve, problem, run, iterations, "ML-EM", poisson=True)
