"""SIRT and HEBT iterations on any numpy-like array module (CuPy on a GPU).

The same updates as the numba kernels (see :mod:`.sirt` and :mod:`.bimodal`),
written with whole-array operations. Dense blocks are held slice-major,
``(columns, n_rays)`` or ``(columns, n_pixels)`` in C order, so that their
transpose, the operand of ``W @``, is Fortran-ordered as cuSPARSE wants it and
no copy is made for a product. Inputs arrive validated, as float32 numpy arrays.
"""

from __future__ import annotations

from .backends import ArrayModule, device_operators


def _product(matrix, dense):
    """``(matrix @ dense.T).T`` for a slice-major block ``dense``: the same layout out."""
    return (matrix @ dense.T).T


def _snapshot(module, volume, shape):
    def copy_to_host(columns: slice | None = None):
        if columns is None:
            return module.to_host(volume).reshape(shape)
        # Cropped on the device: only the kept columns cross to the host.
        return module.to_host(module.xp.ascontiguousarray(volume.reshape(shape)[..., columns]))
    return copy_to_host


def _scales(xp, ops, scales):
    """Device row and column scales: the cached ones, or a support's (host arrays)."""
    if scales is None:
        return ops.row_scale, ops.column_scale
    return xp.asarray(scales[0]), xp.asarray(scales[1])


def sirt_steps(module: ArrayModule, projector, measured, weights, relaxation, positivity,
               scales=None):
    """Yield, after each SIRT iteration, a function returning the host volume.

    ``measured`` and ``weights`` (or None) are ``(n_slices, n_rays)`` float32;
    ``scales``, when given, the host row and column scales of a support.
    """
    g = projector.geometry
    xp = module.xp
    ops = device_operators(projector, module)
    measured = xp.asarray(measured)
    weights = None if weights is None else xp.asarray(weights)
    row_scale, column_scale = _scales(xp, ops, scales)
    column_scale = column_scale * xp.float32(relaxation)
    volume = xp.zeros((measured.shape[0], g.n_pixels), dtype=xp.float32)
    shape = (measured.shape[0], g.n_z, g.n_x)
    while True:
        residual = (measured - _product(ops.matrix, volume)) * row_scale
        if weights is not None:
            residual *= weights
        volume += _product(ops.matrix_t, residual) * column_scale
        if positivity:
            xp.maximum(volume, 0, out=volume)
        yield _snapshot(module, volume, shape)


def hebt_steps(module: ArrayModule, projector, eds, adf, adf_weights, eds_weights, alpha,
               relaxation, positivity, n_extra, scales=None):
    """Yield, after each HEBT iteration, a function returning the host volume.

    ``eds`` is ``(k, n_slices, n_rays)`` (already multiplied by the ratios), ``adf``
    and the weights (or None) ``(n_slices, n_rays)``, all float32; the volume
    comes back as ``(k + n_extra, n_slices, n_z, n_x)``.
    """
    g = projector.geometry
    xp = module.xp
    ops = device_operators(projector, module)
    k, n_slices = eds.shape[:2]
    n_blocks = k + n_extra
    eds = xp.asarray(eds)
    adf = xp.asarray(adf)
    alpha = xp.float32(alpha)
    row_scale, column_scale = _scales(xp, ops, scales)
    adf_scale = row_scale / xp.float32(n_blocks)
    if adf_weights is not None:
        adf_scale = adf_scale * xp.asarray(adf_weights)
    eds_scale = row_scale * (xp.float32(1) - alpha)
    if eds_weights is not None:
        eds_scale = eds_scale * xp.asarray(eds_weights)
    column_scale = column_scale * xp.float32(relaxation)
    volume = xp.zeros((n_blocks * n_slices, g.n_pixels), dtype=xp.float32)
    residual = xp.empty((n_blocks, n_slices, g.n_rays), dtype=xp.float32)
    shape = (n_blocks, n_slices, g.n_z, g.n_x)
    while True:
        projected = _product(ops.matrix, volume).reshape(n_blocks, n_slices, g.n_rays)
        adf_residual = (adf - projected.sum(axis=0)) * adf_scale
        residual[:k] = (eds - projected[:k]) * eds_scale + alpha * adf_residual
        residual[k:] = adf_residual
        volume += _product(ops.matrix_t, residual.reshape(n_blocks * n_slices, g.n_rays)) \
            * column_scale
        if positivity:
            xp.maximum(volume, 0, out=volume)
        yield _snapshot(module, volume, shape)
