"""Poisson likelihood + total variation of a tilt series' line maps (issue 16).

From a prepared problem (:mod:`.problem`) to ``Signal2D`` stacks (:mod:`.blocks`), block by
block like SIRT: lazy for a lazy series, computable on a cluster. The weight can be chosen
on held-out tilts (:func:`.auto.cross_validate_problem`).
"""

from __future__ import annotations

import functools

from ..tomography.poisson_tv import poisson_tv, validate_tv_parameters
from .blocks import base_parameters, line_volumes, reconstruction_signal
from .mlem import counting_problem
from .options import AUTO, GridOptions, HebtModel, LineSource, RunOptions
from .problem import Problem
from .uncertainty import add_uncertainty

#: Weights per tilt that ``tv_weight="auto"`` scores (steps of about 3). 1.0 since
#: ``benchmarks/dose_sweep.py``: at a tenth and a twentieth of the paper's dose "auto" chose
#: 0.3, the grid's top, as did the best fixed weight.
AUTO_TV_WEIGHTS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def reconstruct_poisson_tv(signal, iterations: int, tv_weight, source: LineSource,
                           grid: GridOptions, run: RunOptions) -> list:
    """Implement :meth:`TomographicEDSSpectrum.reconstruct_poisson_tv`.

    ``tv_weight="auto"``: each line at the weight of :data:`AUTO_TV_WEIGHTS` whose
    reconstruction best predicts held-out tilts (Poisson deviance, at ``iterations``),
    recorded in ``Reconstruction.CrossValidation``.
    """
    from .auto import AUTO_SLICES, auto_folds, cross_validate_problem, metadata_of

    problem = counting_problem(signal, source, grid, run, "Poisson + TV")
    if not (isinstance(tv_weight, str) and tv_weight == AUTO):
        return poisson_tv_of(signal, problem, iterations, tv_weight, run)
    validate_tv_parameters(iterations, 0.0)
    result = cross_validate_problem(
        signal, problem, methods=("poisson_tv",), iterations=(iterations,), alphas=(),
        holdout=auto_folds(len(signal.tilt_angles)), score="poisson", slices=AUTO_SLICES,
        model=HebtModel(), run=run, tv_weights=AUTO_TV_WEIGHTS)
    record = metadata_of(result)
    out = []
    for index, name in enumerate(problem.names):
        (rec,) = poisson_tv_of(signal, problem.only(index), iterations,
                               result.best_per_line[name]["tv_weight"], run)
        rec.metadata.set_item("Reconstruction.CrossValidation", record)
        out.append(rec)
    return out


def poisson_tv_of(signal, problem: Problem, iterations: int, tv_weight: float,
                  run: RunOptions) -> list:
    """Poisson + TV of every line of a prepared problem, as Signal2D stacks of ``signal``."""
    layout, field = problem.layout, problem.field
    iterations, tv_weight = validate_tv_parameters(iterations, tv_weight)
    solve = functools.partial(poisson_tv, iterations=iterations, tv_weight=tv_weight)
    volumes = line_volumes(solve, problem, run, iterations, "Poisson-TV")
    parameters = base_parameters(layout, "Poisson-TV", iterations, run, problem.sigma, "cpu")
    parameters.pop("relaxation")
    parameters["positivity"] = "constraint of the problem"
    parameters["tv_weight"] = tv_weight
    parameters["objective"] = (
        "Poisson negative log-likelihood + tv_weight x n_tilts x isotropic total variation "
        "of each slice (z, x), x >= 0; preconditioned PDHG (Chambolle and Pock 2011)")
    parameters.update(field.record)
    return add_uncertainty([reconstruction_signal(signal, layout, volume, parameters, line)
                            for volume, line in zip(volumes, problem.lines)],
                           solve, problem, run, iterations, "Poisson-TV", poisson=True)
