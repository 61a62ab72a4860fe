"""The fused EDS + ADF model of a tilt series (issue 16): model fit, weight, blocks.

1. Joint Poisson + TV of the EDS maps alone on :data:`.auto.AUTO_SLICES` slices (its weight
   cross-validated when ``tv_weight="auto"``).
2. The ADF regressed on the projections of powers of those volumes
   (:func:`~hyperspy_hebt.tomography.fused.fit_adf_power`): ``gamma`` (fitted, or given)
   and each line's coefficient; the regression's residual variance sets the ADF's
   precision (times ``adf_weight``).
3. ``tv_weight="auto"``: the fused model itself on held-out tilts (Poisson deviance of the
   EDS; the held-out tilts' ADF is left out of training too).
4. Every slice, block by block like SIRT, lazy for a lazy series.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace

import dask
import dask.array as da
import numpy as np

from ..cross_validation import FUSED
from ..diagnostics import R_SQUARED_DOUBTFUL, R_SQUARED_VIOLATED, invalid_adf_pixels
from ..tomography import get_projector
from ..tomography.backends import resolve_backend
from ..tomography.fused import AdfPowerFit, fit_adf_power, fused, validate_fused_parameters
from ..tomography.geometry import slab_support
from ..tomography.poisson_tv import poisson_tv, validate_tv_parameters
from .absorption import corrected
from .blocks import base_parameters, kernel_backend, reconstruction_signal, run_blocks
from .hebt import _required_adf
from .intensities import title_of
from .mlem import counting_problem
from .options import AUTO, Absorption, GridOptions, HebtModel, LineSource, RunOptions
from .poisson_tv import AUTO_TV_WEIGHTS
from .problem import Problem
from .uncertainty import AdfRepeats, add_uncertainty

_logger = logging.getLogger(__name__)

#: Powers ``gamma="fit"`` tries (1: HEBT's linear model; Schwartz et al. report 1.4-2).
AUTO_GAMMAS = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)

#: ``gamma`` value that fits it.
FIT = "fit"


def _fused_kernel(block, geometry, n_lines, coefficients, gamma, iterations, tv_weight,
                  adf_precision, joint, eds_weighted=False, half_thickness_px=None,
                  backend="cpu", columns=None, callback=None):
    """(k + 2 [+ 1 or k], slices, T, D) -> (k, slices, Z, X).

    The channels: EDS maps, the ADF, its ray weights, [EDS weights: shared, or with
    ``eds_weighted="per_line"`` one per line].
    """
    eds, adf, adf_weights = block[:n_lines], block[n_lines], block[n_lines + 1]
    slices = eds.shape[1]
    eds_weights = None
    if eds_weighted == "per_line":
        eds_weights = block[n_lines + 2:].reshape((-1,) + eds.shape[2:])
    elif eds_weighted:
        eds_weights = np.broadcast_to(block[-1], eds.shape).reshape((-1,) + eds.shape[2:])
    volume = fused(get_projector(geometry), eds.reshape((-1,) + eds.shape[2:]), adf,
                   coefficients, gamma, iterations, tv_weight, adf_precision,
                   callback=callback, eds_weights=eds_weights, adf_weights=adf_weights,
                   support=slab_support(geometry, half_thickness_px), columns=columns,
                   joint=joint, backend=backend)
    return volume.reshape((n_lines, slices) + volume.shape[1:])


def _fused_solve(projector, sinograms, *, adf, adf_weights, ray_weights=None, support=None,
                 columns=None, callback=None, **settings):
    """:func:`~hyperspy_hebt.tomography.fused.fused` as the bootstrap's slice-stack solver."""
    return fused(projector, sinograms, adf, callback=callback, eds_weights=ray_weights,
                 adf_weights=adf_weights, support=support, columns=columns, **settings)


def _validated(gamma, adf_weight):
    """``gamma`` ("fit" or >= 1) and ``adf_weight`` (> 0) checked, as given."""
    if not (isinstance(gamma, str) and gamma == FIT):
        validate_fused_parameters(gamma, 1.0, np.zeros(1), 1)
    if isinstance(adf_weight, bool) or not isinstance(adf_weight, (int, float, np.floating)) \
            or not np.isfinite(adf_weight) or adf_weight <= 0:
        raise ValueError(f"adf_weight must be a finite number > 0 (1: the ADF's precision "
                         f"from the model fit's residual), got {adf_weight!r}.")


def reconstruct_fused(signal, adf, iterations: int, tv_weight, gamma, adf_weight: float,
                      joint: bool, source: LineSource, grid: GridOptions,
                      run: RunOptions, adf_offset: bool = False,
                      absorption: Absorption | None = None, detector_efficiency=1.0) -> list:
    """Implement :meth:`TomographicEDSSpectrum.reconstruct_fused`.

    ``adf_offset``: the model fit's offset is subtracted from the ADF before every later
    step (the solver's model has none). With ``absorption.correction`` (``tv_weight`` a
    number, checked by the caller): the passes of :func:`.absorption.corrected`, the ray
    factors as the lines' likelihood weights; the model fit and the solver see the
    corrected lines (the ADF, electrons, is not absorbed).
    """
    tv_auto = isinstance(tv_weight, str) and tv_weight == AUTO
    validate_tv_parameters(iterations, 0.0 if tv_auto else tv_weight)
    _validated(gamma, adf_weight)  # before the spectra are read
    problem = counting_problem(signal, source, grid, run, "The fused model",
                               adf=_required_adf(signal, adf))
    if run.bootstrap is not None and problem.sigma is not None:
        raise ValueError("uncertainty: the fused model's bootstrap repeats the counts as Poisson "
                         "counts; give it unfiltered maps (gaussian_sigma=None).")
    settings = dict(tv_weight=tv_weight, gamma=gamma, adf_weight=adf_weight, joint=joint,
                    run=run, adf_offset=adf_offset)
    if absorption is not None and absorption.correction:
        return corrected(signal, problem,
                         lambda p, count: _fused_of(signal, adf, p, count, **settings),
                         iterations, absorption, run, detector_efficiency, poisson=True)
    return _fused_of(signal, adf, problem, iterations, **settings)


def _fused_of(signal, adf, problem: Problem, iterations: int, tv_weight, gamma,
              adf_weight: float, joint: bool, run: RunOptions, adf_offset: bool) -> list:
    """The fused model of a prepared problem: model fit, weight, every slice."""
    from .auto import (
        AUTO_SLICES,
        _slice_selection,
        auto_folds,
        cross_validate_problem,
        metadata_of,
    )

    tv_auto = isinstance(tv_weight, str) and tv_weight == AUTO
    adf_weights = _adf_weights(problem)
    chosen = _slice_selection(problem.layout.n_slices, AUTO_SLICES)
    folds = auto_folds(len(signal.tilt_angles))
    eds_method = "joint_tv" if len(problem.lines) > 1 else "poisson_tv"
    records = {}
    eds_weight = tv_weight
    if tv_auto:
        result = cross_validate_problem(
            signal, problem, methods=(eds_method,), iterations=(iterations,), alphas=(),
            holdout=folds, score="poisson", slices=AUTO_SLICES, model=HebtModel(), run=run,
            tv_weights=AUTO_TV_WEIGHTS)
        eds_weight = result.best["tv_weight"]
    fit = _model_fit(problem, chosen, iterations, eds_weight, gamma, adf_weights, adf_offset,
                     resolve_backend(run.backend))  # in memory, here
    if fit.offset:
        assert problem.adf is not None
        problem = replace(problem, adf=problem.adf - np.float32(fit.offset))
    # A model that explains the ADF poorly has a large residual, so a small precision: the
    # ADF term then weighs little by itself.
    adf_precision = float(adf_weight) / fit.residual_variance
    if tv_auto:
        options = {"coefficients": fit.coefficients, "gamma": fit.gamma,
                   "adf_precision": adf_precision, "joint": joint,
                   "adf_weights": adf_weights[chosen]}
        result = cross_validate_problem(
            signal, problem, methods=("fused",), iterations=(iterations,), alphas=(),
            holdout=folds, score="poisson", slices=AUTO_SLICES, model=HebtModel(), run=run,
            tv_weights=AUTO_TV_WEIGHTS, fused_options=options)
        tv_weight = result.best["tv_weight"]
        records["CrossValidation"] = metadata_of(result)
    tv_weight = validate_tv_parameters(iterations, tv_weight)[1]
    diagnostics = _diagnostics(fit, problem.names)
    if diagnostics["verdict"] != "consistent":
        _logger.warning("The fused model's ADF fit looks %s: %s. Compare with "
                        "reconstruct_poisson_tv(joint_tv=True) (--method tv) before "
                        "trusting the fused maps.",
                        diagnostics["verdict"], "; ".join(diagnostics["problems"]))
    volumes = _volumes(problem, adf_weights, fit, adf_precision, iterations, tv_weight, joint,
                       run)
    parameters = base_parameters(problem.layout, FUSED, iterations, run, problem.sigma,
                                 kernel_backend(run.backend, problem.lazy))
    parameters.pop("relaxation")
    parameters.update(problem.field.record)
    parameters.update({
        "positivity": "constraint of the problem",
        "tv_weight": tv_weight,
        "joint_tv": bool(joint),
        "gamma": fit.gamma,
        "gamma_source": "fitted (highest R^2 of the ADF model)" if gamma == FIT else "user",
        "adf_coefficients": dict(zip(problem.names, map(float, fit.coefficients))),
        "adf_precision": adf_precision,
        "adf_weight": float(adf_weight),
        "adf_residual_variance": fit.residual_variance,
        "adf_offset": fit.offset,
        "adf_offset_source": "fitted with the ADF model, subtracted" if adf_offset else "none",
        "model_fit_slices": chosen.tolist(),
        "model_fit_tv_weight": float(eds_weight),
        "excluded_adf_fraction": float(np.mean(adf_weights == 0)),
        "adf_title": title_of(adf),
        "objective": (
            "sum over lines of the Poisson negative log-likelihood of the counts + "
            "adf_precision/2 x sum over rays (W sum_c q_c x_c^gamma - (ADF - adf_offset))^2 "
            "+ tv_weight x "
            "n_tilts x total variation (joint over the lines with joint_tv) of each slice, "
            "x >= 0; nonlinear preconditioned PDHG (Valkonen 2014)"),
        "values": "line intensity per voxel (counts), as SIRT's",
        "Diagnostics": diagnostics,
        **records,
    })
    out = [reconstruction_signal(signal, problem.layout, volume, parameters, line)
           for volume, line in zip(volumes, problem.lines)]
    solve = functools.partial(
        _fused_solve, coefficients=tuple(map(float, fit.coefficients)), gamma=fit.gamma,
        iterations=iterations, tv_weight=tv_weight, adf_precision=adf_precision, joint=joint,
        backend=kernel_backend(run.backend, problem.lazy))
    repeats = AdfRepeats(tuple(map(float, fit.coefficients)), fit.gamma,
                         fit.residual_variance)
    return add_uncertainty(out, solve, problem, run, iterations, FUSED, poisson=True,
                           joint=True, adf_model=repeats, adf_weights=adf_weights)


def _adf_weights(problem: Problem) -> np.ndarray:
    """The ADF rays to trust (1) or leave out (0: saturated, clipped, hot, no valid data)."""
    assert problem.adf is not None
    invalid = invalid_adf_pixels(problem.adf)
    valid = ~np.asarray(dask.compute(invalid)[0])
    if problem.valid_pixels is not None:
        valid &= problem.valid_pixels
    if not valid.any():
        raise ValueError("Every ADF pixel is saturated, clipped or invalid: the fused model "
                         "has no ADF to use.")
    return valid.astype(np.float32)


def _model_fit(problem: Problem, chosen, iterations: int, tv_weight: float, gamma,
               adf_weights: np.ndarray, offset: bool = False,
               backend: str = "cpu") -> AdfPowerFit:
    """Joint Poisson + TV of the EDS on ``chosen`` slices, and the ADF regressed on it.

    R^2 at gamma = 1 is always in the table (the linear model's diagnostic); ``offset``:
    with an ADF offset.
    """
    field = problem.field
    geometry = field.geometry
    projector = get_projector(geometry)
    eds = np.stack([np.asarray(e, np.float32)[chosen] for e in problem.eds])
    adf = np.asarray(problem.adf, np.float32)[chosen]
    n_lines, n_slices = eds.shape[:2]
    weights = None
    if field.weights is not None or problem.line_weights is not None:
        weights = np.concatenate([
            np.broadcast_to(np.asarray(problem.ray_weights(i), np.float32)[chosen],
                            eds.shape[1:]) for i in range(n_lines)])
    volumes = poisson_tv(projector, eds.reshape((-1,) + eds.shape[2:]), iterations,
                         float(tv_weight), ray_weights=weights, backend=backend,
                         support=slab_support(geometry, field.half_thickness_px),
                         joint_channels=n_lines)
    gammas = AUTO_GAMMAS if gamma == FIT else tuple(sorted({1.0, float(gamma)}))
    fit = fit_adf_power(projector, volumes.reshape((n_lines, n_slices) + volumes.shape[1:]),
                        adf, gammas, adf_weights[chosen], offset)
    if gamma != FIT and fit.gamma != float(gamma):  # the user's gamma, whatever fits best
        single = fit_adf_power(projector,
                               volumes.reshape((n_lines, n_slices) + volumes.shape[1:]), adf,
                               (float(gamma),), adf_weights[chosen], offset)
        fit = replace(single, table=fit.table)
    if not fit.residual_variance > 0:
        raise ValueError("The ADF model fits the ADF exactly (residual 0): the ADF carries no "
                         "noise to weigh it by; give the measured ADF.")
    return fit


def _diagnostics(fit: AdfPowerFit, names: list) -> dict:
    """Which model the data support, and how well: the R^2 of the ADF fit per gamma."""
    problems = []
    verdict = "consistent"
    if fit.r_squared < R_SQUARED_VIOLATED:
        verdict = "violated"
        problems.append(f"the ADF is not explained by the lines: R^2 {fit.r_squared:.3f} "
                        f"(below {R_SQUARED_VIOLATED}); check for unlisted elements, ADF "
                        "saturation or an ADF offset")
    elif fit.r_squared < R_SQUARED_DOUBTFUL:
        verdict = "doubtful"
        problems.append(f"R^2 of the ADF fit is only {fit.r_squared:.3f}")
    zero = [name for name, q in zip(names, fit.coefficients) if q <= 0]
    if zero:
        verdict = "violated"
        problems.append(f"{zero} get no ADF coefficient (0): the ADF fit does not see them")
    linear = fit.table.get(1.0, float("nan"))
    best = max(fit.table, key=lambda gamma: fit.table[gamma])
    return {
        "verdict": verdict,
        "problems": problems,
        "r_squared": fit.r_squared,
        "r_squared_linear": float(linear),
        "gammas": [float(g) for g in fit.table],
        "r_squared_per_gamma": [float(r) for r in fit.table.values()],
        "supported_gamma": float(best),
        "fitted_on": "projections of joint Poisson + TV volumes of the EDS on the "
                     "model_fit_slices (their noise and blur bias gamma towards 1)",
    }


def _volumes(problem: Problem, adf_weights: np.ndarray, fit: AdfPowerFit,
             adf_precision: float, iterations: int, tv_weight: float, joint: bool,
             run: RunOptions) -> list:
    """Every slice through the fused kernel, in blocks (lazy for a lazy problem)."""
    field = problem.field
    per_line = problem.line_weights is not None
    eds_weighted = "per_line" if per_line else field.weights is not None
    kernel = functools.partial(
        _fused_kernel, geometry=field.geometry, n_lines=len(problem.lines),
        coefficients=tuple(map(float, fit.coefficients)), gamma=fit.gamma,
        iterations=iterations, tv_weight=tv_weight, adf_precision=adf_precision,
        joint=joint, eds_weighted=eds_weighted, half_thickness_px=field.half_thickness_px,
        backend=kernel_backend(run.backend, problem.lazy))
    channels = list(problem.eds) + [problem.adf, adf_weights]
    if per_line:
        channels.extend(problem.ray_weights(i) for i in range(len(problem.lines)))
    elif eds_weighted:
        channels.append(field.weights)
    stacked = (da.stack([da.asarray(c) for c in channels]) if problem.lazy
               else np.stack([np.asarray(c, np.float32) for c in channels]))
    volumes = run_blocks(kernel, stacked, len(problem.lines), field.geometry,
                         lazy=problem.lazy, slices_per_block=run.slices_per_block,
                         iterations=iterations, show_progressbar=run.show_progressbar,
                         description=FUSED)
    return [volumes[i] for i in range(len(problem.lines))]
