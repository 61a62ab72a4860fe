"""Compute several lazy results in one pass."""

from __future__ import annotations

from typing import Sequence

import dask

__all__ = ["compute_together"]


def compute_together(signals: Sequence) -> list:
    """Compute lazy signals that share a graph in a single dask pass.

    HEBT's per-line stacks share one reconstruction, and every weight-fraction
    map depends on all lines (and, with ``threshold="esf"``, on a histogram of
    them all): computing them one by one repeats that work for each. This runs
    one ``dask.compute`` over all of them.

    Parameters
    ----------
    signals : sequence of HyperSpy signals
        Lazy (and possibly eager) signals; they are not modified.

    Returns
    -------
    list
        Eager signals of the same classes, axes and metadata.
    """
    from hyperspy.signal import BaseSignal

    signals = list(signals)
    for i, signal in enumerate(signals):
        if not isinstance(signal, BaseSignal):
            raise TypeError(f"signals[{i}] must be a HyperSpy signal, got {type(signal).__name__}.")
    arrays = dask.compute(*[signal.data for signal in signals])
    out = []
    for signal, array in zip(signals, arrays):
        eager = signal._deepcopy_with_new_data(array)
        if eager._lazy:
            eager._lazy = False
            eager._assign_subclass()
        out.append(eager)
    return out
