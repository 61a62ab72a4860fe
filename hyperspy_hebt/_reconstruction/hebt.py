"""Plumbing of ``reconstruct_hebt``: EDS maps + ADF series -> ratios -> joint SIRT."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace

import dask.array as da
import numpy as np

from ..diagnostics import AS_RECORDED_KEY, check_linear_adf, invalid_adf_pixels
from ..tomography import (
    fit_response_model,
    get_projector,
    hebt,
    validate_alpha,
    validate_sirt_parameters,
)
from ..tomography.geometry import slab_support
from .absorption import corrected
from .blocks import base_parameters, kernel_backend, reconstruction_signal, run_blocks
from .intensities import adf_series, title_of, window_share_of
from .options import Absorption, GridOptions, HebtModel, LineSource, RunOptions
from .problem import Problem, prepare
from .uncertainty import AdfRepeats, add_uncertainty

#: Reconstruction.signal of HEBT's ADF-only volume (mass with no listed line).
UNLISTED_MASS = "unlisted ADF mass"

_logger = logging.getLogger(__name__)


def _hebt_kernel(block, geometry, ratios, alpha, iterations, relaxation, positivity,
                 weighted=False, extra_volume=False, eds_weighted=False, backend="cpu",
                 half_thickness_px=None, columns=None, callback=None):
    """(k + 1 [+ 1] [+ 1], slices, T, D).

    EDS maps, the ADF, [ADF weights], [EDS weights] -> (k [+ 1], slices, Z, X).
    """
    k = len(ratios)
    return hebt(get_projector(geometry), block[:k], block[k], ratios, alpha, iterations,
                relaxation, positivity, callback,
                adf_weights=block[k + 1] if weighted else None, extra_volume=extra_volume,
                eds_weights=block[-1] if eds_weighted else None, backend=backend,
                support=slab_support(geometry, half_thickness_px), columns=columns)


def _bootstrap_solve(projector, sinograms, *, adf, adf_weights, ratios, alpha, iterations,
                     relaxation, positivity, backend, ray_weights=None, support=None,
                     columns=None, callback=None):
    """HEBT of a bootstrap repeat, the lines line-major as the bootstrap stacks them.

    ``sinograms`` as :func:`.uncertainty.bootstrap_variances` stacks them; the volumes alike.
    """
    k = len(ratios)
    eds = sinograms.reshape((k, -1) + sinograms.shape[1:])
    # The lines share the series' ray weights; the bootstrap repeats them per line.
    eds_weights = None if ray_weights is None else np.asarray(ray_weights).reshape(
        eds.shape)[0]
    volumes = hebt(projector, eds, adf, ratios, alpha, iterations, relaxation, positivity,
                   callback, adf_weights=adf_weights, eds_weights=eds_weights,
                   backend=backend, support=support, columns=columns)
    return volumes.reshape((-1,) + volumes.shape[2:])


#: ``response_ratios`` value for ratios shaped by the cross sections (Eq. 16).
PHYSICS = "physics"


def expected_ratios(signal, lines, detector_efficiency, required: bool):
    """``z_A / f_A`` per line (Eq. 16), or None with the reason it is unavailable.

    ``lines`` are the maps' :class:`~.intensities.LineIntensity`: a map that holds a share
    ``s_A`` of its line's counts (an integration window) sees ``z_A / (f_A s_A)`` of ADF per
    count of its own. Raises (instead of returning None) when ``required``.
    """
    from .. import physics

    names = [line.xray_line for line in lines]
    shares = np.array([window_share_of(line.provenance)[0] for line in lines])

    energy = signal.metadata.get_item("Acquisition_instrument.TEM.beam_energy")
    try:
        if energy is None:
            raise ValueError(
                "the beam energy is not in the metadata; set it (keV) with "
                "s.metadata.set_item('Acquisition_instrument.TEM.beam_energy', 200.0)")
        return np.array([physics.adf_per_eds_factor(name, float(energy), detector_efficiency)
                         for name in names]) / shares, ""
    except (ValueError, KeyError, physics.DataUnavailableError) as error:
        if required:
            raise ValueError(f"response_ratios='physics' needs the cross sections: "
                             f"{error}") from error
        return None, str(error)


def _user_ratios(response_ratios, names):
    if not isinstance(response_ratios, dict):
        raise TypeError(
            "response_ratios must be None (fit them), 'physics' (the cross sections' "
            "pattern, one fitted scale) or a dict {xray_line: ratio}, got "
            f"{response_ratios!r}."
        )
    missing = [name for name in names if name not in response_ratios]
    if missing:
        raise ValueError(
            f"response_ratios has no entry for {missing}; it needs one per line of {names}."
        )
    values = []
    for name in names:
        value = response_ratios[name]
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"response_ratios[{name!r}] must be a number, got {value!r}.") from None
        if not np.isfinite(value) or value < 0:
            raise ValueError(
                f"response_ratios[{name!r}] must be a finite number >= 0 (ADF counts per "
                f"EDS count), got {value}."
            )
        values.append(value)
    return np.asarray(values)


def _required_adf(signal, adf):
    """HEBT needs the ADF series (``prepare`` takes None for "EDS only").

    None is refused by :func:`adf_series`'s own check, as any other non-signal.
    """
    if adf is None:
        adf_series(signal, adf)
    return adf


def model_check(inputs: Problem, ratios, r_squared, offset=0.0, excluded=None,
                expected=None, adf=None):
    """:func:`check_linear_adf` on prepared (in-memory) inputs.

    ``adf`` (the user's signal) may carry the check of the ADF as recorded, before binning.
    """
    metadata = getattr(adf, "metadata", None)
    as_recorded = None if metadata is None else metadata.get_item(AS_RECORDED_KEY)
    if as_recorded is not None and hasattr(as_recorded, "as_dictionary"):
        as_recorded = as_recorded.as_dictionary()
    return check_linear_adf(np.stack([np.asarray(e) for e in inputs.eds]),
                            np.asarray(inputs.adf), ratios,
                            np.nan if r_squared is None else r_squared, inputs.names,
                            tilt_axis=1, offset=offset, excluded=excluded,
                            expected_ratios=expected, as_recorded=as_recorded)


@dataclass
class ResponseModel:
    """The fitted (or given) link between ADF and EDS, and the ADF pixels it trusts."""

    ratios: np.ndarray
    offset: float
    r_squared: float | None
    source: str
    valid: np.ndarray | None  # ADF pixels used; None = all


def response_model(inputs: Problem, model: HebtModel, expected=None,
                   with_floor: bool = True) -> ResponseModel:
    """Fit ``I_H = sum r_A I_A (+ b)`` on the valid ADF pixels, or take the user's ratios.

    ``"physics"``: ``r_A = s z_A / f_A`` (``expected``), only ``s`` (and ``b``) fitted.
    ``model.ratio_floor`` is applied ``with_floor`` (not by the model check, which judges the fitted
    ratios themselves).
    """
    response_ratios, exclude_clipped = model.response_ratios, model.exclude_clipped
    adf_offset = model.adf_offset
    ratio_floor = model.ratio_floor if with_floor else None
    fitted = response_ratios is None or (isinstance(response_ratios, str)
                                         and response_ratios == PHYSICS)
    valid = None
    if exclude_clipped:
        assert inputs.adf is not None  # HEBT's problems hold the ADF
        invalid = invalid_adf_pixels(inputs.adf)
        if isinstance(invalid, da.Array) and fitted:
            invalid = invalid.compute()  # the maps are in memory for the fit anyway
        if isinstance(invalid, da.Array):
            valid = ~invalid  # lazy: found when the data are computed
        elif invalid.any():
            valid = ~invalid
    valid_pixels = inputs.valid_pixels
    if valid_pixels is not None:
        valid = valid_pixels if valid is None else valid & valid_pixels
    if fitted:
        maps = np.stack([np.asarray(e) for e in inputs.eds])
        if response_ratios is None:
            ratios, offset, r_squared = fit_response_model(maps, np.asarray(inputs.adf),
                                                           mask=valid, offset=adf_offset)
            source = "non-negative least squares of the ADF on the EDS maps (Eq. 15)"
        else:
            # One regressor, sum_A (z_A / f_A) I_A: only the dose constant is fitted.
            combined = np.tensordot(expected, maps, axes=1)[None]
            (scale,), offset, r_squared = fit_response_model(combined, np.asarray(inputs.adf),
                                                             mask=valid, offset=adf_offset)
            ratios = scale * np.asarray(expected)
            source = "cross sections (Eq. 16, z_A / f_A) with one fitted scale"
        if adf_offset:
            source += " with an ADF offset"
    else:
        ratios, offset, r_squared = _user_ratios(response_ratios, inputs.names), 0.0, None
        source = "user"
    if ratio_floor is not None:
        floor = float(ratio_floor)
        ratios = np.maximum(ratios, floor * np.median(ratios))
        source += f", floored at {floor:g} x the median"
    return ResponseModel(np.asarray(ratios, float), float(offset), r_squared, source, valid)


def reconstruct_hebt(signal, adf, alpha: float, iterations: int, model: HebtModel,
                     source: LineSource, grid: GridOptions, run: RunOptions,
                     absorption: Absorption | None = None) -> list:
    """Implement :meth:`TomographicEDSSpectrum.reconstruct_hebt`.

    Numbers for ``alpha`` and ``iterations``; "auto" is :func:`.auto.auto_hebt`. With
    ``absorption.correction`` the passes of :func:`.absorption.corrected`.
    """
    iterations = validate_sirt_parameters(iterations, run.relaxation)[0]
    alpha = validate_alpha(alpha)
    correct = absorption is not None and bool(absorption.correction)
    # The maps are in memory when the ratios are fitted on them.
    problem = prepare(signal, _required_adf(signal, adf), source, grid,
                      slices_per_block=run.slices_per_block, compute=model.fitted or correct,
                      variance=run.bootstrap is not None)
    if correct:
        assert absorption is not None
        return corrected(signal, problem,
                         lambda p, count: hebt_of(signal, adf, p, alpha, count, model, run),
                         iterations, absorption, run, model.detector_efficiency)
    return hebt_of(signal, adf, problem, alpha, iterations, model, run)


def hebt_of(signal, adf, inputs: Problem, alpha: float, iterations: int, model: HebtModel,
            run: RunOptions) -> list:
    """HEBT of a prepared problem (with its ADF), as Signal2D stacks of ``signal``."""
    response_ratios, unlisted_mass = model.response_ratios, model.unlisted_mass
    names, lazy, layout = inputs.names, inputs.lazy, inputs.layout
    backend = kernel_backend(run.backend, lazy)
    physics_wanted = isinstance(response_ratios, str) and response_ratios == PHYSICS
    expected, physics_note = expected_ratios(signal, inputs.lines, model.detector_efficiency,
                                             required=physics_wanted)
    fit = response_model(inputs, model, expected)
    lazy_mask = isinstance(fit.valid, da.Array)
    excluded = None if fit.valid is None or lazy_mask else ~fit.valid
    if isinstance(inputs.adf, da.Array) and isinstance(response_ratios, dict):
        diagnostics = {"verdict": "not checked", "problems": [
            "lazy data with given response ratios: the check would read the data; run "
            "s.check_hebt_model(adf) to check"]}
    else:
        check = model_check(inputs, fit.ratios, fit.r_squared, fit.offset, excluded,
                            expected, adf)
        diagnostics = check.as_metadata()
        if physics_note:
            diagnostics["physics_check"] = f"not run: {physics_note}"
        if check.verdict != "consistent":
            _logger.warning(
                "HEBT's linear-ADF model looks %s for these data: %s. Compare with "
                "reconstruct_sirt before trusting the HEBT maps.", check.verdict,
                "; ".join(check.problems))
    geometry = inputs.field.geometry
    weighted = fit.valid is not None
    eds_weighted = inputs.field.weights is not None
    kernel = functools.partial(_hebt_kernel, geometry=geometry, ratios=tuple(fit.ratios),
                               alpha=alpha, iterations=iterations, relaxation=run.relaxation,
                               positivity=run.positivity, weighted=weighted,
                               extra_volume=bool(unlisted_mass), eds_weighted=eds_weighted,
                               backend=backend,
                               half_thickness_px=inputs.field.half_thickness_px)
    adf_stack = inputs.adf
    assert adf_stack is not None  # prepare() was given the ADF (_required_adf)
    channels = inputs.eds + [adf_stack - fit.offset if fit.offset else adf_stack]
    if fit.valid is not None:
        channels.append(fit.valid.astype(np.float32))
    if eds_weighted:
        channels.append(inputs.field.weights)
    stacked = (da.stack([da.asarray(c) for c in channels]) if lazy else np.stack(channels))
    n_out = len(names) + bool(unlisted_mass)
    volumes = run_blocks(kernel, stacked, n_out, geometry, lazy=lazy,
                         slices_per_block=run.slices_per_block, iterations=iterations,
                         show_progressbar=run.show_progressbar, description="HEBT")
    parameters = base_parameters(layout, "HEBT", iterations, run, inputs.sigma, backend)
    parameters.update(inputs.field.record)
    parameters.update({
        "alpha": alpha,
        "response_ratios": dict(zip(names, map(float, fit.ratios))),
        "response_ratio_source": fit.source,
        "adf_offset": fit.offset,
        "excluded_adf_fraction": (float("nan") if lazy_mask else
                                  0.0 if excluded is None else float(excluded.mean())),
        "unlisted_mass_volume": bool(unlisted_mass),
        "values": "Xb_A = z_A C_A rho on the ADF scale (paper Eq. 17)",
        "Diagnostics": diagnostics,
    })
    if fit.r_squared is not None:
        parameters["response_ratio_r_squared"] = float(fit.r_squared)
    parameters["adf_title"] = title_of(adf)
    out = [reconstruction_signal(signal, layout, volume, parameters, line)
           for volume, line in zip(volumes, inputs.lines)]
    if run.bootstrap is not None:
        out = _with_uncertainty(out, inputs, fit, alpha, iterations, run, backend)
    if unlisted_mass:
        extra = dict(parameters, signal=UNLISTED_MASS)
        out.append(reconstruction_signal(signal, layout, volumes[-1], extra, None,
                                         label="mass with no listed line (ADF only)"))
    return out


def _with_uncertainty(out: list, inputs: Problem, fit: ResponseModel, alpha: float,
                      iterations: int, run: RunOptions, backend: str) -> list:
    """The bootstrap's variances and the lines' covariances, attached to ``out``.

    The EDS maps are repeated as SIRT's (Gaussian, the maps' variance) about ``W Xb_A /
    r_A``, the ADF about ``W sum_A Xb_A`` with its residual there; every repeat is
    reconstructed by HEBT with the same ratios, alpha and iterations (the ratios' own noise
    is not in it).
    """
    k = len(inputs.lines)
    solve = functools.partial(_bootstrap_solve, ratios=tuple(fit.ratios), alpha=alpha,
                              iterations=iterations, relaxation=run.relaxation,
                              positivity=run.positivity, backend=backend)
    adf = inputs.adf
    assert adf is not None  # prepare() was given the ADF
    if fit.offset:
        adf = adf - fit.offset
    valid = fit.valid
    adf_weights = (valid.astype(np.float32) if valid is not None
                   else da.ones_like(adf, dtype=np.float32) if isinstance(adf, da.Array)
                   else np.ones(np.shape(adf), np.float32))
    model = AdfRepeats(
        (1.0,) * k, 1.0, 0.0,
        description="Gaussian about the fitted W sum_A Xb_A (HEBT's linear model, offset "
                    "subtracted), of the ADF's mean squared residual about the HEBT fit, "
                    "slice by slice; the response ratios held at the data's")
    return add_uncertainty(out, solve, replace(inputs, adf=adf), run, iterations, "HEBT",
                           poisson=False, joint=True, adf_model=model, adf_weights=adf_weights,
                           channel_scales=fit.ratios, units="ADF units (Xb_A)")


def check_hebt_model(signal, adf, model: HebtModel, source: LineSource,
                     grid: GridOptions) -> dict:
    """Implement :meth:`TomographicEDSSpectrum.check_hebt_model`.

    ``grid``'s padding and thickness are not used: nothing is reconstructed.
    """
    problem = prepare(signal, _required_adf(signal, adf), source,
                      replace(grid, padding_px=0, thickness_nm=None), compute=True)
    return check_of(signal, adf, problem, model)


def check_of(signal, adf, inputs: Problem, model: HebtModel) -> dict:
    """HEBT's model check on a prepared problem whose maps are in memory."""
    import hyperspy.api as hs

    physics_wanted = (isinstance(model.response_ratios, str)
                      and model.response_ratios == PHYSICS)
    expected, physics_note = expected_ratios(signal, inputs.lines, model.detector_efficiency,
                                             required=physics_wanted)
    fit = response_model(inputs, model, expected, with_floor=False)
    ratios, r_squared = fit.ratios, fit.r_squared
    check = model_check(inputs, ratios, r_squared, fit.offset,
                        None if fit.valid is None else ~fit.valid, expected, adf)
    layout = inputs.layout
    # Residual back in the series' navigation layout (tilt, y, x).
    stack_axes = [a for a in (layout.slice_axis, layout.tilt_axis, layout.detector_axis)
                  if a is not None]
    residual = check.residual if layout.slice_axis is not None else check.residual[0]
    order = np.argsort([a.index_in_array for a in stack_axes])
    residual = np.transpose(residual, order)
    residual_signal = hs.signals.BaseSignal(residual.astype(np.float32),
                                            axes=[stack_axes[i].get_axis_dictionary()
                                                  for i in order]).transpose(signal_axes=0)
    residual_signal.metadata.General.title = "ADF - sum_A r_A I_A (HEBT model residual)"
    per_tilt = hs.signals.Signal1D(np.asarray(check.residual_per_tilt, np.float32),
                                   axes=[layout.tilt_axis.get_axis_dictionary()])
    per_tilt.metadata.General.title = "relative RMS residual per tilt"
    return {
        "verdict": check.verdict,
        "problems": check.problems,
        "response_ratios": dict(zip(inputs.names, map(float, ratios))),
        "r_squared": None if r_squared is None else float(r_squared),
        "adf_offset": fit.offset,
        "saturated_adf_fraction": check.saturated_fraction,
        "clipped_adf_fraction": check.clipped_fraction,
        "physics_ratio_spread": check.physics_ratio_spread,
        "physics_check": f"not run: {physics_note}" if physics_note else "run",
        "residual": residual_signal,
        "residual_per_tilt": per_tilt,
    }
