"""compute_together: one pass, results held once."""

import tracemalloc

import dask.array as da
import hyperspy.api as hs
import numpy as np

from hyperspy_hebt import compute_together


def test_results_are_not_held_twice():
    """Blocks go into results allocated up front as they arrive: the peak stays near
    the results' size (a plain dask.compute holds every block and then their
    concatenation, twice the size)."""
    blocks = 16
    lazy = [hs.signals.Signal2D(da.ones((blocks, 64, 1024), chunks=(1, 64, 1024),
                                        dtype=np.float64) * factor).as_lazy()
            for factor in (2.0, 3.0)]
    size = sum(s.data.nbytes for s in lazy)  # 16 MB
    compute_together([lazy[0].isig[:1]])  # dask's one-time allocations, not measured
    tracemalloc.start()
    try:
        eager = compute_together(lazy)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [s._lazy for s in eager] == [False, False] and lazy[0]._lazy
    np.testing.assert_array_equal(eager[1].data, 3.0)
    # Measured 1.08x; dask.compute peaks at 2.0x.
    assert peak < 1.4 * size


def test_eager_and_unknown_shapes_pass_through():
    from hyperspy_hebt.compute import _store_together

    eager = np.arange(5.0)
    values = da.arange(10.0)
    unknown = values[values > 4]  # nan chunk sizes: computed, not stored
    out = _store_together([eager, unknown, da.from_array(eager, chunks=2)])
    assert out[0] is eager
    np.testing.assert_array_equal(out[1], [5.0, 6, 7, 8, 9])
    np.testing.assert_array_equal(out[2], eager)
