"""prepare(): the one preparation shared by SIRT, HEBT and the cross-validation."""

import dask.array as da
import numpy as np
from helpers import count_block_reads, make_series

from hyperspy_hebt._reconstruction.options import GridOptions, LineSource
from hyperspy_hebt._reconstruction.problem import prepare
from hyperspy_hebt.filtering import filtered_sinograms

OPTIONS = dict(source=LineSource(integration_windows=2.0),
               grid=GridOptions(rotation_axis="y", gaussian_sigma=0.8), slices_per_block=2)


def test_stacks_filter_and_field_of_an_eager_series():
    series = make_series()
    problem = prepare(series, **OPTIONS)
    assert not problem.lazy and problem.adf is None
    assert problem.names == ["Ag_La", "Au_Ma"]
    maps = series.get_lines_intensity(integration_windows=2.0)
    for raw, eds, image in zip(problem.raw, problem.eds, maps):
        # (slices, tilts, detector): y, tilt, x of the navigation (tilt, y, x)
        np.testing.assert_array_equal(raw, image.data.transpose(1, 0, 2))
        np.testing.assert_allclose(eds, filtered_sinograms(raw, problem.sigma, False, 2),
                                   rtol=1e-6)
    record = problem.field.record
    assert problem.field.geometry.n_x == 16 + 2 * record["padding_px"]
    assert record["padding_reason"].startswith("auto")


def test_lazy_series_is_read_once_and_any_lazy_input_makes_it_lazy():
    series = make_series(lazy=True)
    reads = count_block_reads(series)
    problem = prepare(series, **OPTIONS)  # "auto" padding looks at the maps
    assert problem.lazy and len(reads) == series.data.npartitions
    np.asarray(problem.eds[0])
    assert len(reads) == series.data.npartitions  # built on the maps in memory
    # One rule for every method: lazy when the signal, the ADF or a given map is.
    eager = make_series()
    maps = [m.data for m in eager.get_lines_intensity(integration_windows=2.0)]
    given = dict(OPTIONS, source=LineSource(["Ag_La", "Au_Ma"],
                                            [da.from_array(maps[0]), maps[1]]))
    assert prepare(eager, **given).lazy
    adf = da.from_array(sum(maps))
    assert prepare(eager, adf, **OPTIONS).lazy
    assert not prepare(eager, np.asarray(adf), **OPTIONS).lazy


def test_degenerate_series_are_refused_by_every_method():
    """No silent wrong answers (issue 13): a single tilt, tilts in radians, a dead
    tilt and empty integration windows are refused with what was wrong."""
    import pytest
    from helpers import TILTS

    radians = make_series(tilts=np.deg2rad(TILTS))
    with pytest.raises(ValueError, match=r"span 2.44 deg .* look like radians"):
        radians.reconstruct_sirt(iterations=2)
    with pytest.raises(ValueError, match="look like radians"):
        radians.cross_validate(None, methods=("sirt",), iterations=(2,))
    single = make_series(tilts=np.array([10.0]))
    with pytest.raises(ValueError, match="at least two tilts; this one has 1"):
        single.reconstruct_sirt(iterations=2)
    series = make_series()
    for bad in (0, -1.0, np.nan, "wide"):
        with pytest.raises(ValueError, match="integration_windows must be a positive number"):
            series.reconstruct_sirt(iterations=2, integration_windows=bad)
    with pytest.raises(ValueError, match="end > start"):
        series.reconstruct_sirt(iterations=2, integration_windows=[[3.0, 2.9], [2.0, 2.2]])
    dead = series.deepcopy()
    dead.data[3] = 0  # tilt index 3 of (tilt, y, x, E): -10 deg
    for lazy in (False, True):
        source = dead.as_lazy() if lazy else dead
        with pytest.raises(ValueError, match=r"no counts at all at tilt\(s\) \[-10.0\] deg"):
            source.reconstruct_sirt(iterations=2)
    assert series.data[3].any()  # the user's signal untouched


def test_an_adf_of_another_pixel_size_is_refused():
    """Same pixel count, other field of view (3.0 vs 1.5 nm): refused by every method
    that takes the ADF; other units are converted first."""
    import hyperspy.api as hs
    import pytest

    series = make_series()
    maps = series.get_lines_intensity(integration_windows=2.0)
    adf = hs.signals.Signal2D(sum(m.data for m in maps))  # (tilt | y, x)
    for axis, ours in zip(adf.axes_manager.signal_axes, ("x", "y")):
        model = series.axes_manager[ours]
        axis.name, axis.units, axis.scale = ours, model.units, model.scale
    prepare(series, adf, **OPTIONS)  # the same calibration: accepted
    adf.axes_manager["x"].scale = 2 * series.axes_manager["x"].scale
    with pytest.raises(ValueError, match=r"adf's pixel size along 'x' is .* but the EDS"):
        series.reconstruct_hebt(adf, iterations=2)
    with pytest.raises(ValueError, match="pixel size along 'x'"):
        series.check_hebt_model(adf)
    if series.axes_manager["x"].units == "nm":
        adf.axes_manager["x"].scale = series.axes_manager["x"].scale / 1000
        adf.axes_manager["x"].units = "µm"
        prepare(series, adf, **OPTIONS)


def test_an_adf_without_contrast_is_refused():
    """All-zero or constant ADF frames (issue 13: read as 100 % saturated, ratios of
    1e-310, all-zero volumes returned with a warning) are refused, naming the tilts."""
    import pytest

    series = make_series()
    maps = series.get_lines_intensity(integration_windows=2.0)
    adf = sum(m.data for m in maps).astype(float)
    blank = adf.copy()
    blank[2] = 0.0  # tilt index 2: -30 deg
    with pytest.raises(ValueError, match=r"no contrast at tilt\(s\) \[-30.0\] deg"):
        series.reconstruct_hebt(blank, iterations=2)
    with pytest.raises(ValueError, match=r"no contrast at tilt\(s\) \[-70.0, -50.0"):
        series.check_hebt_model(np.full_like(adf, 7.0))
    with pytest.raises(ValueError, match="no contrast"):
        series.as_lazy().reconstruct_hebt(blank, iterations=2)
    prepare(series, adf, **OPTIONS)  # a real ADF passes
