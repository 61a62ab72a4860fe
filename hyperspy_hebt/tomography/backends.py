"""Where the SIRT and HEBT iterations run: numba on the CPU, or CuPy on a CUDA GPU.

``backend="cpu"`` (the default) runs the numba CSR kernels of :mod:`._sparse`.
``backend="cupy"`` runs the same iterations with CuPy arrays and cuSPARSE
products on the current CUDA device: the system matrix is copied to the device
once per geometry and process, each block's sinograms are copied in and its
volumes copied out, and the iterate never leaves the device. ``backend="auto"``
takes CuPy when it is installed and sees a CUDA device, else the CPU.

The array-module iterations (:mod:`._array_steps`) are written once for any
module with numpy's API and a CSR matrix type with ``@``; the test suite runs
them with numpy and scipy.sparse against the numba kernels, and with CuPy where
a device is present.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .projector import _inverse_or_zero

__all__ = ["BACKENDS", "cupy_status", "resolve_backend", "validate_backend"]

#: Values accepted by every ``backend`` argument.
BACKENDS = ("cpu", "cupy", "auto")


def validate_backend(backend) -> str:
    """Check a ``backend`` argument's value (without looking for a device).

    Parameters
    ----------
    backend : str
        ``"cpu"``, ``"cupy"`` or ``"auto"``.

    Returns
    -------
    str
        ``backend`` itself.

    Raises
    ------
    ValueError
        Any other value.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.backends import validate_backend
    >>> validate_backend("auto")
    'auto'
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got "
                         f"{backend!r}.")
    return backend


def cupy_status() -> tuple[bool, str]:
    """Whether CuPy can run here, and if not, why.

    Returns
    -------
    available : bool
        CuPy imports and sees at least one CUDA device.
    reason : str
        Empty when available, else what is missing.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.backends import cupy_status
    >>> usable, reason = cupy_status()  # (False, why) on a machine without CuPy or a GPU
    >>> isinstance(usable, bool) and isinstance(reason, str)
    True
    """
    try:
        import cupy
    except ImportError as error:
        return False, f"CuPy is not installed ({error}); install e.g. cupy-cuda12x"
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except (RuntimeError, OSError) as error:  # CUDARuntimeError: no driver, or too old
        return False, f"CuPy sees no usable CUDA device ({error})"
    if n_devices < 1:
        return False, "CuPy sees no CUDA device"
    return True, ""


def resolve_backend(backend) -> str:
    """``"cpu"`` or ``"cupy"``: where a kernel called with ``backend`` runs here.

    Parameters
    ----------
    backend : {"cpu", "cupy", "auto"}
        The argument a kernel was called with.

    Returns
    -------
    str
        ``"cpu"`` or ``"cupy"``; ``"auto"`` gives ``"cupy"`` only where CuPy finds a CUDA
        device.

    Raises
    ------
    ValueError
        ``backend`` is not one of :data:`BACKENDS`.
    RuntimeError
        ``backend="cupy"`` where CuPy or a CUDA device is missing.

    Examples
    --------
    >>> from hyperspy_hebt.tomography.backends import resolve_backend
    >>> resolve_backend("cpu")
    'cpu'
    """
    backend = validate_backend(backend)
    if backend == "cpu":
        return "cpu"
    available, reason = cupy_status()
    if backend == "auto":
        return "cupy" if available else "cpu"
    if not available:
        raise RuntimeError(f'backend="cupy" cannot run here: {reason}. Use backend="cpu" '
                           'or "auto" (the CPU when no GPU is usable).')
    return "cupy"


@dataclass(frozen=True)
class _ArrayModule:
    """An array library the iterations of :mod:`._array_steps` can run on.

    Attributes
    ----------
    name : str
    xp : module
        numpy-compatible array module.
    csr_matrix : callable
        scipy CSR matrix -> the module's CSR matrix (``matrix @ dense`` works).
    to_host : callable
        The module's array -> a numpy copy.
    device_id : callable
        Identifies the current device (cache key for the matrices held there).
    """

    name: str
    xp: Any
    csr_matrix: Callable
    to_host: Callable
    device_id: Callable


def _array_module(name: str) -> _ArrayModule:
    """The array module of a resolved backend (``"cupy"``) or the numpy reference."""
    if name == "numpy":  # the reference the tests run the iterations with
        # to_host copies, as cupy.asnumpy does: a kept iterate must not stay live.
        return _ArrayModule("numpy", np, lambda matrix: matrix, np.array, lambda: 0)
    if name == "cupy":
        import cupy
        import cupyx.scipy.sparse

        def csr_matrix(matrix):
            # CuPy keeps the index dtype of the indices (int32) for indptr too.
            if matrix.nnz >= 2**31:
                raise ValueError(f"the system matrix has {matrix.nnz} non-zeros, more than "
                                 "CuPy's 32-bit sparse indices hold; use backend='cpu'.")
            on_device = cupyx.scipy.sparse.csr_matrix(matrix)
            on_device.sum_duplicates()  # cuSPARSE wants canonical CSR; a no-op when it is
            return on_device

        return _ArrayModule("cupy", cupy, csr_matrix, cupy.asnumpy,
                           lambda: cupy.cuda.runtime.getDevice())
    raise ValueError(f"no array module {name!r}; expected 'cupy' or 'numpy'.")


@dataclass(frozen=True)
class _DeviceOperators:
    """A projector's matrices and scale vectors on one device (float32)."""

    matrix: Any
    matrix_t: Any
    row_scale: Any
    column_scale: Any


_DEVICE_CACHE: OrderedDict = OrderedDict()
_DEVICE_LOCK = threading.Lock()
_DEVICE_CACHE_SIZE = 8


def _device_operators(projector, module: _ArrayModule) -> _DeviceOperators:
    """Return ``W``, ``W^T`` and the inverse row and column sums on the current device.

    Copied there once per geometry and device (as the CPU projector cache).
    """
    key = (projector.geometry, module.name, module.device_id())
    with _DEVICE_LOCK:
        if key in _DEVICE_CACHE:
            _DEVICE_CACHE.move_to_end(key)
            return _DEVICE_CACHE[key]
        xp = module.xp
        operators = _DeviceOperators(
            module.csr_matrix(projector.matrix), module.csr_matrix(projector.matrix_t),
            xp.asarray(_inverse_or_zero(projector.row_sums)),
            xp.asarray(_inverse_or_zero(projector.column_sums)))
        _DEVICE_CACHE[key] = operators
        if len(_DEVICE_CACHE) > _DEVICE_CACHE_SIZE:
            _DEVICE_CACHE.popitem(last=False)
        return operators
