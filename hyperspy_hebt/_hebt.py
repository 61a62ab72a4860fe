"""Plumbing of ``reconstruct_hebt``: EDS maps + ADF series -> ratios -> joint SIRT."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from ._intensities import adf_series, line_intensities, title_of
from ._layout import TiltSeriesLayout
from ._reconstruction import (base_parameters, filtered_sinograms, reconstruction_signal,
                              run_blocks, validate_common)
from .diagnostics import check_linear_adf
from .tomography import fit_response_ratios, get_projector, hebt, validate_alpha

_logger = logging.getLogger(__name__)


def _hebt_kernel(block, geometry, ratios, alpha, iterations, relaxation, positivity,
                 callback=None):
    """(k + 1, slices, T, D) with the ADF last -> (k, slices, Z, X)."""
    return hebt(get_projector(geometry), block[:-1], block[-1], ratios, alpha, iterations,
                relaxation, positivity, callback)


def _user_ratios(response_ratios, names):
    if not isinstance(response_ratios, dict):
        raise TypeError(
            "response_ratios must be None (fit them) or a dict {xray_line: ratio}, got "
            f"{type(response_ratios).__name__}."
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


@dataclass
class HebtInputs:
    """Validated, filtered sinogram stacks ``(slices, tilts, detector)`` for HEBT."""

    layout: TiltSeriesLayout
    lines: list
    eds: list
    adf: object
    lazy: bool
    sigma: tuple | None

    @property
    def names(self):
        return [line.xray_line for line in self.lines]


def prepare_inputs(signal, adf, *, xray_lines, intensities, integration_windows,
                   background_windows, gaussian_sigma, rotation_axis, slices_per_block,
                   compute=False):
    """Line maps and ADF as sinogram stacks; ``compute`` brings lazy ones into memory
    (once) while keeping them usable as dask arrays chunked by slices."""
    layout = TiltSeriesLayout.from_signal(signal, rotation_axis)
    sigma = layout.sigma_in_stack_order(gaussian_sigma)
    adf_data = adf_series(signal, adf)
    lines = line_intensities(signal, xray_lines, intensities, integration_windows,
                             background_windows)
    lazy = signal._lazy or isinstance(adf_data, da.Array) or any(
        isinstance(line.data, da.Array) for line in lines)
    eds = [filtered_sinograms(layout.to_stack(line.data), sigma, lazy, slices_per_block)
           for line in lines]
    # The ADF signal is the low-noise modality: it is not filtered (paper section 3.1.1).
    adf_stack = filtered_sinograms(layout.to_stack(adf_data), None, lazy, slices_per_block)
    if compute and lazy:
        # The maps are small: compute them once and build any graph on them, so
        # the spectra are read a single time.
        eds, adf_stack = dask.compute(eds, adf_stack)
        eds = [da.from_array(e, chunks=(slices_per_block, -1, -1)) for e in eds]
        adf_stack = da.from_array(adf_stack, chunks=(slices_per_block, -1, -1))
    return HebtInputs(layout, lines, eds, adf_stack, lazy, sigma)


def model_check(inputs: HebtInputs, ratios, r_squared):
    """:func:`check_linear_adf` on prepared (in-memory) inputs."""
    return check_linear_adf(np.stack([np.asarray(e) for e in inputs.eds]),
                            np.asarray(inputs.adf), ratios,
                            np.nan if r_squared is None else r_squared, inputs.names,
                            tilt_axis=1)


def reconstruct_hebt(signal, adf, *, alpha, iterations, response_ratios, xray_lines,
                     intensities, integration_windows, background_windows, gaussian_sigma,
                     relaxation, positivity, show_progressbar, rotation_axis,
                     slices_per_block):
    """Implementation of :meth:`TomographicEDSSpectrum.reconstruct_hebt`."""
    iterations, relaxation, slices_per_block, show_progressbar = validate_common(
        iterations, relaxation, slices_per_block, show_progressbar)
    alpha = validate_alpha(alpha)
    inputs = prepare_inputs(signal, adf, xray_lines=xray_lines, intensities=intensities,
                            integration_windows=integration_windows,
                            background_windows=background_windows,
                            gaussian_sigma=gaussian_sigma, rotation_axis=rotation_axis,
                            slices_per_block=slices_per_block,
                            compute=response_ratios is None)
    names, lazy, layout = inputs.names, inputs.lazy, inputs.layout
    if response_ratios is None:
        ratios, r_squared = fit_response_ratios(
            np.stack([np.asarray(e) for e in inputs.eds]), np.asarray(inputs.adf))
        source = "non-negative least squares of the ADF on the EDS maps (Eq. 15)"
    else:
        ratios, r_squared = _user_ratios(response_ratios, names), None
        source = "user"
    if isinstance(inputs.adf, da.Array) and response_ratios is not None:
        diagnostics = {"verdict": "not checked", "problems": [
            "lazy data with given response ratios: the check would read the data; run "
            "s.check_hebt_model(adf) to check"]}
    else:
        check = model_check(inputs, ratios, r_squared)
        diagnostics = check.as_metadata()
        if check.verdict != "consistent":
            _logger.warning(
                "HEBT's linear-ADF model looks %s for these data: %s. Compare with "
                "reconstruct_sirt before trusting the HEBT maps.", check.verdict,
                "; ".join(check.problems))
    geometry = layout.geometry()
    kernel = functools.partial(_hebt_kernel, geometry=geometry, ratios=tuple(ratios),
                               alpha=alpha, iterations=iterations, relaxation=relaxation,
                               positivity=positivity)
    stacked = (da.stack(inputs.eds + [inputs.adf]) if lazy
               else np.stack(inputs.eds + [inputs.adf]))
    volumes = run_blocks(kernel, stacked, len(names), geometry, lazy=lazy,
                         slices_per_block=slices_per_block, iterations=iterations,
                         show_progressbar=show_progressbar, description="HEBT")
    parameters = base_parameters(layout, "HEBT", iterations, relaxation, positivity,
                                 inputs.sigma)
    parameters.update({
        "alpha": alpha,
        "response_ratios": dict(zip(names, map(float, ratios))),
        "response_ratio_source": source,
        "values": "Xb_A = z_A C_A rho on the ADF scale (paper Eq. 17)",
        "Diagnostics": diagnostics,
    })
    if r_squared is not None:
        parameters["response_ratio_r_squared"] = float(r_squared)
    parameters["adf_title"] = title_of(adf)
    return [reconstruction_signal(signal, layout, volume, parameters, line)
            for volume, line in zip(volumes, inputs.lines)]


def check_hebt_model(signal, adf, *, xray_lines, intensities, integration_windows,
                     background_windows, gaussian_sigma, response_ratios, rotation_axis):
    """Implementation of :meth:`TomographicEDSSpectrum.check_hebt_model`."""
    import hyperspy.api as hs

    inputs = prepare_inputs(signal, adf, xray_lines=xray_lines, intensities=intensities,
                            integration_windows=integration_windows,
                            background_windows=background_windows,
                            gaussian_sigma=gaussian_sigma, rotation_axis=rotation_axis,
                            slices_per_block=64, compute=True)
    if response_ratios is None:
        ratios, r_squared = fit_response_ratios(
            np.stack([np.asarray(e) for e in inputs.eds]), np.asarray(inputs.adf))
    else:
        ratios, r_squared = _user_ratios(response_ratios, inputs.names), None
    check = model_check(inputs, ratios, r_squared)
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
        "saturated_adf_fraction": check.saturated_fraction,
        "clipped_adf_fraction": check.clipped_fraction,
        "residual": residual_signal,
        "residual_per_tilt": per_tilt,
    }
