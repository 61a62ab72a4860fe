"""Poisson likelihood + total variation of a tilt series' line maps (issue 16).

From a prepared problem (:mod:`.problem`) to ``Signal2D`` stacks (:mod:`.blocks`), block by
block like SIRT: lazy for a lazy series, computable on a cluster. The weight can be chosen
on held-out tilts (:func:`.auto.cross_validate_problem`).
"""

from __future__ import annotations

import functools

from ..cross_validation import JOINT_TV
from ..tomography.poisson_tv import poisson_tv, validate_tv_parameters
from .absorption import corrected
from .blocks import base_parameters, kernel_backend, line_volumes, reconstruction_signal
from .mlem import counting_problem
from .options import AUTO, Absorption, GridOptions, HebtModel, LineSource, RunOptions
from .problem import Problem
from .uncertainty import add_uncertainty

#: Weights per tilt that ``tv_weight="auto"`` scores (steps of about 3). 1.0 since
#: ``benchmarks/dose_sweep.py``: at a tenth and a twentieth of the paper's dose "auto" chose
#: 0.3, the grid's top, as did the best fixed weight.
AUTO_TV_WEIGHTS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def reconstruct_poisson_tv(signal, iterations: int, tv_weight, source: LineSource,
                           grid: GridOptions, run: RunOptions, joint: bool = False,
                           absorption: Absorption | None = None,
                           detector_efficiency=1.0) -> list:
    """Implement :meth:`TomographicEDSSpectrum.reconstruct_poisson_tv`.

    ``tv_weight="auto"``: each line at the weight of :data:`AUTO_TV_WEIGHTS` whose
    reconstruction best predicts held-out tilts (Poisson deviance, at ``iterations``), or
    with ``joint`` the one weight whose joint reconstruction does so summed over the lines;
    recorded in ``Reconstruction.CrossValidation``. With ``absorption.correction`` (a
    number for the weight, checked by the caller): the passes of
    :func:`.absorption.corrected`, the ray factors as the likelihood's weights.
    """
    from .auto import AUTO_SLICES, auto_folds, cross_validate_problem, metadata_of

    problem = counting_problem(signal, source, grid, run, "Poisson + TV")
    if joint and len(problem.lines) < 2:
        raise ValueError(f"joint_tv couples the lines' total variation and needs two or more "
                         f"lines, got {problem.names}.")
    if absorption is not None and absorption.correction:
        return corrected(signal, problem,
                         lambda p, count: poisson_tv_of(signal, p, count, tv_weight, run, joint),
                         iterations, absorption, run, detector_efficiency, poisson=True)
    if not (isinstance(tv_weight, str) and tv_weight == AUTO):
        return poisson_tv_of(signal, problem, iterations, tv_weight, run, joint)
    validate_tv_parameters(iterations, 0.0)
    result = cross_validate_problem(
        signal, problem, methods=("joint_tv" if joint else "poisson_tv",),
        iterations=(iterations,), alphas=(), holdout=auto_folds(len(signal.tilt_angles)),
        score="poisson", slices=AUTO_SLICES, model=HebtModel(), run=run,
        tv_weights=AUTO_TV_WEIGHTS)
    record = metadata_of(result)
    if joint:
        out = poisson_tv_of(signal, problem, iterations, result.best["tv_weight"], run, True)
    else:
        out = [poisson_tv_of(signal, problem.only(index), iterations,
                             result.best_per_line[name]["tv_weight"], run)[0]
               for index, name in enumerate(problem.names)]
    for rec in out:
        rec.metadata.set_item("Reconstruction.CrossValidation", record)
    return out


def poisson_tv_of(signal, problem: Problem, iterations: int, tv_weight: float,
                  run: RunOptions, joint: bool = False) -> list:
    """Poisson + TV of every line of a prepared problem, as Signal2D stacks of ``signal``.

    ``joint``: one total variation over all the lines (the lines are reconstructed together).
    """
    layout, field = problem.layout, problem.field
    iterations, tv_weight = validate_tv_parameters(iterations, tv_weight)
    backend = kernel_backend(run.backend, problem.lazy)
    solve = functools.partial(poisson_tv, iterations=iterations, tv_weight=tv_weight,
                              joint_channels=len(problem.lines) if joint else 1,
                              backend=backend)
    algorithm = JOINT_TV if joint else "Poisson-TV"
    volumes = line_volumes(solve, problem, run, iterations, algorithm, joint=joint)
    parameters = base_parameters(layout, algorithm, iterations, run, problem.sigma, backend)
    parameters.pop("relaxation")
    parameters["positivity"] = "constraint of the problem"
    parameters["tv_weight"] = tv_weight
    if joint:
        parameters["joint_lines"] = list(problem.names)
        parameters["objective"] = (
            "sum over lines of the Poisson negative log-likelihood (each slice's counts in "
            "units of its mean level) + tv_weight x n_tilts x joint isotropic total variation "
            "of each slice (z, x) over the lines in joint_lines, x >= 0; preconditioned PDHG "
            "(Chambolle and Pock 2011)")
    else:
        parameters["objective"] = (
            "Poisson negative log-likelihood + tv_weight x n_tilts x isotropic total "
            "variation of each slice (z, x), x >= 0; preconditioned PDHG (Chambolle and "
            "Pock 2011)")
    parameters.update(field.record)
    return add_uncertainty([reconstruction_signal(signal, layout, volume, parameters, line)
                            for volume, line in zip(volumes, problem.lines)],
                           solve, problem, run, iterations, algorithm, poisson=True,
                           joint=joint)
