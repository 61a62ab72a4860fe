"""Parallel CSR x dense kernels (numba) for many slices at once.

Every kernel walks the rows of a CSR matrix in parallel; each stored weight
multiplies a whole contiguous row of the dense operand (one value per slice),
so one pass over the matrix serves every slice of the block and the inner loop
is a vectorisable AXPY. Rows are independent, so there is no write contention.

numba's default ``workqueue`` threading layer aborts when two Python threads
launch parallel kernels at the same time (dask's threaded scheduler does this),
so launches are serialised by a lock; each launch already uses every core.
"""

from __future__ import annotations

import threading

import numba
import numpy as np

LAUNCH_LOCK = threading.Lock()
_ROWS_PER_TASK = 32
_FASTMATH = {"contract", "nsz", "arcp"}


@numba.njit(inline="always", fastmath=_FASTMATH, nogil=True)
def _accumulate_row(indptr, indices, data, dense, i, acc):
    """acc[:] = row i of the CSR matrix times dense."""
    acc[:] = 0.0
    for k in range(indptr[i], indptr[i + 1]):
        w = data[k]
        row = dense[indices[k]]
        for s in range(acc.shape[0]):
            acc[s] += w * row[s]


_PRODUCT, _RESIDUAL, _UPDATE = 0, 1, 2


@numba.njit(parallel=True, fastmath=_FASTMATH, nogil=True, cache=True)
def _row_products(indptr, indices, data, dense, mode, measured, row_scale, positivity, out):
    """acc_i = row i of the CSR matrix times dense, then per mode:

    _PRODUCT:  out_i = acc_i
    _RESIDUAL: out_i = row_scale_i * (measured_i - acc_i)
    _UPDATE:   out_i = out_i + row_scale_i * acc_i, clipped at 0 if positivity
    """
    n_rows = indptr.shape[0] - 1
    n_cols = dense.shape[1]
    n_tasks = (n_rows + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK
    for task in numba.prange(n_tasks):
        acc = np.empty(n_cols, dtype=np.float32)
        stop_row = min(n_rows, (task + 1) * _ROWS_PER_TASK)
        for i in range(task * _ROWS_PER_TASK, stop_row):
            _accumulate_row(indptr, indices, data, dense, i, acc)
            if mode == _PRODUCT:
                out[i, :] = acc
            elif mode == _RESIDUAL:
                scale = row_scale[i]
                for s in range(n_cols):
                    out[i, s] = scale * (measured[i, s] - acc[s])
            else:
                scale = row_scale[i]
                for s in range(n_cols):
                    value = out[i, s] + scale * acc[s]
                    if positivity and value < 0:
                        value = 0.0
                    out[i, s] = value


def _launch(matrix, dense, mode, measured, row_scale, positivity, out):
    _check(matrix, dense, out)
    with LAUNCH_LOCK:
        _row_products(matrix.indptr, matrix.indices, matrix.data, dense, mode, measured,
                      row_scale, bool(positivity), out)
    return out


def _check(matrix, dense, out):
    if dense.dtype != np.float32 or not dense.flags.c_contiguous:
        raise TypeError("dense operand must be C-contiguous float32")
    if dense.shape[0] != matrix.shape[1]:
        raise ValueError(f"shape mismatch: matrix {matrix.shape}, dense {dense.shape}")
    expected = (matrix.shape[0], dense.shape[1])
    if out.shape != expected or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"output must be C-contiguous float32 of shape {expected}")


_NO_SCALE = np.zeros(0, np.float32)


def csr_matmat(matrix, dense: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[:] = matrix @ dense`` for a float32 CSR matrix and a C-ordered float32 block."""
    return _launch(matrix, dense, _PRODUCT, out, _NO_SCALE, False, out)


def weighted_residual(matrix, dense, measured, row_scale, out):
    """``out[:] = row_scale[:, None] * (measured - matrix @ dense)``."""
    if measured.shape != out.shape or measured.dtype != np.float32:
        raise ValueError(f"measured must be float32 of shape {out.shape}")
    return _launch(matrix, dense, _RESIDUAL, measured, row_scale, False, out)


def scaled_update(matrix, dense, row_scale, target, positivity: bool):
    """``target += row_scale[:, None] * (matrix @ dense)``, clipped at 0 if ``positivity``."""
    return _launch(matrix, dense, _UPDATE, target, row_scale, positivity, target)
