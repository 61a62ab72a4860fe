"""Plumbing of ``cross_validate`` and of ``iterations="auto"`` / ``alpha="auto"``."""

from __future__ import annotations

import logging
from dataclasses import replace

import dask
import numpy as np

from ..cross_validation import CrossValidation, cross_validate_stacks
from ..tomography.backends import resolve_backend
from .options import (
    AUTO,
    GridOptions,
    HebtModel,
    LineSource,
    RunOptions,
)
from .problem import Problem, prepare

#: Grids tried by ``"auto"``. Plain SIRT is always a candidate too (HEBT at alpha 0
#: would be SIRT of the ratio-scaled maps, quantified with HEBT's factors), so data that
#: break HEBT's model opt out of the ADF term without trusting the fitted ratios.
AUTO_ITERATIONS = (20, 50, 100, 200, 500)
AUTO_ALPHAS = (0.5, 0.7, 0.8, 0.9)
#: Slices used by "auto" (evenly spaced): enough to rank settings, a fraction of the cost.
AUTO_SLICES = 16


#: Folds of "auto" (every 4th tilt held out in turn), fewer for short series.
AUTO_FOLDS = 4


def auto_folds(n_tilts: int) -> int:
    """Folds for "auto".

    4, or as many as a short series allows (at least 2 tilts in each fold's training set per
    held-out tilt).
    """
    if n_tilts < 4:
        raise ValueError(
            f"'auto' chooses by holding tilts out and needs at least 4 tilts; this series "
            f"has {n_tilts}. Give the iterations (and alpha) as numbers.")
    return min(AUTO_FOLDS, n_tilts // 2)


def _slice_selection(n_slices, slices):
    if slices is None:
        return np.arange(n_slices)
    if isinstance(slices, (int, np.integer)) and not isinstance(slices, bool):
        if slices < 1:
            raise ValueError(f"slices must be a positive number of slices, got {slices}.")
        return np.unique(np.linspace(0, n_slices - 1, min(slices, n_slices)).round().astype(int))
    chosen = np.asarray(slices, dtype=int)
    if chosen.ndim != 1 or chosen.size == 0 or chosen.min() < 0 or chosen.max() >= n_slices:
        raise ValueError(f"slices must be indices in [0, {n_slices}), got {slices!r}.")
    return chosen


def cross_validate(signal, adf, *, methods, iterations, alphas, holdout, score, slices,
                   model: HebtModel, source: LineSource, grid: GridOptions,
                   run: RunOptions | None = None) -> CrossValidation:
    """Implementation of :meth:`TomographicEDSSpectrum.cross_validate`."""
    problem = prepare(signal, adf, source, grid,
                      slices_per_block=64)  # dask chunking only: the folds run in memory
    return cross_validate_problem(signal, problem, methods=methods, iterations=iterations,
                                  alphas=alphas, holdout=holdout, score=score, slices=slices,
                                  model=model, run=RunOptions() if run is None else run)


def cross_validate_problem(signal, problem: Problem, *, methods, iterations, alphas, holdout,
                           score, slices, model: HebtModel, run: RunOptions,
                           stop_early: bool = False, stop_on: str = "each_line",
                           tv_weights=(), fused_options: dict | None = None
                           ) -> CrossValidation:
    """Cross-validation of a prepared problem (its ADF for HEBT), on ``slices``.

    ``fused_options`` as for :func:`~hyperspy_hebt.cross_validation.cross_validate_stacks`,
    its ``adf_weights`` for the chosen slices.
    """
    backend = resolve_backend(run.backend)  # the folds run here, in memory
    layout, lines, field, sigma = problem.layout, problem.lines, problem.field, problem.sigma
    # The folds filter their own training tilts: the unfiltered maps, in memory (one
    # pass over the spectra for all of them, none when they are in memory already).
    eds, adf_stack, weights = dask.compute(problem.raw, problem.adf, field.weights)
    chosen = _slice_selection(layout.n_slices, slices)
    eds = np.stack([np.asarray(e, dtype=np.float32)[chosen] for e in eds])
    if adf_stack is not None:
        adf_stack = np.asarray(adf_stack, dtype=np.float32)[chosen]
    hebt_options = _with_physics(signal, model, lines)
    if sigma is not None and sigma[0] and len(chosen) < layout.n_slices:
        # Filtering along the rotation axis needs neighbouring slices: keep it only
        # when every slice takes part.
        sigma = (0.0,) + tuple(sigma[1:])
    result = cross_validate_stacks(
        eds, adf_stack, [line.xray_line for line in lines], layout.tilt_angles_deg,
        methods=methods, iterations=iterations, alphas=alphas, holdout=holdout, sigma=sigma,
        score=score, relaxation=run.relaxation, positivity=run.positivity,
        hebt_options=hebt_options, padding_px=field.record["padding_px"],
        weights=None if weights is None else weights[chosen], backend=backend,
        stop_early=stop_early, stop_on=stop_on, half_thickness_px=field.half_thickness_px,
        tv_weights=tv_weights, fused_options=fused_options,
        show_progressbar=bool(run.show_progressbar))
    result.slices = chosen.tolist()
    result.grid = field.record
    return result


def check_fold_ratios(response_ratios) -> None:
    """Cross-validation fits the ratios on each fold: only None or "physics"."""
    if not (response_ratios is None or (isinstance(response_ratios, str)
                                        and response_ratios == "physics")):
        raise ValueError(f"cross-validation fits the ratios on each fold: response_ratios "
                         f"must be None or 'physics', got {response_ratios!r}.")


def _with_physics(signal, model: HebtModel, lines):
    """HEBT options for :func:`cross_validate_stacks`.

    ``response_ratios`` ("physics" or None) becomes ``physics_ratios``, the cross sections' pattern
    or None.
    """
    from .hebt import PHYSICS, expected_ratios

    options = {"exclude_clipped": model.exclude_clipped, "adf_offset": model.adf_offset,
               "unlisted_mass": model.unlisted_mass, "ratio_floor": model.ratio_floor}
    check_fold_ratios(model.response_ratios)
    if model.response_ratios != PHYSICS:
        return options
    options["physics_ratios"], _ = expected_ratios(signal, lines, model.detector_efficiency,
                                                   required=True)
    return options


def metadata_of(result: CrossValidation) -> dict:
    """A cross-validation as HyperSpy metadata (columns, so it saves and loads)."""
    rows = result.rows
    return {
        "score": result.score,
        "folds": result.folds,
        "slices": list(result.slices),
        **{key: value for key, value in result.grid.items()},
        "best_method": result.best["method"],
        "best_alpha": float(result.best["alpha"]),
        "best_tv_weight": float(result.best.get("tv_weight", float("nan"))),
        "best_iterations": int(result.best["iterations"]),
        # Lists, not a node: a setting's name ("HEBT alpha 0.5") is no metadata key.
        "stopped_early_settings": list(result.stopped_early),
        "stopped_early_after": [int(n) for n in result.stopped_early.values()],
        "table": {
            "method": [r["method"] for r in rows],
            "alpha": [float(r["alpha"]) for r in rows],
            "tv_weight": [float(r.get("tv_weight", float("nan"))) for r in rows],
            "iterations": [int(r["iterations"]) for r in rows],
            "xray_line": [r["xray_line"] for r in rows],
            "score": [float(r["score"]) for r in rows],
        },
    }


def _record_grid(rec, grid: dict) -> None:
    """The padding record of the cross-validation that chose the grid."""
    for key in ("padding_px", "padding_reason", "edge_fraction"):
        if key in grid:
            rec.metadata.set_item(f"Reconstruction.{key}", grid[key])


def auto_sirt(signal, source: LineSource, grid: GridOptions, run: RunOptions) -> list:
    """``reconstruct_sirt(iterations="auto")``.

    Each line at its own best iteration count, every line on the grid chosen from all of them (a
    per-line "auto" could differ).
    """
    from .sirt import sirt_of

    folds = auto_folds(len(signal.tilt_angles))
    # One preparation (lazy: one pass over the spectra) for the scores and the results.
    problem = prepare(signal, None, source, grid, slices_per_block=run.slices_per_block,
                      compute=True, variance=run.bootstrap is not None)
    result = cross_validate_problem(
        signal, problem, methods=("sirt",), iterations=AUTO_ITERATIONS, alphas=(),
        holdout=folds, score="poisson", slices=AUTO_SLICES, model=HebtModel(), run=run,
        stop_early=True)
    record = metadata_of(result)
    out = []
    for index, name in enumerate(problem.names):
        (rec,) = sirt_of(signal, problem.only(index),
                         result.best_per_line[name]["iterations"], run)
        _record_grid(rec, result.grid)
        rec.metadata.set_item("Reconstruction.CrossValidation", record)
        out.append(rec)
    return out


_logger = logging.getLogger(__name__)


def auto_hebt(signal, adf, alpha, iterations, model: HebtModel, source: LineSource,
              grid: GridOptions, run: RunOptions) -> list:
    """Run ``reconstruct_hebt`` with ``alpha`` and/or ``iterations`` = "auto".

    Each is already checked by :func:`.options.checked_alpha` / :func:`.options.checked_iterations`.

    Plain SIRT is always a candidate: HEBT at alpha 0 would return SIRT's maps
    scaled by the fitted ratios and quantified with HEBT's factors, i.e. SIRT's
    composition reweighted by ratios that may be wrong (a zero ratio reads as 0 %).
    When HEBT's model check says "violated", SIRT is chosen without trying HEBT.
    Either way the result says what was chosen and why
    (``metadata.Reconstruction.AutomaticChoice``). The check, the scores and the
    result share one prepared problem (lazy: one pass over the spectra).
    """
    from .hebt import _required_adf, check_of, hebt_of
    from .sirt import sirt_of

    if not model.fitted:
        raise ValueError("alpha or iterations 'auto' fits the response ratios on each fold; "
                         "pass response_ratios None or 'physics' with it.")
    folds = auto_folds(len(signal.tilt_angles))
    alphas = tuple(a for a in AUTO_ALPHAS if a > 0) if alpha == AUTO else (alpha,)
    counts = AUTO_ITERATIONS if iterations == AUTO else (iterations,)
    problem = prepare(signal, _required_adf(signal, adf), source, grid,
                      slices_per_block=run.slices_per_block, compute=True,
                      variance=run.bootstrap is not None)
    check = check_of(signal, adf, problem, model)
    violated = check["verdict"] == "violated"
    methods = ("sirt",) if violated else ("sirt", "hebt")
    # One setting for every line (the summed score chooses it), so the summed score
    # decides when a run stops: one line that would still improve alone kept a
    # 256-wide lamella's runs going to 500 iterations (4x the time).
    result = cross_validate_problem(
        signal, problem if not violated else replace(problem, adf=None), methods=methods,
        iterations=counts, alphas=() if violated else alphas, holdout=folds,
        score="poisson", slices=AUTO_SLICES, model=model, run=run, stop_early=True,
        stop_on="sum")
    best = result.best
    if violated:
        reason = ("HEBT's model check says 'violated' (" + "; ".join(check["problems"])
                  + "): SIRT, iterations by cross-validation")
    elif best["method"] == "SIRT":
        hebt_rows = [r for r in result.rows if r["method"] == "HEBT"]
        reason = (f"SIRT predicts the held-out tilts best (score {best['score']:.4g}; best "
                  f"HEBT {_best_summed(hebt_rows):.4g})")
    else:
        reason = (f"HEBT alpha {best['alpha']:g} predicts the held-out tilts best (score "
                  f"{best['score']:.4g}; best SIRT "
                  f"{_best_summed([r for r in result.rows if r['method'] == 'SIRT']):.4g})")
    if best["method"] == "SIRT":
        _logger.warning("reconstruct_hebt(alpha/iterations='auto') chose SIRT: %s. The maps "
                        "are SIRT's (quantified with f_A).", reason)
        recs = sirt_of(signal, problem, best["iterations"], run)
    else:
        recs = hebt_of(signal, adf, problem, best["alpha"], best["iterations"], model, run)
    record = metadata_of(result)
    choice = {"requested": f"reconstruct_hebt(alpha={alpha!r}, iterations={iterations!r})",
              "candidates": ", ".join(
                  ["SIRT"] + ([] if violated else [f"HEBT alpha {a:g}" for a in alphas])),
              "chosen": (f"SIRT, {best['iterations']} iterations" if best["method"] == "SIRT"
                         else f"HEBT, alpha {best['alpha']:g}, {best['iterations']} iterations"),
              "reason": reason, "hebt_model_verdict": check["verdict"],
              "hebt_model_problems": list(check["problems"]),
              "response_ratios_checked": check["response_ratios"]}
    for rec in recs:
        _record_grid(rec, result.grid)
        rec.metadata.set_item("Reconstruction.CrossValidation", record)
        rec.metadata.set_item("Reconstruction.AutomaticChoice", choice)
    return recs


def _best_summed(rows) -> float:
    """Lowest score summed over lines among ``rows`` (one setting = method, alpha, n)."""
    summed: dict = {}
    for r in rows:
        # SIRT's rows carry alpha NaN, a new float object per row: NaN keys never match,
        # so each line would stand alone and its single-line score pass for a sum.
        alpha = None if np.isnan(r["alpha"]) else r["alpha"]
        key = (alpha, r["iterations"])
        summed[key] = summed.get(key, 0.0) + r["score"]
    return min(summed.values()) if summed else float("nan")
