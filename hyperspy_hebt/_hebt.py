"""Plumbing of ``reconstruct_hebt``: EDS maps + ADF series -> ratios -> joint SIRT."""

from __future__ import annotations

import functools

import dask
import dask.array as da
import numpy as np

from ._intensities import adf_series, line_intensities, title_of
from ._layout import TiltSeriesLayout
from ._reconstruction import (base_parameters, filtered_sinograms, reconstruction_signal,
                              run_blocks, validate_common)
from .tomography import fit_response_ratios, get_projector, hebt, validate_alpha


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


def reconstruct_hebt(signal, adf, *, alpha, iterations, response_ratios, xray_lines,
                     intensities, integration_windows, background_windows, gaussian_sigma,
                     relaxation, positivity, show_progressbar, rotation_axis,
                     slices_per_block):
    """Implementation of :meth:`TomographicEDSSpectrum.reconstruct_hebt`."""
    iterations, relaxation, slices_per_block, show_progressbar = validate_common(
        iterations, relaxation, slices_per_block, show_progressbar)
    alpha = validate_alpha(alpha)
    layout = TiltSeriesLayout.from_signal(signal, rotation_axis)
    sigma = layout.sigma_in_stack_order(gaussian_sigma)
    adf_data = adf_series(signal, adf)
    lines = line_intensities(signal, xray_lines, intensities, integration_windows,
                             background_windows)
    names = [line.xray_line for line in lines]
    lazy = signal._lazy or isinstance(adf_data, da.Array) or any(
        isinstance(line.data, da.Array) for line in lines)
    eds = [filtered_sinograms(layout.to_stack(line.data), sigma, lazy, slices_per_block)
           for line in lines]
    # The ADF signal is the low-noise modality: it is not filtered (paper section 3.1.1).
    adf_stack = filtered_sinograms(layout.to_stack(adf_data), None, lazy, slices_per_block)
    if response_ratios is None:
        if lazy:
            # The fit needs every pixel; compute the (small) maps once and build the
            # reconstruction graph on them, so the spectra are read a single time.
            eds, adf_stack = dask.compute(eds, adf_stack)
            eds = [da.from_array(e, chunks=(slices_per_block, -1, -1)) for e in eds]
            adf_stack = da.from_array(adf_stack, chunks=(slices_per_block, -1, -1))
        ratios, r_squared = fit_response_ratios(
            np.stack([np.asarray(e) for e in eds]), np.asarray(adf_stack))
        source = "non-negative least squares of the ADF on the EDS maps (Eq. 15)"
    else:
        ratios, r_squared = _user_ratios(response_ratios, names), None
        source = "user"
    geometry = layout.geometry()
    kernel = functools.partial(_hebt_kernel, geometry=geometry, ratios=tuple(ratios),
                               alpha=alpha, iterations=iterations, relaxation=relaxation,
                               positivity=positivity)
    stacked = (da.stack(eds + [adf_stack]) if lazy else np.stack(eds + [adf_stack]))
    volumes = run_blocks(kernel, stacked, len(lines), geometry, lazy=lazy,
                         slices_per_block=slices_per_block, iterations=iterations,
                         show_progressbar=show_progressbar, description="HEBT")
    parameters = base_parameters(layout, "HEBT", iterations, relaxation, positivity, sigma)
    parameters.update({
        "alpha": alpha,
        "response_ratios": dict(zip(names, map(float, ratios))),
        "response_ratio_source": source,
        "values": "Xb_A = z_A C_A rho on the ADF scale (paper Eq. 17)",
    })
    if r_squared is not None:
        parameters["response_ratio_r_squared"] = float(r_squared)
    parameters["adf_title"] = title_of(adf)
    return [reconstruction_signal(signal, layout, volume, parameters, line)
            for volume, line in zip(volumes, lines)]
