"""Plumbing of ``cross_validate`` and of ``iterations="auto"`` / ``alpha="auto"``."""

from __future__ import annotations

import logging

import dask
import numpy as np

from ._intensities import in_memory_lines, line_intensities
from ._problem import prepare
from .cross_validation import CrossValidation, cross_validate_stacks
from .tomography.backends import resolve_backend

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
    """Folds for "auto": 4, or as many as a short series allows (at least 2 tilts in
    each fold's training set per held-out tilt)."""
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


def cross_validate(signal, adf, *, methods, iterations, alphas, holdout, xray_lines,
                   intensities, integration_windows, background_windows, gaussian_sigma,
                   score, rotation_axis, slices, relaxation=1.0, positivity=True,
                   hebt_options=None, padding_px="auto",
                   invalid_pixels="auto", backend="cpu",
                   stop_early=False, stop_on="each_line",
                   thickness_nm=None) -> CrossValidation:
    """Implementation of :meth:`TomographicEDSSpectrum.cross_validate`."""
    backend = resolve_backend(backend)  # the folds run here, in memory
    problem = prepare(signal, adf, xray_lines=xray_lines, intensities=intensities,
                      integration_windows=integration_windows,
                      background_windows=background_windows, gaussian_sigma=gaussian_sigma,
                      rotation_axis=rotation_axis,
                      slices_per_block=64,  # dask chunking only: the folds run in memory
                      padding_px=padding_px, invalid_pixels=invalid_pixels,
                      thickness_nm=thickness_nm)
    layout, lines, field, sigma = problem.layout, problem.lines, problem.field, problem.sigma
    # The folds filter their own training tilts: the unfiltered maps, in memory (one
    # pass over the spectra for all of them, none when "auto" padding already made it).
    eds, adf_stack, weights = dask.compute(problem.raw, problem.adf, field.weights)
    chosen = _slice_selection(layout.n_slices, slices)
    eds = np.stack([np.asarray(e, dtype=np.float32)[chosen] for e in eds])
    if adf_stack is not None:
        adf_stack = np.asarray(adf_stack, dtype=np.float32)[chosen]
    hebt_options = _with_physics(signal, hebt_options, [line.xray_line for line in lines])
    if sigma is not None and sigma[0] and len(chosen) < layout.n_slices:
        # Filtering along the rotation axis needs neighbouring slices: keep it only
        # when every slice takes part.
        sigma = (0.0,) + tuple(sigma[1:])
    result = cross_validate_stacks(
        eds, adf_stack, [line.xray_line for line in lines], layout.tilt_angles_deg,
        methods=methods, iterations=iterations, alphas=alphas, holdout=holdout, sigma=sigma,
        score=score, relaxation=relaxation, positivity=positivity,
        hebt_options=hebt_options,
        padding_px=field.record["padding_px"],
        weights=None if weights is None else weights[chosen], backend=backend,
        stop_early=stop_early, stop_on=stop_on, half_thickness_px=field.half_thickness_px)
    result.slices = chosen.tolist()
    result.grid = field.record
    return result


def _with_physics(signal, hebt_options, names):
    """HEBT options for :func:`cross_validate_stacks`: ``response_ratios`` ("physics" or
    None) becomes ``physics_ratios``, the cross sections' pattern or None."""
    from ._hebt import PHYSICS, expected_ratios

    options = dict(hebt_options or {})
    response_ratios = options.pop("response_ratios", None)
    efficiency = options.pop("detector_efficiency", 1.0)
    if response_ratios is None:
        return options
    if not (isinstance(response_ratios, str) and response_ratios == PHYSICS):
        raise ValueError(f"cross-validation fits the ratios on each fold: response_ratios "
                         f"must be None or 'physics', got {response_ratios!r}.")
    options["physics_ratios"], _ = expected_ratios(signal, names, efficiency, required=True)
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
        "best_iterations": int(result.best["iterations"]),
        # Lists, not a node: a setting's name ("HEBT alpha 0.5") is no metadata key.
        "stopped_early_settings": list(result.stopped_early),
        "stopped_early_after": [int(n) for n in result.stopped_early.values()],
        "table": {
            "method": [r["method"] for r in rows],
            "alpha": [float(r["alpha"]) for r in rows],
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


def auto_sirt(signal, kwargs: dict) -> list:
    """``reconstruct_sirt(iterations="auto")``: each line at its own best iteration count."""
    from ._reconstruction import reconstruct_sirt

    folds = auto_folds(len(signal.tilt_angles))
    # Integrated once (lazy: one pass over the spectra) for the scores and the results.
    lines = in_memory_lines(line_intensities(signal, kwargs["xray_lines"], kwargs["intensities"],
                                             kwargs["integration_windows"],
                                             kwargs["background_windows"]))
    names = [line.xray_line for line in lines]
    result = cross_validate(
        signal, None, methods=("sirt",), iterations=AUTO_ITERATIONS, alphas=(),
        holdout=folds, xray_lines=None, intensities=lines,
        integration_windows=None, background_windows=None,
        gaussian_sigma=kwargs["gaussian_sigma"], score=kwargs["score"],
        rotation_axis=kwargs["rotation_axis"], slices=AUTO_SLICES,
        relaxation=kwargs["relaxation"], positivity=kwargs["positivity"],
        padding_px=kwargs["padding_px"], invalid_pixels=kwargs["invalid_pixels"],
        backend=kwargs["backend"], stop_early=True, thickness_nm=kwargs["thickness_nm"])
    record = metadata_of(result)
    out = []
    for index, name in enumerate(names):
        # Every line on the grid chosen from all of them (a per-line "auto" could differ).
        chosen = dict(kwargs, iterations=result.best_per_line[name]["iterations"],
                      padding_px=result.grid["padding_px"])
        chosen.pop("score")
        chosen["intensities"] = [lines[index]]
        chosen["xray_lines"] = None
        (rec,) = reconstruct_sirt(signal, **chosen)
        _record_grid(rec, result.grid)
        rec.metadata.set_item("Reconstruction.CrossValidation", record)
        out.append(rec)
    return out


#: Keys of ``reconstruct_hebt``'s options that SIRT does not take.
_HEBT_ONLY = ("response_ratios", "exclude_clipped", "adf_offset", "unlisted_mass",
              "ratio_floor", "detector_efficiency", "score")

_logger = logging.getLogger(__name__)


def auto_hebt(signal, adf, alpha, iterations, kwargs: dict) -> list:
    """``reconstruct_hebt`` with ``alpha`` and/or ``iterations`` = "auto".

    Plain SIRT is always a candidate: HEBT at alpha 0 would return SIRT's maps
    scaled by the fitted ratios and quantified with HEBT's factors, i.e. SIRT's
    composition reweighted by ratios that may be wrong (a zero ratio reads as 0 %).
    When HEBT's model check says "violated", SIRT is chosen without trying HEBT.
    Either way the result says what was chosen and why
    (``metadata.Reconstruction.AutomaticChoice``).
    """
    from ._hebt import check_hebt_model, reconstruct_hebt
    from ._reconstruction import reconstruct_sirt

    for name, value in (("alpha", alpha), ("iterations", iterations)):
        if isinstance(value, str) and value != "auto":
            raise ValueError(f"{name} must be a number or 'auto', got {value!r}.")
    folds = auto_folds(len(signal.tilt_angles))
    alphas = tuple(a for a in AUTO_ALPHAS if a > 0) if isinstance(alpha, str) else (alpha,)
    counts = AUTO_ITERATIONS if isinstance(iterations, str) else (iterations,)
    robust = {key: kwargs[key] for key in ("exclude_clipped", "adf_offset", "unlisted_mass",
                                           "ratio_floor", "response_ratios",
                                           "detector_efficiency")}
    # Integrated once (lazy: one pass over the spectra) for the check, the scores and
    # the results.
    lines = in_memory_lines(line_intensities(signal, kwargs["xray_lines"], kwargs["intensities"],
                                             kwargs["integration_windows"],
                                             kwargs["background_windows"]))
    kwargs = dict(kwargs, xray_lines=None, intensities=lines)
    check = check_hebt_model(
        signal, adf, xray_lines=None, intensities=lines, integration_windows=None,
        background_windows=None, gaussian_sigma=kwargs["gaussian_sigma"],
        response_ratios=robust["response_ratios"], rotation_axis=kwargs["rotation_axis"],
        exclude_clipped=robust["exclude_clipped"], adf_offset=robust["adf_offset"],
        invalid_pixels=kwargs["invalid_pixels"],
        detector_efficiency=robust["detector_efficiency"])
    violated = check["verdict"] == "violated"
    methods = ("sirt",) if violated else ("sirt", "hebt")
    # One setting for every line (the summed score chooses it), so the summed score
    # decides when a run stops: one line that would still improve alone kept a
    # 256-wide lamella's runs going to 500 iterations (4x the time).
    result = cross_validate(
        signal, adf if not violated else None, methods=methods, iterations=counts,
        alphas=() if violated else alphas, holdout=folds, hebt_options=robust,
        xray_lines=None, intensities=lines, integration_windows=None,
        background_windows=None, gaussian_sigma=kwargs["gaussian_sigma"],
        score=kwargs["score"], rotation_axis=kwargs["rotation_axis"], slices=AUTO_SLICES,
        relaxation=kwargs["relaxation"], positivity=kwargs["positivity"],
        padding_px=kwargs["padding_px"], invalid_pixels=kwargs["invalid_pixels"],
        backend=kwargs["backend"], stop_early=True, stop_on="sum",
        thickness_nm=kwargs["thickness_nm"])
    chosen = dict(kwargs, padding_px=result.grid["padding_px"])
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
        options = {k: v for k, v in chosen.items() if k not in _HEBT_ONLY}
        recs = reconstruct_sirt(signal, iterations=best["iterations"], **options)
    else:
        options = {k: v for k, v in chosen.items() if k != "score"}
        recs = reconstruct_hebt(signal, adf, alpha=best["alpha"],
                                iterations=best["iterations"], **options)
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
    summed = {}
    for r in rows:
        key = (r["alpha"], r["iterations"])
        summed[key] = summed.get(key, 0.0) + r["score"]
    return min(summed.values()) if summed else float("nan")
