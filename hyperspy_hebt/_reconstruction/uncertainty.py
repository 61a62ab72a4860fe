"""Per-voxel uncertainty of a reconstruction by parametric bootstrap (issue 16).

Why a parametric bootstrap about the fitted projections and not a tilt jackknife:
leaving a tilt out changes the missing wedge and the angular sampling, so a jackknife's
spread mixes the counting noise with the geometry's own artefacts, and it is biased for
semi-converged iterative estimators. Repeating the measurement's noise about the
reconstruction's own projections and reconstructing each repeat exactly like the data
(same iterations, positivity, filter, grid and weights) measures the spread of the
estimator itself.

1. The fitted projections ``y_fit = W x`` (``x`` on the full, padded grid).
2. ``replicates`` repeats of the maps. Least-squares methods (SIRT): ``y_fit`` plus
   Gaussian noise of the measured maps' variance (the spectra's Poisson statistics
   through the integration, :func:`.intensities.integration_variance`), filtered like
   the maps. Poisson methods (ML-EM, Poisson + TV): Poisson counts of mean ``y_fit``,
   filtered like the maps. One generator per (seed, line, replicate, slice): eager and
   lazy runs draw the same noise.
3. Each repeat reconstructed; the per-voxel sample variance over the repeats.

Solvers that couple the lines (joint total variation, HEBT, the fused model) reconstruct
every line of a repeat together, and the per-voxel covariance of every pair of lines is
kept as well: quantification needs it, the lines' noise being correlated through the
shared term. The ADF of HEBT and of the fused model is repeated too: its fitted model
(``W sum_A Xb_A`` for HEBT, ``W sum_c q_c x_c^gamma`` for the fused model) plus Gaussian
noise of its residual about the fit, slice by slice. HEBT's volumes are on the ADF's
scale (``Xb_A``): its fitted EDS projections are ``W Xb_A / r_A``, in the maps' units.

What it does not hold: bias (a semi-converged SIRT's blur, the missing wedge), and
systematic errors (alignment, the physics factors, an absorption correction's factors,
which are taken as exact).
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np

from ..filtering import TRUNCATE, filtered_sinograms
from ..tomography import ParallelBeamGeometry
from .blocks import BLOCK_VOLUME_BYTES
from .options import Bootstrap, RunOptions
from .problem import Problem

_META4 = np.empty((0, 0, 0, 0), np.float32)


#: The noise stream of the fused model's ADF repeats (the lines' are their indices).
ADF_STREAM = 2**16


def _halo(sigma) -> int:
    """Neighbouring slices the maps' filter reaches (0 without a filter along the slices)."""
    if sigma is None or not sigma[0]:
        return 0
    return int(TRUNCATE * sigma[0] + 0.5)


def _noise(source, *, ids, seed, line, replicate, poisson):
    """Noise of a run of slices: Poisson counts of mean ``source``, or N(0, ``source``).

    One generator per slice, seeded by its number in the whole stack (``ids``), so a
    slice's noise does not depend on the run it is drawn in.
    """
    out = np.empty(source.shape, np.float32)
    for i, slice_id in enumerate(ids):
        rng = np.random.default_rng([seed, line, replicate, int(slice_id)])
        if poisson:
            out[i] = rng.poisson(np.maximum(source[i], 0.0))
        else:
            out[i] = rng.standard_normal(source.shape[1:]) * np.sqrt(source[i])
    return out


@dataclass(frozen=True)
class _Settings:
    """What every run of slices shares: the solver, grid, filter and noise."""

    solve: object  # slice-stack kernel with its settings bound (see blocks.line_volumes)
    geometry: ParallelBeamGeometry
    half_thickness_px: float | None
    sigma: tuple | None
    bootstrap: Bootstrap
    poisson: bool
    covariance: bool = False  # also every pair of channels' per-voxel covariance
    adf_model: AdfRepeats | None = None  # the ADF channel (HEBT, the fused model)
    channel_scales: tuple | None = None  # volumes per map unit (HEBT's r_A); None: 1


@dataclass(frozen=True)
class AdfRepeats:
    """How the ADF is repeated: ``W sum_c q_c x_c^gamma`` plus Gaussian noise.

    The noise's variance is the ADF's mean squared residual about the method's fit, slice
    by slice; ``variance`` stands in for a slice with no valid ADF ray (where the ADF
    weighs nothing). ``description`` says what was done, for the metadata.
    """

    coefficients: tuple
    gamma: float
    variance: float
    description: str = ("Gaussian about the fitted W sum_c q_c x_c^gamma, of the ADF's mean "
                        "squared residual about the fused fit, slice by slice")


def pairs(n_lines: int) -> list:
    """The line pairs ``(i, j)``, ``i < j``, in the order their covariances are stacked."""
    return [(i, j) for i in range(n_lines) for j in range(i + 1, n_lines)]


def _bootstrap_block(settings: _Settings, maps, variance, weights, ids, core: slice,
                     line_ids, adf=None, adf_weights=None) -> np.ndarray:
    """Per-voxel variance of the reconstructions of one run of slices.

    Parameters
    ----------
    maps : numpy.ndarray
        ``(channels, slices, T, D)`` filtered maps, the run with ``halo`` neighbours each
        side (as many as the filter reaches).
    variance : numpy.ndarray or None
        The maps' unfiltered variance, same shape (None for Poisson repeats).
    weights : numpy.ndarray or None
        ``(slices, T, D)`` ray weights, same slices.
    ids : numpy.ndarray
        The slices' numbers in the whole stack.
    core : slice
        The run's own slices within ``slices``.
    line_ids : sequence of int
        The channels' numbers among the series' lines.
    adf, adf_weights : numpy.ndarray, optional
        ``(slices, T, D)``: the ADF (HEBT's, the fused model's) and its ray weights, same
        slices (``settings.adf_model``).

    Returns
    -------
    numpy.ndarray
        ``(channels, core slices, n_z, n_detector)`` float32; with ``settings.covariance``
        the covariances of the channel pairs (:func:`pairs`) follow the variances.
    """
    from ..tomography import get_projector
    from ..tomography.geometry import slab_support

    geometry = settings.geometry
    assert geometry.n_x is not None and geometry.n_z is not None  # set by the geometry
    projector = get_projector(geometry)
    support = slab_support(geometry, settings.half_thickness_px)
    columns = None
    if geometry.n_x != geometry.n_detector:  # the scan's columns of a padded grid
        start = (geometry.n_x - geometry.n_detector) // 2
        columns = slice(start, start + geometry.n_detector)

    model = settings.adf_model

    def reconstruct(stacks, ray_weights, keep, adf_stack=None, adf_w=None):
        flat = stacks.reshape((-1,) + stacks.shape[2:])
        if ray_weights is not None:
            ray_weights = np.broadcast_to(ray_weights, stacks.shape).reshape(flat.shape)
        extra = {} if model is None else {"adf": adf_stack, "adf_weights": adf_w}
        volumes = settings.solve(projector, flat, ray_weights=ray_weights,  # type: ignore[operator]
                                 support=support, columns=keep, **extra)
        return volumes.reshape(stacks.shape[:2] + volumes.shape[1:])

    # The fitted projections: the reconstruction of the whole padded grid, projected.
    whole = reconstruct(maps, weights, None, adf, adf_weights)
    fitted = projector.forward(whole.reshape((-1, geometry.n_z, geometry.n_x))).reshape(
        maps.shape)
    if settings.channel_scales is not None:  # back to the maps' units (0 for a scale of 0)
        scales = np.asarray(settings.channel_scales, np.float32)[:, None, None, None]
        fitted = np.where(scales > 0, fitted / np.where(scales > 0, scales, 1.0),
                          0.0).astype(np.float32)
    fitted_adf = None
    if model is not None:
        powered = sum(q * np.maximum(whole[c], 0.0) ** model.gamma
                      for c, q in enumerate(model.coefficients))
        fitted_adf = projector.forward(np.asarray(powered, np.float32))
        del powered
        # The ADF's noise: each slice's mean squared residual about the fused fit (per
        # slice, so that a slice's noise does not depend on its run; the model fit's
        # residual before the reconstruction holds the EDS volumes' noise and blur too:
        # with it the predicted spread was 1.2x the actual on the core-shell series).
        valid = np.ones(adf.shape, bool) if adf_weights is None else adf_weights > 0
        squared = np.where(valid, (np.asarray(adf, np.float64) - fitted_adf) ** 2, 0.0)
        counted = valid.sum(axis=(1, 2))
        adf_variance = np.where(counted > 0, squared.sum(axis=(1, 2)) / np.maximum(counted, 1),
                                model.variance).astype(np.float32)[:, None, None]
        del squared
    del whole
    core_weights = None if weights is None else weights[core]
    core_adf_weights = None if adf_weights is None else adf_weights[core]
    bootstrap = settings.bootstrap
    count = bootstrap.replicates
    first = sums = squares = cross = None
    channel_pairs = pairs(len(line_ids)) if settings.covariance else []
    for replicate in range(count):
        repeat = np.empty(fitted[:, core].shape, np.float32)
        for channel, line in enumerate(line_ids):
            source = fitted[channel] if settings.poisson else variance[channel]
            noise = _noise(source, ids=ids, seed=bootstrap.seed, line=line,
                           replicate=replicate, poisson=settings.poisson)
            filtered = filtered_sinograms(noise, settings.sigma, False, 1, weights)[core]
            repeat[channel] = filtered if settings.poisson else fitted[channel, core] + filtered
        adf_repeat = None
        if model is not None:  # its own noise stream, after the lines' (not filtered)
            assert fitted_adf is not None
            adf_repeat = fitted_adf[core] + _noise(
                np.broadcast_to(adf_variance[core], fitted_adf[core].shape), ids=ids[core],
                seed=bootstrap.seed, line=ADF_STREAM, replicate=replicate, poisson=False)
        volumes = reconstruct(repeat, core_weights, columns, adf_repeat, core_adf_weights)
        if first is None:
            first, sums, squares = volumes, np.zeros_like(volumes), np.zeros_like(volumes)
            cross = np.zeros((len(channel_pairs),) + volumes.shape[1:], np.float32)
        else:
            # About the first repeat (the spread is shift-invariant; centring keeps the
            # float32 sums exact enough).
            volumes -= first
            sums += volumes  # type: ignore[operator]
            squares += volumes * volumes  # type: ignore[operator]
            for index, (i, j) in enumerate(channel_pairs):
                cross[index] += volumes[i] * volumes[j]  # type: ignore[index]
    assert sums is not None and squares is not None and cross is not None
    variances = np.maximum((squares - sums * sums / count) / (count - 1), 0.0)
    covariances = [(cross[index] - sums[i] * sums[j] / count) / (count - 1)
                   for index, (i, j) in enumerate(channel_pairs)]
    return np.concatenate([variances] + [c[None] for c in covariances]).astype(np.float32)


def _lazy_block(settings, maps, variance, weights, ids, *, lines, adf=None,
                block_info=None):
    """:func:`_bootstrap_block` as a dask block ``(lines, slices, n_z, n_detector)``.

    The run's own slices come from the output's location (its second axis), its halo from
    the slice numbers.
    """
    assert block_info is not None
    start, stop = block_info[None]["array-location"][1]
    ids = ids.ravel()
    offset = int(start - ids[0])
    core = slice(offset, offset + int(stop - start))
    adf, adf_weights = (None, None) if adf is None else adf
    return _bootstrap_block(settings, maps, variance, weights, ids, core, lines, adf,
                            adf_weights)


def _runs(n_slices: int, per_block: int, halo: int) -> tuple:
    """Runs of at most ``per_block`` slices, each at least ``halo`` long.

    dask's overlap would otherwise merge the short ones, and the runs would no longer be the
    output's blocks; a short last run joins the one before it.
    """
    sizes = [min(per_block, n_slices - start) for start in range(0, n_slices, per_block)]
    if len(sizes) > 1 and sizes[-1] < halo:
        sizes[-2:] = [sizes[-2] + sizes[-1]]
    if len(sizes) > 1 and min(sizes) < halo:  # runs shorter than the halo: one run
        sizes = [n_slices]
    return tuple(sizes)


def bootstrap_variances(solve, problem: Problem, run: RunOptions, iterations: int,
                        description: str, poisson: bool, joint: bool = False,
                        adf_model: AdfRepeats | None = None, adf_weights=None,
                        channel_scales=None) -> tuple[list, dict]:
    """Per-voxel variance of each line's reconstruction, over ``run.bootstrap`` repeats.

    One task per run of slices does it all (fit, repeats, variance), so memory is a run's
    maps and three of its volumes, eager or lazy: the run's neighbours within the filter's
    reach come along so that each repeat's noise is filtered as across the whole stack.

    Parameters
    ----------
    solve : callable
        The slice-stack kernel with its settings bound, as for :func:`.blocks.line_volumes`.
    problem : Problem
        The prepared series; ``problem.variance`` is needed unless ``poisson``.
    run : RunOptions
        With ``bootstrap`` set.
    iterations : int
        The method's iterations (the progress bar's units).
    description : str
        The method's name, for the progress bar.
    poisson : bool
        Poisson repeats of the fitted counts (ML-EM, Poisson + TV) instead of Gaussian
        noise of the maps' variance (SIRT).
    joint : bool
        ``solve`` couples the lines (joint total variation): every line in the same task,
        lazy too, and the covariance of every pair of lines as well (their noise is
        correlated through the shared term).
    adf_model : AdfRepeats, optional
        The ADF (``problem.adf``, ray weights ``adf_weights``) is repeated too, and
        ``solve`` takes ``adf=`` and ``adf_weights=``; needs ``joint``.
    channel_scales : sequence of float, optional
        Per line, the volumes' units per map unit (HEBT's response ratios: its volumes
        are on the ADF's scale); None: the volumes are in the maps' units.

    Returns
    -------
    variances : list
        One variance volume per line ``(slices, n_z, n_detector)``, float32, numpy or dask
        like the reconstructions.
    covariances : dict
        ``(i, j)`` (``i < j``, line indices) -> their per-voxel covariance, shaped alike;
        empty unless ``joint``.
    """
    from hyperspy.external.progressbar import progressbar

    assert run.bootstrap is not None
    field = problem.field
    geometry = field.geometry
    settings = _Settings(solve, geometry, field.half_thickness_px, problem.sigma,
                         run.bootstrap, poisson, covariance=joint, adf_model=adf_model,
                         channel_scales=None if channel_scales is None
                         else tuple(map(float, channel_scales)))
    assert adf_model is None or joint, "the lines are coupled by the ADF"
    halo = _halo(problem.sigma)
    n_lines, n_slices = len(problem.lines), problem.layout.n_slices
    weights = field.weights
    assert geometry.n_x is not None and geometry.n_z is not None  # set by the geometry
    # Lines reconstructed together: all of them for a solver that couples them (``joint``),
    # else one each when lazy (a task a line) and all of them eager (one pass over W).
    groups = ([list(range(n_lines))] if joint or not problem.lazy
              else [[line] for line in range(n_lines)])
    # A run holds, per line it works on, the solver's iterate on the whole grid and three
    # volumes cropped to the scan; per pair of lines (joint), two more.
    group_pairs = len(pairs(len(groups[0]))) if joint else 0
    per_slice = ((geometry.n_x + 3 * geometry.n_detector) * len(groups[0])
                 + 2 * geometry.n_detector * group_pairs) * geometry.n_z * 4
    per_block = max(1, min(run.slices_per_block, BLOCK_VOLUME_BYTES // per_slice))
    if problem.lazy:
        runs = _runs(n_slices, per_block, halo)
        chunks = (runs, (geometry.n_z,), (geometry.n_detector,))
        out: list = []
        covariances: dict = {}
        for group in groups:
            n = len(group)
            n_out = n + (len(pairs(n)) if joint else 0)
            # One (slices, ...) input per line and map, so that every input's slices are its
            # first axis; the slice numbers as (slices, 1, 1): map_blocks lines inputs up by
            # their last axes.
            inputs = ([problem.eds[line] for line in group]
                      + ([] if poisson else [problem.variance[line] for line in group])  # type: ignore[index]
                      + ([] if weights is None else [weights])
                      + ([] if adf_model is None else [problem.adf, adf_weights])
                      + [np.arange(n_slices).reshape(-1, 1, 1)])
            chunked = [da.asarray(a).rechunk((runs, -1, -1)) for a in inputs]
            if halo and len(runs) > 1:
                chunked = [da.overlap.overlap(a, depth={0: halo, 1: 0, 2: 0}, boundary="none")
                           for a in chunked]

            def block(*arrays, group=group, n=n, block_info=None):
                maps = np.stack(arrays[:n])
                rest = arrays[n:]
                variance = None if poisson else np.stack(rest[:n])
                rest = rest if poisson else rest[n:]
                ray_weights = None if weights is None else rest[0]
                adf = None if adf_model is None else rest[-3:-1]
                return _lazy_block(settings, maps, variance, ray_weights, rest[-1],
                                   lines=group, adf=adf, block_info=block_info)

            # map_blocks pairs blocks by position: the halo'd inputs' runs with the output's.
            stacked = da.map_blocks(block, *chunked, new_axis=0, chunks=((n_out,),) + chunks,
                                    dtype=np.float32, meta=_META4)
            out.extend(stacked[i] for i in range(n))
            if joint:
                covariances.update({(group[i], group[j]): stacked[n + index]
                                    for index, (i, j) in enumerate(pairs(n))})
        return out, covariances
    maps = np.stack([np.asarray(m, np.float32) for m in problem.eds])
    variance = None if poisson else np.stack(
        [np.asarray(v, np.float32) for v in problem.variance])  # type: ignore[union-attr]
    weights = None if weights is None else np.asarray(weights, np.float32)
    adf = None if adf_model is None else np.asarray(problem.adf, np.float32)
    adf_weights = None if adf_model is None else np.asarray(adf_weights, np.float32)
    line_pairs = pairs(n_lines) if joint else []
    result = np.empty((n_lines + len(line_pairs), n_slices, geometry.n_z, geometry.n_detector),
                      np.float32)
    starts = range(0, n_slices, per_block)
    with progressbar(total=len(starts), disable=not run.show_progressbar,
                     desc=f"{description} bootstrap ({run.bootstrap.replicates} x "
                          f"{iterations} iterations)", leave=False) as bar:
        for start in starts:
            stop = min(n_slices, start + per_block)
            low, high = max(0, start - halo), min(n_slices, stop + halo)
            result[:, start:stop] = _bootstrap_block(
                settings, maps[:, low:high], None if variance is None else variance[:, low:high],
                None if weights is None else weights[low:high], np.arange(low, high),
                slice(start - low, stop - low), list(range(n_lines)),
                None if adf is None else adf[low:high],
                None if adf_weights is None else adf_weights[low:high])
            bar.update(1)
    return list(result[:n_lines]), {pair: result[n_lines + index]
                                    for index, pair in enumerate(line_pairs)}


def record(bootstrap: Bootstrap, poisson: bool, covariance: bool = False,
           units: str = "counts") -> dict:
    """``metadata.Reconstruction.Uncertainty``: how the variance was estimated.

    ``units``: the volumes' (``counts``; HEBT's are on the ADF's scale).
    """
    count = bootstrap.replicates
    extra = {}
    if covariance:
        extra["covariance"] = (
            "per voxel, between every pair of lines (their noise is correlated through the "
            "shared term): metadata.Signal.Noise_properties.Covariance.<other line> of the "
            f"pair's first line, {units} squared per voxel")
    return {
        **extra,
        "method": "parametric bootstrap about the fitted projections",
        "replicates": count,
        "seed": bootstrap.seed,
        "noise": ("Poisson counts of mean the fitted projections" if poisson else
                  "Gaussian, the measured maps' variance (Poisson statistics of the spectra "
                  "through the integration, or the maps' Noise_properties.variance)"),
        "variance": "metadata.Signal.Noise_properties.variance: sample variance per voxel "
                    f"over the replicates, {units} squared per voxel",
        "relative_precision_of_std": float(1.0 / np.sqrt(2.0 * (count - 1))),
        "not_included": "bias (semi-convergence blur, the missing wedge) and systematic "
                        "errors (alignment, physics factors, absorption factors)",
    }


#: Where a reconstruction holds its per-voxel covariance with another line (joint methods):
#: ``metadata.<COVARIANCE_NODE>.<other line>``, on the first line of each pair.
COVARIANCE_NODE = "Signal.Noise_properties.Covariance"


def _holder(signal, data, title: str, quantity: str):
    """``data`` as a signal on ``signal``'s axes (lazy for dask data), to keep in metadata."""
    from hyperspy.signals import LazySignal2D, Signal2D

    cls = LazySignal2D if isinstance(data, da.Array) else Signal2D
    axes = [a.get_axis_dictionary() for a in signal.axes_manager._axes]
    return cls(data, axes=axes, metadata={"General": {"title": title},
                                          "Signal": {"quantity": quantity}})


def attach(signals: list, variances: list, parameters: dict,
           covariances: dict | None = None, units: str = "counts") -> None:
    """Give each reconstruction its variance signal and the bootstrap's record.

    ``covariances`` (``(i, j)`` -> data, ``i < j``) go to line ``i``'s
    :data:`COVARIANCE_NODE`, under line ``j``'s name.
    """
    for signal, variance in zip(signals, variances):
        title = signal.metadata.General.title
        signal.metadata.set_item("Signal.Noise_properties.variance", _holder(
            signal, variance, f"Variance of {title}", f"variance ({units} squared per voxel)"))
        signal.metadata.set_item("Reconstruction.Uncertainty", parameters)
    for (i, j), covariance in (covariances or {}).items():
        first, other = signals[i], signals[j].metadata.Sample.xray_lines[0]
        signal_title = first.metadata.General.title
        first.metadata.set_item(f"{COVARIANCE_NODE}.{other}", _holder(
            first, covariance, f"Covariance of {signal_title} with {other}",
            f"covariance ({units} squared per voxel)"))


def add_uncertainty(signals: list, solve, problem: Problem, run: RunOptions, iterations: int,
                    description: str, poisson: bool, joint: bool = False,
                    adf_model: AdfRepeats | None = None, adf_weights=None,
                    channel_scales=None, units: str = "counts") -> list:
    """Attach the bootstrap's per-voxel variance to ``signals`` when ``run.bootstrap`` asks.

    ``joint``: the lines' covariances too; ``adf_model``: the ADF repeated as well;
    ``channel_scales``: see :func:`bootstrap_variances`; ``units``: the volumes'.
    """
    if run.bootstrap is None:
        return signals
    variances, covariances = bootstrap_variances(solve, problem, run, iterations, description,
                                                 poisson, joint, adf_model, adf_weights,
                                                 channel_scales)
    parameters = record(run.bootstrap, poisson, covariance=joint, units=units)
    if adf_model is not None:
        parameters["adf_noise"] = adf_model.description
    attach(signals, variances, parameters, covariances, units)
    return signals
