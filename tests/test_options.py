"""The option groups (issue 14): each checked once, before any compute, and the
automatic choices built on one prepared problem."""

import numpy as np
import pytest
from helpers import count_block_reads, make_series

from hyperspy_hebt._reconstruction import auto as _cross_validation
from hyperspy_hebt._reconstruction.options import GridOptions, HebtModel, LineSource, RunOptions

BAD_KEYWORDS = [
    # (keyword arguments of reconstruct_sirt / reconstruct_hebt, error, words)
    (dict(padding_px="Auto"), ValueError, "padding_px must be a number of pixels >= 0 or"),
    (dict(padding_px=-3), ValueError, "padding_px must be a number of pixels >= 0"),
    (dict(padding_px=2.5), ValueError, "padding_px must be a number of pixels >= 0"),
    (dict(relaxation=2.5), ValueError, "relaxation must lie in the open interval"),
    (dict(slices_per_block=0), ValueError, "slices_per_block must be a positive integer"),
    (dict(thickness_nm=-5.0), ValueError, "thickness_nm must be a positive number"),
    (dict(thickness_nm="thin"), TypeError, "thickness_nm must be a number of nm"),
    (dict(backend="gpu"), ValueError, "backend must be one of"),
    (dict(invalid_pixels="none"), ValueError, "invalid_pixels must be 'auto', None"),
    (dict(rotation_axis=1), TypeError, "rotation_axis must be a navigation axis name"),
    (dict(xray_lines="Ag_La"), TypeError, "xray_lines must be a list of line names"),
    (dict(normalise_tilts="yes"), TypeError, "normalise_tilts must be True or False"),
    (dict(iterations="many"), ValueError, "iterations must be a positive integer or 'auto'"),
    (dict(iterations=0), ValueError, "iterations must be a positive integer"),
    (dict(positivity="no"), TypeError, "positivity must be True or False, got 'no'"),
    (dict(show_progressbar="yes"), TypeError, "show_progressbar must be True, False or None"),
]


@pytest.mark.parametrize("kwargs, error, words", BAD_KEYWORDS)
def test_bad_options_are_refused_before_a_lazy_series_is_read(kwargs, error, words):
    series = make_series(lazy=True)
    reads = count_block_reads(series)
    adf = np.ones(series.axes_manager.navigation_shape[::-1])
    options = dict(iterations=2, **kwargs) if "iterations" not in kwargs else kwargs
    with pytest.raises(error, match=words):
        series.reconstruct_sirt(**options)
    with pytest.raises(error, match=words):
        series.reconstruct_hebt(adf, **options)
    assert reads == []  # refused before the spectra were touched


@pytest.mark.parametrize("kwargs, words", [
    (dict(ratio_floor=0.0), "ratio_floor must lie in"),
    (dict(ratio_floor="half"), "ratio_floor must lie in"),
    (dict(alpha="best"), "alpha must be a number or 'auto'"),
    (dict(alpha=1.0), "alpha"),
])
def test_bad_hebt_options_are_refused_before_a_lazy_series_is_read(kwargs, words):
    series = make_series(lazy=True)
    reads = count_block_reads(series)
    adf = np.ones(series.axes_manager.navigation_shape[::-1])
    with pytest.raises(ValueError, match=words):
        series.reconstruct_hebt(adf, **dict(dict(iterations=2, alpha=0.5), **kwargs))
    assert reads == []


def test_groups_are_frozen_and_normalised():
    run = RunOptions(relaxation=1, positivity=np.bool_(False), show_progressbar=None,
                     slices_per_block=np.int64(8))
    assert run.relaxation == 1.0 and run.positivity is False
    assert isinstance(run.show_progressbar, bool) and run.slices_per_block == 8
    assert GridOptions(padding_px=np.int32(4)).padding_px == 4
    with pytest.raises(AttributeError):
        run.relaxation = 0.5
    with pytest.raises(AttributeError):
        LineSource().integration_windows = 1.0
    assert HebtModel().fitted and HebtModel("physics").fitted
    assert not HebtModel({"Ag_La": 1.0}).fitted


@pytest.mark.parametrize("method", ["sirt", "hebt"])
def test_auto_prepares_the_series_once(monkeypatch, method):
    """The check, the scores and the result share one prepared problem."""
    calls = []
    original = _cross_validation.prepare

    def counted(*args, **kwargs):
        calls.append(kwargs.get("compute"))
        return original(*args, **kwargs)

    monkeypatch.setattr(_cross_validation, "prepare", counted)
    series = make_series()
    if method == "sirt":
        recs = series.reconstruct_sirt(iterations="auto")
    else:
        adf = sum(m.data for m in series.get_lines_intensity(integration_windows=2.0))
        recs = series.reconstruct_hebt(adf, alpha="auto", iterations="auto")
        assert recs[0].metadata.Reconstruction.AutomaticChoice.chosen
    assert calls == [True]
    assert len(recs) == 2
    grid = recs[0].metadata.Reconstruction
    # The result's grid is the one the scores were computed on.
    assert grid.padding_px == grid.CrossValidation.padding_px


def test_absorption_shortcut_is_checked_and_bounded():
    from hyperspy_hebt._reconstruction.options import Absorption

    settings = Absorption(True)
    assert settings.coarsening == 2
    for bad in (0, 9, 1.5, True):
        with pytest.raises(ValueError, match="coarsening must be an integer from 1 to 8"):
            Absorption(True, coarsening=bad)
    exact = Absorption("exact")
    assert exact.correction is True and exact.coarsening == 1
    assert (exact.mode, settings.mode, Absorption(False).mode) == ("exact", True, False)
    with pytest.raises(TypeError, match="True, False or 'exact'"):
        Absorption("fast")
