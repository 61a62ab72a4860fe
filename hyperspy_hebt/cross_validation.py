"""Choose method, iterations and alpha from held-out tilts.

The paper picks n and alpha against a known phantom, which real data lack. Here
the tilts are split into folds: each fold's tilts are held out, the rest are
reconstructed (SIRT over several iteration counts, HEBT over alpha and iteration
counts), the reconstructions are projected onto the held-out tilts, and the
prediction is scored against the measured (unfiltered) line maps. The setting
that predicts unseen tilts best is the one to trust; on data that break HEBT's
model, HEBT predicts the held-out EDS maps worse than SIRT and is not chosen.

Scores are Poisson deviances per pixel, ``2 [y ln(y / mu) - (y - mu)]`` averaged
over the held-out pixels: about 1 for a perfect prediction of counts of a few
or more, less for very sparse counts, and larger the worse the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .filtering import filtered_sinograms
from .tomography import ParallelBeamGeometry, fit_response_model, make_projector, validate_alpha
from .tomography.bimodal import _hebt_steps
from .tomography.fused import _fused_steps
from .tomography.geometry import slab_support
from .tomography.mlem import _mlem_steps
from .tomography.poisson_tv import _poisson_tv_steps, validate_tv_parameters
from .tomography.sirt import _sirt_steps, _validate_iteration_counts

__all__ = ["CrossValidation", "cross_validate_stacks", "poisson_deviance"]

#: Predictions are floored here (counts) so that a zero prediction of an
#: observed count scores as very bad instead of infinite.
MIN_PREDICTION = 1e-6


def poisson_deviance(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Mean Poisson deviance per pixel of counts ``measured`` given means ``predicted``.

    Parameters
    ----------
    measured : numpy.ndarray
        Held-out counts (>= 0).
    predicted : numpy.ndarray
        The reconstruction's projections of the same rays, the same shape.

    Returns
    -------
    float
        ``mean(2 (y log(y / mu) - (y - mu)))``; 0 for a perfect prediction.

    Raises
    ------
    ValueError
        For negative counts (background-subtracted maps are not Poisson: score
        with ``score="mse"``).

    Examples
    --------
    >>> from hyperspy_hebt.cross_validation import poisson_deviance
    >>> poisson_deviance(np.array([3.0, 5.0]), np.array([3.0, 5.0]))  # a perfect prediction
    0.0
    """
    y = np.asarray(measured, dtype=float)
    if np.any(y < 0):
        raise ValueError(
            "measured maps hold negative values (background-subtracted?): the Poisson "
            "deviance needs counts; use score='mse'."
        )
    mu = np.maximum(np.asarray(predicted, dtype=float), MIN_PREDICTION)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return float(np.mean(2.0 * (term - (y - mu))))


def _mse(measured, predicted):
    return float(np.mean((np.asarray(measured, float) - np.asarray(predicted, float)) ** 2))


@dataclass
class CrossValidation:
    """Scores of every setting on held-out tilts, and the best ones.

    Attributes
    ----------
    rows : list of dict
        ``method``, ``alpha`` (HEBT's; NaN for the others), ``tv_weight``
        (Poisson-TV's and joint Poisson-TV's; NaN for the others), ``iterations``,
        ``xray_line``, ``score`` (mean over folds; lower is better).
    best_per_line : dict
        Line -> the row with the lowest score for that line.
    best : dict
        The setting with the lowest score summed over lines (the one to use
        when the lines are reconstructed together, as HEBT does).
    score : str
        ``"poisson"`` or ``"mse"``.
    folds : int
    slices : list of int
        The slices reconstructed.
    grid : dict
        Padding of the grid and pixels left out (no valid data), as recorded
        in ``metadata.Reconstruction`` by the reconstructions.
    stopped_early : dict
        Setting (``"SIRT"``, ``"HEBT alpha 0.8"``) -> the iteration count after
        which its run stopped, every line's held-out score having risen at two
        checkpoints in a row (``stop_early``); settings that ran every count are
        absent.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> scores = series.cross_validate(adf, iterations=(10, 20), alphas=(0.8,), slices=1)
    >>> type(scores).__name__, len(scores.rows)  # 2 methods x 2 counts x 2 lines
    ('CrossValidation', 8)
    >>> figure = scores.plot()
    """

    rows: list = field(repr=False)
    best_per_line: dict
    best: dict
    score: str
    folds: int
    slices: list = field(default_factory=list)
    grid: dict = field(default_factory=dict)
    stopped_early: dict = field(default_factory=dict)

    def plot(self):
        """Score against iterations, one panel per line, one curve per method/alpha.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> series = demo_acquisition().series
        >>> scores = series.cross_validate(iterations=(10, 20), methods=("sirt",), slices=1)
        >>> figure = scores.plot()
        >>> len(figure.axes)  # one panel per line
        2
        """
        import matplotlib.pyplot as plt

        lines = sorted({r["xray_line"] for r in self.rows})
        fig, axes = plt.subplots(1, len(lines), figsize=(5 * len(lines), 3.6), squeeze=False)
        for ax, line in zip(axes[0], lines):
            settings = sorted({(r["method"], _parameter(r)) for r in self.rows
                               if r["xray_line"] == line}, key=str)
            for method, parameter in settings:
                rows = sorted((r for r in self.rows if r["xray_line"] == line
                               and r["method"] == method and _parameter(r) == parameter),
                              key=lambda r: r["iterations"])
                label = (method if parameter is None else
                         f"{method} {'alpha' if method == 'HEBT' else 'weight'}="
                         f"{parameter:g}")
                ax.plot([r["iterations"] for r in rows], [r["score"] for r in rows], "o-",
                        label=label)
            ax.set(xscale="log", xlabel="iterations", title=line,
                   ylabel=f"held-out {self.score} (lower is better)")
            ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    def setting(self, xray_line: str | None = None) -> dict:
        """The best setting for one line, or overall.

        ``method``, ``alpha`` (HEBT), ``tv_weight`` (Poisson-TV), ``iterations``.

        Parameters
        ----------
        xray_line : str, optional
            A line of the table; None: the best setting summed over all lines (the one
            ``alpha="auto"`` and ``iterations="auto"`` take).

        Returns
        -------
        dict
            ``method``, ``alpha``, ``tv_weight`` (NaN where they do not apply), ``iterations``.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> series = demo_acquisition().series
        >>> scores = series.cross_validate(iterations=(5, 40), methods=("sirt",), slices=1)
        >>> scores.setting("Ag_La")
        {'method': 'SIRT', 'alpha': nan, 'tv_weight': nan, 'iterations': 40}
        """
        row = self.best if xray_line is None else self.best_per_line[xray_line]
        return {"method": row["method"], "alpha": row["alpha"],
                "tv_weight": row.get("tv_weight", float("nan")),
                "iterations": row["iterations"]}


def _parameter(row) -> float | None:
    """A row's HEBT alpha or Poisson-TV weight; None for SIRT and ML-EM."""
    for key in ("alpha", "tv_weight"):
        value = row.get(key, float("nan"))
        if not np.isnan(value):
            return float(value)
    return None


def _hebt_training(eds, adf, options, weights=None):
    """ADF (offset removed), ratios and ADF weights of one fold, as reconstruct_hebt does.

    ``weights`` (0: no valid data) leave pixels out of the fit and the ADF term.
    """
    from .diagnostics import invalid_adf_pixels

    valid = None
    if options["exclude_clipped"]:
        invalid = invalid_adf_pixels(adf)
        valid = ~invalid if invalid.any() else None
    if weights is not None:
        valid = weights > 0 if valid is None else valid & (weights > 0)
    expected = options["physics_ratios"]
    if expected is None:
        ratios, offset, _ = fit_response_model(eds, adf, mask=valid,
                                               offset=options["adf_offset"])
    else:  # the cross sections' pattern, one fitted scale (as reconstruct_hebt does)
        combined = np.tensordot(expected, eds, axes=1)[None]
        (scale,), offset, _ = fit_response_model(combined, adf, mask=valid,
                                                 offset=options["adf_offset"])
        ratios = scale * np.asarray(expected)
    if options["ratio_floor"] is not None:
        ratios = np.maximum(ratios, options["ratio_floor"] * np.median(ratios))
    weights = None if valid is None else valid.astype(np.float32)
    return adf - offset, ratios, weights


@dataclass
class _Fold:
    """One fold's training and held-out data, and its projectors."""

    train: np.ndarray
    train_projector: object
    test_projector: object
    train_weights: np.ndarray | None
    train_eds: np.ndarray
    measured: np.ndarray
    scored: np.ndarray | None
    n_held: int
    train_adf: np.ndarray | None = None
    ratios: np.ndarray | None = None
    adf_weights: np.ndarray | None = None


#: What :func:`cross_validate_stacks` can score.
METHODS = ("sirt", "hebt", "mlem", "poisson_tv", "joint_tv", "fused")


#: The label of the rows of ``"joint_tv"``: Poisson + total variation joint over the lines
#: (:func:`hyperspy_hebt.tomography.poisson_tv.poisson_tv` with ``joint_channels``).
JOINT_TV = "Joint Poisson-TV"

#: The label of the rows of ``"fused"``: the fused EDS + ADF model
#: (:func:`hyperspy_hebt.tomography.fused.fused`).
FUSED = "Fused"

#: Row labels whose setting is a total-variation weight.
TV_METHODS = ("Poisson-TV", JOINT_TV, FUSED)


#: Early stopping: a run stops once its score has been worse than its best at this
#: many checkpoints in a row (noisy data semi-converge: the held-out score falls,
#: then rises; the larger counts are then not worth their time).
PATIENCE = 2

#: What early stopping watches: every line's own score (each line's count is chosen
#: by itself, as ``reconstruct_sirt(iterations="auto")`` does), or their sum (one
#: setting for every line, as HEBT and the automatic choice between methods use).
STOP_ON = ("each_line", "sum")


def _lockstep(generators, folds, iterations, score, totals, key, names, stop_early,
              stop_on="each_line", bar=None):
    """Advance every fold's iteration generator together, scoring each at the wanted counts.

    With ``stop_early``, stop when the watched score (``stop_on``: every line's, or their sum) has
    been worse than its best at :data:`PATIENCE` checkpoints in a row. Returns the count it stopped
    after (or None when it ran them all). ``bar`` (a progress bar over every setting's
    iterations) advances by the iterations run, and by those skipped when it stops early.
    """
    watched = list(names) if stop_on == "each_line" else ["sum"]
    best = {name: np.inf for name in watched}
    worse = {name: 0 for name in watched}
    done = 0
    for n in iterations:
        for generator, fold in zip(generators, folds):
            for _ in range(n - done):
                snapshot = next(generator)
            score(fold, n, snapshot)
        if bar is not None:
            bar.update(n - done)
        done = n
        line_totals = {line: totals[key + (n, line)] for line in names}
        current = line_totals if stop_on == "each_line" else {"sum": sum(line_totals.values())}
        for name in watched:
            if current[name] < best[name]:
                best[name], worse[name] = current[name], 0
            else:
                worse[name] += 1
        if stop_early and n != iterations[-1] and all(w >= PATIENCE for w in worse.values()):
            if bar is not None:
                bar.update(iterations[-1] - n)
            return n
    return None


def _held_out(projector, snapshot, n_columns):
    """Project an iterate's first ``n_columns`` slices onto the held-out tilts.

    Returns ``(n_columns, n_tilts, n_detector)``, read in place from the CPU kernels' live iterate
    (no volume-sized copies: two of 78 MB per fold and checkpoint on a padded 256-wide grid), from a
    copy for the other backends.
    """
    g = projector.geometry
    live = getattr(snapshot, "pixel_major", None)
    if live is None:
        volume = snapshot()
        return projector.forward(volume.reshape((-1, g.n_z, g.n_x))[:n_columns])
    rays = projector.forward_columns(live)[:, :n_columns]
    return np.ascontiguousarray(rays.T).reshape(n_columns, g.n_tilts, g.n_detector)


def _fold_indices(n_tilts, folds):
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
        if not 2 <= folds <= n_tilts // 2:
            raise ValueError(
                f"holdout must be an integer from 2 to {n_tilts // 2} (every holdout-th "
                f"tilt is held out in turn), got {folds}."
            )
        return [np.arange(f, n_tilts, folds) for f in range(folds)]
    raise TypeError(f"holdout must be an integer, got {folds!r}.")


def cross_validate_stacks(eds, adf, names, tilt_angles_deg, *, methods, iterations, alphas,
                          holdout, sigma, score="poisson", relaxation=1.0,
                          positivity=True, hebt_options=None, padding_px: int = 0,
                          weights=None, backend: str = "cpu",
                          stop_early: bool = False, stop_on: str = "each_line",
                          half_thickness_px: float | None = None,
                          tv_weights=(), fused_options: dict | None = None,
                          show_progressbar: bool = False) -> CrossValidation:
    """Held-out-tilt cross-validation on in-memory sinogram stacks.

    Parameters
    ----------
    eds : numpy.ndarray
        ``(k, slices, tilts, detector)`` measured line intensities (unfiltered).
    adf : numpy.ndarray or None
        ``(slices, tilts, detector)`` ADF, needed for HEBT.
    names : sequence of str
        Line names.
    tilt_angles_deg : array-like
    methods : sequence of {"sirt", "hebt", "mlem", "poisson_tv"}
        ``"mlem"``: ML-EM (:mod:`hyperspy_hebt.tomography.mlem`), scored like SIRT;
        ``"poisson_tv"``: Poisson likelihood + total variation
        (:mod:`hyperspy_hebt.tomography.poisson_tv`) at each of ``tv_weights``;
        ``"joint_tv"``: the same with one total variation joint over the lines (rows
        ``"Joint Poisson-TV"``: its lines are reconstructed together, so its setting is
        ``best``'s, summed over lines); ``"fused"``: the fused EDS + ADF model at each of
        ``tv_weights`` (rows ``"Fused"``, lines together as well).
    iterations : sequence of int
    alphas : sequence of float
        HEBT weights to try.
    holdout : int
        Number of folds: fold ``f`` holds out tilts ``f, f + holdout, ...``.
    sigma : tuple or None
        Gaussian sigma per stack axis (slice, tilt, detector) for the training
        maps (filtered within the training tilts only, so nothing leaks).
    score : {"poisson", "mse"}
    relaxation, positivity
        As for the reconstructions.
    hebt_options : dict, optional
        ``exclude_clipped``, ``adf_offset``, ``unlisted_mass``, ``ratio_floor`` as
        for ``reconstruct_hebt`` (default: clipped pixels excluded, nothing else),
        and ``physics_ratios``: ``z_A / f_A`` per line to fit one scale of, instead
        of every ratio.
    padding_px : int
        Columns added to the grid on each side of the scan.
    weights : numpy.ndarray, optional
        ``(slices, tilts, detector)``, 0 on pixels with no valid data: left out
        of the training and of the scores.
    backend : {"cpu", "cupy", "auto"}
        Where the reconstructions run (:mod:`hyperspy_hebt.tomography.backends`).
    stop_early : bool
        Stop a setting's run once its held-out score has been worse than its best
        at two checkpoints in a row (semi-convergence: the larger counts would not
        be chosen); their rows are then absent. The folds run in lockstep so that
        the decision uses the score summed over folds.
    stop_on : {"each_line", "sum"}
        The score early stopping watches: every line's (the run stops when all of
        them have risen; for choosing each line's count by itself, ``best_per_line``)
        or the sum over lines (for one setting for every line, ``best``: a line that
        would still improve alone does not keep the whole run going).
    half_thickness_px : float, optional
        Slab support: voxels farther than this from z = 0 are held at 0, as in the
        reconstructions with ``thickness_nm``.
    tv_weights : sequence of float
        The total-variation weights ``"poisson_tv"``, ``"joint_tv"`` and ``"fused"`` try
        (their rows' ``tv_weight``).
    fused_options : dict, optional
        For ``"fused"`` (:func:`hyperspy_hebt.tomography.fused.fused`): ``coefficients``,
        ``gamma``, ``adf_precision``, ``joint`` and ``adf_weights`` (ADF-shaped, 0 on rays
        left out, or None). The model is fitted beforehand, on every tilt; the held-out
        tilts' ADF is left out of each fold's training, and only their EDS is scored.
    show_progressbar : bool
        One bar over every setting's iterations ("cross-validation"); a setting that
        stops early jumps to its end.

    Returns
    -------
    CrossValidation

    Raises
    ------
    ValueError
        An unknown method, score or ``stop_on``; HEBT or fused without the ADF (or fused
        without ``fused_options``); a TV method without ``tv_weights``.
    TypeError
        ``iterations`` is not a sequence of counts.

    Examples
    --------
    Two lines of a disc, 13 tilts, every fourth held out in turn:

    >>> from hyperspy_hebt.cross_validation import cross_validate_stacks
    >>> from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector
    >>> angles = np.linspace(-60.0, 60.0, 13)
    >>> projector = get_projector(ParallelBeamGeometry(angles, 16))
    >>> y, x = np.mgrid[:16, :16]
    >>> disc = np.broadcast_to(((y - 8) ** 2 + (x - 8) ** 2 < 25) * 1.0, (2, 16, 16))
    >>> sinograms = projector.forward(disc)  # (slices, tilts, detector)
    >>> counts = np.random.default_rng(0).poisson(np.stack([5 * sinograms, 2 * sinograms]))
    >>> scores = cross_validate_stacks(counts.astype(float), None, ["A_Ka", "B_Ka"], angles,
    ...                                methods=("sirt",), iterations=(5, 80), alphas=(),
    ...                                holdout=4, sigma=None)
    >>> scores.best["method"], scores.best["iterations"]
    ('SIRT', 80)
    """
    methods = [m.lower() for m in methods]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be drawn from {METHODS}, got {methods}.")
    for tv_method in ("poisson_tv", "joint_tv", "fused"):
        if tv_method in methods and not len(tv_weights):
            raise ValueError(f"{tv_method} needs tv_weights to try, e.g. (0.01, 0.03, 0.1).")
    tv_weights = [validate_tv_parameters(1, w)[1] for w in tv_weights]
    if "hebt" in methods and adf is None:
        raise ValueError("HEBT needs the ADF series: pass adf, or methods=('sirt',).")
    if "fused" in methods and (adf is None or fused_options is None):
        raise ValueError("fused needs the ADF series and fused_options (coefficients, "
                         "gamma, adf_precision, joint).")
    if score not in ("poisson", "mse"):
        raise ValueError(f"score must be 'poisson' or 'mse', got {score!r}.")
    if stop_on not in STOP_ON:
        raise ValueError(f"stop_on must be one of {STOP_ON}, got {stop_on!r}.")
    scorer = poisson_deviance if score == "poisson" else _mse
    options = {"exclude_clipped": True, "adf_offset": False, "unlisted_mass": False,
               "ratio_floor": None, "physics_ratios": None, **(hebt_options or {})}
    alphas = [validate_alpha(a) for a in alphas]
    if isinstance(iterations, (str, int, np.integer)):
        raise TypeError(f"iterations must be a sequence of iteration counts, e.g. (20, 50, "
                        f"100), got {iterations!r}.")
    iterations = sorted(set(_validate_iteration_counts(iterations, relaxation)))
    angles = np.asarray(tilt_angles_deg, dtype=float)
    k, n_slices, n_tilts, n_det = eds.shape
    grid = {"n_detector": n_det, "n_x": n_det + 2 * padding_px, "n_z": n_det}
    support = slab_support(ParallelBeamGeometry((0.0,), **grid), half_thickness_px)
    folds = []
    for held in _fold_indices(n_tilts, holdout):
        train = np.setdiff1d(np.arange(n_tilts), held)
        fold = _Fold(
            # Built, not cached: a fold's geometry serves this call only, and the cache
            # would keep every fold's matrices (about 160 MB on a padded 256-wide grid).
            train=train,
            train_projector=make_projector(ParallelBeamGeometry(tuple(angles[train]), **grid)),
            test_projector=make_projector(ParallelBeamGeometry(tuple(angles[held]), **grid)),
            train_weights=None if weights is None else weights[:, train],
            train_eds=eds[:, :, train], measured=eds[:, :, held],
            scored=None if weights is None else weights[:, held] > 0, n_held=len(held))
        if sigma is not None:
            fold.train_eds = np.stack([filtered_sinograms(m, sigma, False, 1,
                                                          fold.train_weights)
                                       for m in fold.train_eds])
        folds.append(fold)
    totals: dict = {}

    def record(fold, method, alpha, n, predictions):
        for line, prediction, truth in zip(names, predictions, fold.measured):
            key = (method, alpha, n, line)  # alpha None for SIRT (NaN != NaN as a key)
            if fold.scored is not None:
                truth, prediction = truth[fold.scored], prediction[fold.scored]
            totals[key] = totals.get(key, 0.0) + scorer(truth, prediction)

    from hyperspy.external.progressbar import progressbar

    n_settings = (("sirt" in methods) + ("mlem" in methods) + ("hebt" in methods) * len(alphas)
                  + len(tv_weights) * sum(m in methods for m in ("poisson_tv", "joint_tv",
                                                                   "fused")))
    bar = progressbar(total=n_settings * max(iterations), disable=not show_progressbar,
                      desc="cross-validation")
    stopped = {}
    def lines_run(label, parameter, steps_of):
        """Run and score a kernel that reconstructs every line's maps independently.

        ``steps_of(projector, stacked maps, ray weights)`` gives its step generator.
        """
        def steps(fold):
            stacked = fold.train_eds.reshape((k * n_slices,) + fold.train_eds.shape[2:])
            ray_weights = (None if fold.train_weights is None
                           else np.tile(fold.train_weights, (k, 1, 1)))
            return steps_of(fold.train_projector, stacked, ray_weights)

        def score(fold, n, snapshot):
            predictions = _held_out(fold.test_projector, snapshot, k * n_slices)
            record(fold, label, parameter, n,
                   predictions.reshape(k, n_slices, fold.n_held, n_det))

        return _lockstep([steps(f) for f in folds], folds, iterations, score, totals,
                         (label, parameter), names, stop_early, stop_on, bar)

    if "sirt" in methods:
        stopped["SIRT"] = lines_run("SIRT", None, lambda projector, stacked, w: _sirt_steps(
            projector, stacked, float(relaxation), positivity, w, backend, support))
    if "mlem" in methods:
        stopped["ML-EM"] = lines_run("ML-EM", None, lambda projector, stacked, w: _mlem_steps(
            projector, stacked, 1, w, support, backend))
    if "poisson_tv" in methods:
        for tv_weight in tv_weights:
            stopped[f"Poisson-TV weight {tv_weight:g}"] = lines_run(
                "Poisson-TV", tv_weight,
                lambda projector, stacked, w, tv_weight=tv_weight: _poisson_tv_steps(
                    projector, stacked, tv_weight, w, support, backend=backend))
    if "joint_tv" in methods:
        # Every line in one run: the stacked maps are channel-major, as the kernel expects.
        for tv_weight in tv_weights:
            stopped[f"Joint Poisson-TV weight {tv_weight:g}"] = lines_run(
                JOINT_TV, tv_weight,
                lambda projector, stacked, w, tv_weight=tv_weight: _poisson_tv_steps(
                    projector, stacked, tv_weight, w, support, joint_channels=k,
                    backend=backend))
    if "fused" in methods:
        assert fused_options is not None and adf is not None
        adf_weights = fused_options.get("adf_weights")
        for tv_weight in tv_weights:
            def fused_run(fold, tv_weight=tv_weight):
                stacked = fold.train_eds.reshape((k * n_slices,) + fold.train_eds.shape[2:])
                ray_weights = (None if fold.train_weights is None
                               else np.tile(fold.train_weights, (k, 1, 1)))
                return _fused_steps(
                    fold.train_projector, stacked, adf[:, fold.train],
                    fused_options["coefficients"], fused_options["gamma"], tv_weight,
                    fused_options["adf_precision"], ray_weights,
                    None if adf_weights is None else adf_weights[:, fold.train], support,
                    fused_options["joint"], backend)

            def score_fused(fold, n, snapshot, tv_weight=tv_weight):
                predictions = _held_out(fold.test_projector, snapshot, k * n_slices)
                record(fold, FUSED, tv_weight, n,
                       predictions.reshape(k, n_slices, fold.n_held, n_det))

            stopped[f"Fused weight {tv_weight:g}"] = _lockstep(
                [fused_run(f) for f in folds], folds, iterations, score_fused, totals,
                (FUSED, tv_weight), names, stop_early, stop_on, bar)
    if "hebt" in methods:
        for fold in folds:
            fold.train_adf, fold.ratios, fold.adf_weights = _hebt_training(
                fold.train_eds, adf[:, fold.train], options, fold.train_weights)
        for alpha in alphas:
            def hebt_steps(fold, alpha=alpha):
                return _hebt_steps(fold.train_projector, fold.train_eds, fold.train_adf,
                                   fold.ratios, alpha, float(relaxation), positivity,
                                   adf_weights=fold.adf_weights,
                                   extra_volume=options["unlisted_mass"],
                                   eds_weights=fold.train_weights, backend=backend,
                                   support=support)

            def score_hebt(fold, n, snapshot, alpha=alpha):
                # The elements' columns come first; not the unlisted-mass volume's.
                projected = _held_out(fold.test_projector, snapshot, k * n_slices)
                safe = np.where(fold.ratios > 0, fold.ratios, np.inf)  # 0 predicts no counts
                predictions = projected.reshape(k, n_slices, fold.n_held, n_det) / \
                    safe[:, None, None, None]
                record(fold, "HEBT", alpha, n, predictions)

            stopped[f"HEBT alpha {alpha:g}"] = _lockstep(
                [hebt_steps(f) for f in folds], folds, iterations, score_hebt, totals,
                ("HEBT", alpha), names, stop_early, stop_on, bar)
    bar.close()
    n_folds = len(folds)
    def setting(method, parameter):
        """A setting's alpha (HEBT) and tv_weight (Poisson-TV), NaN where none."""
        return {"alpha": parameter if method == "HEBT" else float("nan"),
                "tv_weight": parameter if method in TV_METHODS else float("nan")}

    rows = [{"method": m, **setting(m, a), "iterations": n, "xray_line": line,
             "score": total / n_folds}
            for (m, a, n, line), total in totals.items()]
    best_per_line = {line: min((r for r in rows if r["xray_line"] == line),
                               key=lambda r: r["score"]) for line in names}
    summed: dict = {}
    for (method, alpha, n, _), total in totals.items():
        summed[(method, alpha, n)] = summed.get((method, alpha, n), 0.0) + total / n_folds
    method, alpha, n = min(summed, key=lambda setting: summed[setting])
    best = {"method": method, **setting(method, alpha), "iterations": n,
            "score": summed[(method, alpha, n)]}
    return CrossValidation(rows, best_per_line, best, score, n_folds,
                           stopped_early={name: n for name, n in stopped.items()
                                          if n is not None})
