"""Plumbing of ``quantify_cross_section``: reconstructions -> weight-fraction signals."""

from __future__ import annotations

import copy
import logging
from numbers import Real

import dask.array as da
import numpy as np
from hyperspy.misc.utils import DictionaryTreeBrowser

from .. import physics
from ..quantification import (
    MAX_RELATIVE_DENOMINATOR_STD,
    composition_fractions,
    composition_fractions_of,
    esf_threshold,
    fraction_variances,
    normalised_total,
    total_of,
)
from .intensities import window_share_of

_logger = logging.getLogger(__name__)

_EQUATION = {
    "SIRT": ("f_A", "Yuan et al. 2021 Eq. 12: C_A = (X_A/f_A) / sum_B (X_B/f_B), "
                    "f_A = sigma_ion omega p eps / M (Eq. 7)"),
    "ML-EM": ("f_A", "Yuan et al. 2021 Eq. 12: C_A = (X_A/f_A) / sum_B (X_B/f_B), "
                     "f_A = sigma_ion omega p eps / M (Eq. 7)"),
    "Poisson-TV": ("f_A", "Yuan et al. 2021 Eq. 12: C_A = (X_A/f_A) / sum_B (X_B/f_B), "
                          "f_A = sigma_ion omega p eps / M (Eq. 7)"),
    "Joint Poisson-TV": ("f_A", "Yuan et al. 2021 Eq. 12: C_A = (X_A/f_A) / sum_B (X_B/f_B), "
                                "f_A = sigma_ion omega p eps / M (Eq. 7)"),
    "Fused": ("f_A", "Yuan et al. 2021 Eq. 12: C_A = (X_A/f_A) / sum_B (X_B/f_B), "
                     "f_A = sigma_ion omega p eps / M (Eq. 7)"),
    "HEBT": ("z_A", "Yuan et al. 2021 Eq. 18: C_A = (X_A/z_A) / sum_B (X_B/z_B), "
                    "z_A = sigma_elastic / M (Eq. 14)"),
}


#: Algorithms whose maps are the EDS lines' own (quantified with f_A; the fused model's
#: volumes are the lines' counts, the ADF only shaping them).
EDS_ONLY = ("SIRT", "ML-EM", "Poisson-TV", "Joint Poisson-TV", "Fused")

#: Algorithms whose lines' variances are independent (each line reconstructed by itself):
#: the others' propagation into fractions needs the lines' covariances.
INDEPENDENT_LINES = ("SIRT", "ML-EM", "Poisson-TV")

#: Why the others' lines are correlated.
_CORRELATION = {"HEBT": "their lines share the ADF term",
                "Joint Poisson-TV": "their lines share one total variation",
                "Fused": "their lines share the ADF term"}


def _reconstruction_parameters(reconstructions):
    from hyperspy.signal import BaseSignal

    if isinstance(reconstructions, BaseSignal) or not hasattr(reconstructions, "__len__"):
        raise TypeError(
            "reconstructions must be the list returned by reconstruct_sirt or "
            "reconstruct_hebt (one signal per line)."
        )
    if len(reconstructions) == 0:
        raise ValueError("reconstructions is empty: give one reconstruction per element.")
    lines, algorithms = [], []
    for i, rec in enumerate(reconstructions):
        if not isinstance(rec, BaseSignal):
            raise TypeError(f"reconstructions[{i}] must be a HyperSpy signal, got "
                            f"{type(rec).__name__}.")
        node = rec.metadata.get_item("Reconstruction")
        if node is not None and node.get_item("signal") == "unlisted ADF mass":
            raise ValueError(
                f"reconstructions[{i}] is HEBT's volume of unlisted mass, not an element: "
                "leave it out (rec[:-1]) when quantifying."
            )
        xray_lines = rec.metadata.get_item("Sample.xray_lines", [])
        if node is None or len(xray_lines) != 1:
            raise ValueError(
                f"reconstructions[{i}] has no metadata.Reconstruction node or not exactly one "
                "metadata.Sample.xray_lines entry; pass the signals returned by "
                "reconstruct_sirt / reconstruct_hebt."
            )
        algorithm = node.get_item("algorithm")
        if algorithm not in _EQUATION:
            raise ValueError(
                f"reconstructions[{i}] was made by {algorithm!r}; quantification knows "
                f"{sorted(_EQUATION)}."
            )
        lines.append(xray_lines[0])
        algorithms.append(algorithm)
    if len(set(algorithms)) != 1:
        raise ValueError(
            f"reconstructions mix algorithms {algorithms}: SIRT maps scale with f_A and HEBT "
            "maps with z_A, so they cannot be normalised together."
        )
    elements = [physics.split_xray_line(line)[0] for line in lines]
    repeated = sorted({e for e in elements if elements.count(e) > 1})
    if repeated:
        raise ValueError(
            f"Give one line per element: {repeated} appear more than once in {lines}."
        )
    _check_same_geometry(reconstructions)
    return lines, elements, algorithms[0]


def _check_same_geometry(reconstructions):
    reference = reconstructions[0]
    ref_axes = _axes_description(reference)
    ref_tilts = reference.metadata.get_item("Reconstruction.tilt_angles_deg")
    for i, rec in enumerate(reconstructions[1:], start=1):
        tilts = rec.metadata.get_item("Reconstruction.tilt_angles_deg")
        same_tilts = (ref_tilts is None) == (tilts is None) and (
            tilts is None or np.allclose(np.asarray(tilts), np.asarray(ref_tilts)))
        if _axes_description(rec) != ref_axes or not same_tilts:
            raise ValueError(
                f"reconstructions[{i}] comes from a different geometry than "
                f"reconstructions[0] (axes {_axes_description(rec)} vs {ref_axes}, or other "
                "tilt angles); quantify reconstructions of one tilt series together."
            )


def _axes_description(signal):
    return [(a.name, a.size, round(float(a.scale), 9), round(float(a.offset), 9), a.units)
            for a in signal.axes_manager._axes]


def _beam_energy(signal, reconstructions):
    energy = signal.metadata.get_item("Acquisition_instrument.TEM.beam_energy")
    if energy is None:
        raise ValueError(
            "The beam energy is not in the metadata; set it (keV) with "
            "s.metadata.set_item('Acquisition_instrument.TEM.beam_energy', 200.0)."
        )
    energy = float(energy)
    for i, rec in enumerate(reconstructions):
        other = rec.metadata.get_item("Acquisition_instrument.TEM.beam_energy")
        if other is not None and not np.isclose(float(other), energy):
            raise ValueError(
                f"reconstructions[{i}] records a beam energy of {other} keV but this signal "
                f"has {energy} keV; quantify reconstructions with the series they came from."
            )
    return energy


def _factors(lines, elements, algorithm, beam_energy_kev, factors, detector_efficiency):
    name = _EQUATION[algorithm][0]
    if factors is None:
        if algorithm in EDS_ONLY:
            values = [physics.eds_factor(line, beam_energy_kev, detector_efficiency)
                      for line in lines]
        else:
            values = [physics.haadf_factor(element, beam_energy_kev) for element in elements]
        return np.asarray(values), "computed"
    if isinstance(factors, dict):
        values = []
        for line, element in zip(lines, elements):
            key = line if line in factors else element
            if key not in factors:
                raise ValueError(
                    f"factors has no entry for {line} (keys may be lines or elements); it has "
                    f"{sorted(factors)}."
                )
            values.append(factors[key])
    else:
        values = list(factors)
        if len(values) != len(lines):
            raise ValueError(
                f"factors has {len(values)} values for {len(lines)} reconstructions {lines}; "
                f"give one {name} per line, in the same order."
            )
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"factors must be finite and > 0 (barn mol/g), got {values.tolist()}.")
    return values, "user"


def _warn_uncorrected(lines, shares) -> None:
    """Say so when integrated maps could not be corrected for their windows' share."""
    bare = [line for line, (_, note) in zip(lines, shares) if "not corrected" in note]
    if bare:
        _logger.warning(
            "The maps of %s were integrated in windows whose share of each line is not "
            "known (%s): lines of different widths are then not in proportion to their "
            "counts (1-FWHM windows keep 0.62-0.78 of a line at 20 eV channels). Let the "
            "reconstruction integrate the maps, or fit them (s.fit_line_intensities()).",
            ", ".join(bare), shares[lines.index(bare[0])][1])


def _variances(reconstructions) -> list | None:
    """Each reconstruction's ``Noise_properties.variance`` data, or None when none has one."""
    from hyperspy.signal import BaseSignal

    found = [rec.metadata.get_item("Signal.Noise_properties.variance")
             for rec in reconstructions]
    if all(v is None for v in found):
        return None
    missing = [i for i, v in enumerate(found) if v is None]
    if missing:
        raise ValueError(
            f"reconstructions {missing} have no metadata.Signal.Noise_properties.variance and "
            "the others have one: the fractions' variance needs every line's. Reconstruct "
            "every line with uncertainty=, or delete the variances "
            "(rec.metadata.Signal.Noise_properties.del_item('variance')).")
    out = []
    for rec, variance in zip(reconstructions, found):
        data = variance.data if isinstance(variance, BaseSignal) else variance
        if np.ndim(data) == 0:
            data = np.full(rec.data.shape, float(data), np.float32)
        if tuple(np.shape(data)) != tuple(rec.data.shape):
            raise ValueError(
                f"{rec.metadata.General.title}: its Noise_properties.variance has shape "
                f"{tuple(np.shape(data))}, the reconstruction {tuple(rec.data.shape)}.")
        out.append(data)
    return out


def _covariances(reconstructions, lines) -> dict | None:
    """Every pair of lines' ``Noise_properties.Covariance`` data, or None when none is given.

    A pair's covariance is on its first line's reconstruction (``uncertainty.attach``).

    Raises
    ------
    ValueError
        Some pairs have one and others not, or one is shaped unlike the reconstructions.
    """
    from hyperspy.signal import BaseSignal

    from .uncertainty import COVARIANCE_NODE

    found = {}
    for i, rec in enumerate(reconstructions):
        for j in range(i + 1, len(reconstructions)):
            for first, other in ((rec, lines[j]), (reconstructions[j], lines[i])):
                item = first.metadata.get_item(f"{COVARIANCE_NODE}.{other}")
                if item is not None:
                    found[(i, j)] = item.data if isinstance(item, BaseSignal) else item
                    break
    if not found:
        return None
    missing = [(lines[i], lines[j]) for i in range(len(lines))
               for j in range(i + 1, len(lines)) if (i, j) not in found]
    if missing:
        raise ValueError(
            f"The reconstructions carry covariances for some pairs of lines but not for "
            f"{missing}: reconstruct every line together with uncertainty=.")
    for (i, j), data in found.items():
        if tuple(np.shape(data)) != tuple(reconstructions[i].data.shape):
            raise ValueError(
                f"The covariance of {lines[i]} with {lines[j]} has shape "
                f"{tuple(np.shape(data))}, the reconstruction {reconstructions[i].data.shape}.")
    return found


def _relative_uncertainty(factor_uncertainty, lines, elements) -> np.ndarray | None:
    """``factor_uncertainty`` as one relative value per line, checked."""
    if factor_uncertainty is None:
        return None
    if isinstance(factor_uncertainty, dict):
        values = []
        for line, element in zip(lines, elements):
            key = line if line in factor_uncertainty else element
            if key not in factor_uncertainty:
                raise ValueError(f"factor_uncertainty has no entry for {line} (keys may be "
                                 f"lines or elements); it has {sorted(factor_uncertainty)}.")
            values.append(factor_uncertainty[key])
    elif isinstance(factor_uncertainty, Real):
        values = [factor_uncertainty] * len(lines)
    else:
        values = list(factor_uncertainty)
        if len(values) != len(lines):
            raise ValueError(f"factor_uncertainty has {len(values)} values for {len(lines)} "
                             f"lines {lines}.")
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        array = np.full(len(lines), np.nan)
    if not np.all(np.isfinite(array)) or np.any(array < 0) or np.any(array >= 1):
        raise ValueError(f"factor_uncertainty must be relative standard uncertainties in "
                         f"[0, 1) (0.05 = 5 %), got {factor_uncertainty!r}.")
    return array


def quantify_cross_section(signal, reconstructions, *, factors, threshold, composition_units,
                           detector_efficiency, factor_uncertainty=None,
                           overwrite_reconstructions=False):
    """Implementation of :meth:`TomographicEDSSpectrum.quantify_cross_section`.

    ``overwrite_reconstructions=True`` (in-memory reconstructions only) writes the
    fractions into the reconstructions' own arrays, which the fraction signals then
    share: no second set of volumes in memory, for a caller that owns the
    reconstructions and has saved them (the CLI pipeline). Never for a user's signals.
    Read-only or integer arrays get new arrays instead (the result is the same).
    """
    from hyperspy.signals import LazySignal2D, Signal2D

    lines, elements, algorithm = _reconstruction_parameters(reconstructions)
    if composition_units not in ("weight", "atomic"):
        raise ValueError(
            f"composition_units must be 'weight' or 'atomic', got {composition_units!r}."
        )
    if not (threshold is None or threshold == "esf" or
            (isinstance(threshold, Real) and np.isfinite(threshold) and threshold >= 0)):
        raise ValueError(
            f"threshold must be 'esf', None or a number >= 0 (in units of sum X_A/f_A), "
            f"got {threshold!r}."
        )
    beam_energy_kev = _beam_energy(signal, reconstructions)
    values, source = _factors(lines, elements, algorithm, beam_energy_kev, factors,
                              detector_efficiency)
    shares = None
    if algorithm in EDS_ONLY and source == "computed":
        shares = [window_share_of(rec.metadata.get_item("Reconstruction.intensities",
                                                        DictionaryTreeBrowser()).as_dictionary())
                  for rec in reconstructions]
        values = values * np.array([share for share, _ in shares])
        _warn_uncorrected(lines, shares)
    relative = _relative_uncertainty(factor_uncertainty, lines, elements)
    variances = _variances(reconstructions)
    if relative is not None and variances is None:
        raise ValueError(
            "factor_uncertainty is added to the reconstructions' variance, and these carry "
            "none: reconstruct with uncertainty= (any reconstruct method).")
    covariances = _covariances(reconstructions, lines) if variances is not None else None
    if variances is not None and algorithm not in INDEPENDENT_LINES and covariances is None:
        raise ValueError(
            f"The {algorithm} reconstructions carry a variance but not the covariances "
            f"between their lines, and {_CORRELATION[algorithm]}: their noise is correlated "
            "and a propagation that takes the lines as independent would be wrong. Delete "
            "the variances to quantify them.")
    lazy = any(rec._lazy for rec in reconstructions)
    if overwrite_reconstructions and lazy:
        raise ValueError("overwrite_reconstructions needs reconstructions in memory.")
    threshold_info = {"threshold_method": "none" if threshold is None else
                      ("esf" if threshold == "esf" else "user")}
    weights = ([physics.atomic_weight(e) for e in elements]
               if composition_units == "atomic" else None)
    if lazy:
        stack = da.stack([da.asarray(rec.data) for rec in reconstructions])
        threshold_value = threshold
        if threshold == "esf":
            _, total = normalised_total(stack, values)
            threshold_value = esf_threshold(total)
            threshold_info["threshold_note"] = (
                "fitted when the data are computed (lazy); "
                "hyperspy_hebt.quantification.esf_threshold gives the value")
        elif threshold is not None:
            threshold_info["threshold"] = float(threshold)
        fractions = composition_fractions(stack, values, threshold_value,
                                          atomic_weights=weights)
        if variances is not None:
            variances = fraction_variances(stack, variances, values, threshold_value,
                                           weights, relative, covariances)
    else:
        # In memory: block by block, no stacked copy (bounded temporaries).
        volumes = [np.asarray(rec.data) for rec in reconstructions]
        threshold_value = threshold
        if threshold == "esf":
            fit = esf_threshold(total_of(volumes, values))
            threshold_value = fit.threshold
            threshold_info["threshold"] = fit.threshold
            threshold_info["esf_fit"] = fit.parameters
        elif threshold is not None:
            threshold_info["threshold"] = float(threshold)
        if variances is not None:  # before the fractions may take the volumes' memory
            variances = fraction_variances(volumes, variances, values, threshold_value,
                                           weights, relative, covariances)
        fractions = composition_fractions_of(
            volumes, values, threshold_value, atomic_weights=weights,
            out=volumes if overwrite_reconstructions and all(
                v.flags.writeable and np.issubdtype(v.dtype, np.floating) for v in volumes)
            else None)
    factor_name, equation = _EQUATION[algorithm]
    units = f"{composition_units} fraction"
    out = []
    for i, (rec, line, element) in enumerate(zip(reconstructions, lines, elements)):
        metadata = rec.metadata.as_dictionary()
        # The reconstruction's variance is not the fraction's (and is a whole volume).
        noise = metadata.get("Signal", {}).get("Noise_properties", {})
        for key in ("variance", "_sig_variance"):
            noise.pop(key, None)
        if "Signal" in metadata and not noise:
            metadata["Signal"].pop("Noise_properties", None)
        metadata = copy.deepcopy(metadata)
        metadata.pop("_HyperSpy", None)
        metadata["General"]["title"] = f"{element} {units} ({algorithm})"
        metadata.setdefault("Signal", {})["quantity"] = f"{element} {units} (0-1)"
        metadata["Quantification"] = {
            "method": "cross_section",
            "equation": equation,
            "factor_name": factor_name,
            "factor": float(values[i]),
            "factor_units": "barn mol/g",
            "factor_source": source,
            "factors_of_all_lines": dict(zip(lines, map(float, values))),
            "beam_energy_kev": beam_energy_kev,
            "composition_units": f"{units}, 0-1 (exspy's quantification gives percent)",
            "elements": elements,
            **threshold_info,
        }
        if shares is not None:
            metadata["Quantification"]["window_share"] = shares[i][0]
            metadata["Quantification"]["window_share_source"] = shares[i][1]
            metadata["Quantification"]["factor_source"] = (
                "computed, times the share of the line its map holds (window_share)")
        if algorithm in EDS_ONLY and source == "computed":
            metadata["Quantification"]["detector_efficiency"] = (
                physics.detector_efficiency_for_line(line, detector_efficiency))
            if isinstance(detector_efficiency, physics.DetectorModel):
                metadata["Quantification"]["detector_model"] = repr(detector_efficiency)
        axes = [a.get_axis_dictionary() for a in rec.axes_manager._axes]
        cls = LazySignal2D if lazy else Signal2D
        if variances is not None:
            metadata["Quantification"]["Uncertainty"] = _uncertainty_record(relative, lines,
                                                                            covariances)
            metadata["Signal"]["Noise_properties"] = {"variance": cls(
                variances[i], axes=axes,
                metadata={"General": {"title": f"Variance of {element} {units}"},
                          "Signal": {"quantity": f"variance of {element} {units}"}})}
        out.append(cls(fractions[i], axes=axes, metadata=metadata,
                       original_metadata=rec.original_metadata.as_dictionary()))
    return out


def _uncertainty_record(relative, lines, covariances=None) -> dict:
    lines_are = ("with the lines' covariances (Noise_properties.Covariance)"
                 if covariances else "lines independent")
    return {
        "propagation": "first order (delta method) from the reconstructions' "
                       f"Noise_properties.variance, {lines_are}, conditional on the "
                       "threshold (0 outside); NaN where the standard deviation of "
                       "sum_B X_B/f_B exceeds "
                       f"{MAX_RELATIVE_DENOMINATOR_STD} of it (no first-order variance)",
        "factor_uncertainty": ("not included (none given)" if relative is None
                               else dict(zip(lines, map(float, relative)))),
        "variance": "metadata.Signal.Noise_properties.variance (fractions squared)",
    }
