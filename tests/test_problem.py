"""prepare(): the one preparation shared by SIRT, HEBT and the cross-validation."""

import dask.array as da
import numpy as np
from helpers import count_block_reads, make_series

from hyperspy_hebt._problem import prepare
from hyperspy_hebt.filtering import filtered_sinograms

OPTIONS = dict(xray_lines=None, intensities=None, integration_windows=2.0,
               background_windows=None, gaussian_sigma=0.8, rotation_axis="y",
               slices_per_block=2)


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
    given = dict(OPTIONS, intensities=[da.from_array(maps[0]), maps[1]],
                 xray_lines=["Ag_La", "Au_Ma"])
    assert prepare(eager, **given).lazy
    adf = da.from_array(sum(maps))
    assert prepare(eager, adf, **OPTIONS).lazy
    assert not prepare(eager, np.asarray(adf), **OPTIONS).lazy
