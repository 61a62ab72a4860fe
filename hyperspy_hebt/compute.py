"""Compute several lazy results in one pass."""

from __future__ import annotations

from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np

__all__ = ["compute_together"]


def compute_together(signals: Sequence) -> list:
    """Compute lazy signals that share a graph in a single dask pass.

    HEBT's per-line stacks share one reconstruction, and every weight-fraction
    map depends on all lines (and, with ``threshold="esf"``, on a histogram of
    them all): computing them one by one repeats that work for each. This runs
    one dask pass over all of them, storing each block into its result as it
    arrives (a plain ``dask.compute`` holds every block and then a concatenated
    copy: twice the results' memory at the end).

    Parameters
    ----------
    signals : sequence of HyperSpy signals
        Lazy (and possibly eager) signals; they are not modified.

    Returns
    -------
    list
        Eager signals of the same classes, axes and metadata; a lazy
        ``metadata.Signal.Noise_properties.variance`` (and the ``Covariance`` signals of
        joint reconstructions) is computed in the same pass.

    Raises
    ------
    TypeError
        An item of ``signals`` is not a HyperSpy signal.

    Examples
    --------
    >>> from hyperspy_hebt.simulation import demo_acquisition
    >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
    >>> series, adf = acquisition.series, acquisition.adf
    >>> from hyperspy_hebt import compute_together
    >>> lazy = series.as_lazy()
    >>> fractions = lazy.quantify_cross_section(
    ...     lazy.reconstruct_sirt(iterations=20, show_progressbar=False))
    >>> computed = compute_together(fractions)  # one pass over the spectra for both
    >>> computed[0]
    <Signal2D, title: Ag weight fraction (SIRT), dimensions: (2|24, 24)>
    """
    from hyperspy.signal import BaseSignal

    signals = list(signals)
    for i, signal in enumerate(signals):
        if not isinstance(signal, BaseSignal):
            raise TypeError(f"signals[{i}] must be a HyperSpy signal, got {type(signal).__name__}.")
    # Their variances and covariances (reconstructions with uncertainty=) are computed in
    # the same pass.
    moments = [(i, path, holder) for i, signal in enumerate(signals)
               for path, holder in _noise_signals(signal)]
    arrays = _store_together([signal.data for signal in signals]
                             + [holder.data for _, _, holder in moments])
    out = [_eager(signal._deepcopy_with_new_data(array))
           for signal, array in zip(signals, arrays)]
    for (i, path, holder), array in zip(moments, arrays[len(signals):]):
        out[i].metadata.set_item(path, _eager(holder._deepcopy_with_new_data(array)))
    return out


def _noise_signals(signal) -> list:
    """``(metadata path, signal)`` of the variance and covariances a signal carries."""
    from hyperspy.signal import BaseSignal

    from ._reconstruction.uncertainty import COVARIANCE_NODE

    found = []
    variance = signal.metadata.get_item("Signal.Noise_properties.variance")
    if isinstance(variance, BaseSignal):
        found.append(("Signal.Noise_properties.variance", variance))
    covariances = signal.metadata.get_item(COVARIANCE_NODE)
    if covariances is not None:
        for name, item in covariances:
            if isinstance(item, BaseSignal):
                found.append((f"{COVARIANCE_NODE}.{name}", item))
    return found


def _eager(signal):
    if signal._lazy:
        signal._lazy = False
        signal._assign_subclass()
    return signal


def _store_together(arrays: list) -> list:
    """Return in-memory versions of ``arrays``.

    Dask arrays are computed in one pass, their blocks written into arrays allocated up front;
    others are returned as they are.
    """
    lazy = [i for i, a in enumerate(arrays) if isinstance(a, da.Array)]
    out = list(arrays)
    if not lazy:
        return out
    if any(np.isnan(arrays[i].shape).any() for i in lazy):  # unknown chunk sizes
        computed = dask.compute(*[arrays[i] for i in lazy])
    else:
        computed = [np.empty(arrays[i].shape, dtype=arrays[i].dtype) for i in lazy]
        # Blocks write disjoint regions: no lock needed.
        da.store([arrays[i] for i in lazy], computed, lock=False)
    for i, array in zip(lazy, computed):
        out[i] = array
    return out
