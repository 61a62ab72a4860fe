"""SIRT, HEBT, ML-EM, Poisson + TV and fused iterations on any numpy-like module (CuPy).

The same updates as the numba kernels (see :mod:`.sirt`, :mod:`.bimodal`, :mod:`.mlem`,
:mod:`.poisson_tv` and :mod:`.fused`),
written with whole-array operations. Dense blocks are held slice-major,
``(columns, n_rays)`` or ``(columns, n_pixels)`` in C order, so that their
transpose, the operand of ``W @``, is Fortran-ordered as cuSPARSE wants it and
no copy is made for a product. Inputs arrive validated, as float32 numpy arrays.
"""

from __future__ import annotations

import numpy as np

from .backends import _ArrayModule, _device_operators
from .projector import _inverse_or_zero


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


def sirt_steps(module: _ArrayModule, projector, measured, weights, relaxation, positivity,
               scales=None):
    """Yield, after each SIRT iteration, a function returning the host volume.

    ``measured`` and ``weights`` (or None) are ``(n_slices, n_rays)`` float32;
    ``scales``, when given, the host row and column scales of a support.
    """
    g = projector.geometry
    xp = module.xp
    ops = _device_operators(projector, module)
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


def hebt_steps(module: _ArrayModule, projector, eds, adf, adf_weights, eds_weights, alpha,
               relaxation, positivity, n_extra, scales=None):
    """Yield, after each HEBT iteration, a function returning the host volume.

    ``eds`` is ``(k, n_slices, n_rays)`` (already multiplied by the ratios), ``adf``
    and the weights (or None) ``(n_slices, n_rays)``, all float32; the volume
    comes back as ``(k + n_extra, n_slices, n_z, n_x)``.
    """
    g = projector.geometry
    xp = module.xp
    ops = _device_operators(projector, module)
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


def _slice_major(xp, columns):
    """A host ``(rows, columns)`` block as a device ``(columns, rows)`` one (C order)."""
    return xp.asarray(np.ascontiguousarray(np.asarray(columns).T))


def mlem_steps(module: _ArrayModule, projector, inputs, parts):
    """Yield, after each (OS-)EM iteration, a function returning the host volume.

    ``inputs`` are :func:`.mlem._counting_inputs`' (host, ray-major); ``parts`` the subsets'
    ``(rays, rows of W, their transpose)`` (:func:`.mlem._subset_matrices`). The updates are
    :func:`.mlem._mlem_steps`'.
    """
    g = projector.geometry
    xp = module.xp
    n_slices = inputs.counts.shape[1]
    measured = inputs.counts * inputs.weights
    device_parts = []
    for rays, rows, transposed in parts:
        if rows is projector.matrix:  # ML-EM: the cached device matrices
            ops = _device_operators(projector, module)
            rows_device, transposed_device = ops.matrix, ops.matrix_t
        else:
            rows_device, transposed_device = module.csr_matrix(rows), module.csr_matrix(
                transposed)
        ray_weight = np.ascontiguousarray(inputs.weights[rays])
        sensitivity = np.asarray(transposed @ ray_weight, np.float32)
        inverse = _inverse_or_zero(sensitivity) * inputs.mask[:, None]
        device_parts.append((rows_device, transposed_device,
                             _slice_major(xp, measured[rays]), _slice_major(xp, inverse)))
    volume = _slice_major(xp, inputs.observed * inputs.level[None, :])
    shape = (n_slices, g.n_z, g.n_x)
    while True:
        for rows, transposed, counts, inverse in device_parts:
            ratio = _product(rows, volume)
            # Rays the iterate does not reach (all their voxels 0) cannot change it.
            reached = ratio > 0
            ratio = xp.where(reached, counts / xp.where(reached, ratio, 1), 0).astype(
                xp.float32)
            volume *= _product(transposed, ratio) * inverse
        yield _snapshot(module, volume, shape)


def poisson_tv_steps(module: _ArrayModule, projector, inputs, weights, tau, bound,
                     joint_channels: int):
    """Yield, after each PDHG iteration, a function returning the host volume (in counts).

    ``inputs`` are :func:`.mlem._counting_inputs`'; ``weights`` the rays' likelihood weights
    (joint channels' included), ``tau`` the voxels' steps, ``bound`` the TV ball's radius,
    all host, as :func:`.poisson_tv._poisson_tv_steps` makes them; the updates are its.
    """
    g = projector.geometry
    xp = module.xp
    ops = _device_operators(projector, module)
    n_slices = inputs.level.size
    level = xp.asarray(inputs.level)[:, None]
    counts = _slice_major(xp, inputs.counts / inputs.level[None, :])
    weights = _slice_major(xp, weights)
    sigma = xp.asarray(_inverse_or_zero(inputs.row_sums))[None, :]
    tau = xp.asarray(tau).reshape(1, g.n_z, g.n_x)
    volume = _slice_major(xp, np.broadcast_to(inputs.observed, (g.n_pixels, n_slices)))
    x_bar = volume.copy()
    dual = xp.zeros((n_slices, g.n_rays), xp.float32)
    q_z = xp.zeros((n_slices, g.n_z, g.n_x), xp.float32)
    q_x = xp.zeros_like(q_z)
    half = xp.float32(0.5)
    shape = (n_slices, g.n_z, g.n_x)
    while True:
        u = dual + sigma * _product(ops.matrix, x_bar)
        d = u - weights
        dual = half * (u + weights - xp.sqrt(d * d + 4 * sigma * weights * counts))
        if bound > 0:
            _tv_dual_step(xp, x_bar.reshape(shape), q_z, q_x, bound, joint_channels, shape)
        back = _product(ops.matrix_t, dual).reshape(shape)
        new = xp.maximum(volume.reshape(shape) - tau * (back - _divergence(xp, q_z, q_x, shape)),
                         0).astype(xp.float32)
        x_bar = (2 * new - volume.reshape(shape)).reshape(volume.shape)
        volume = new.reshape(volume.shape)
        yield _snapshot(module, volume * level, shape)


def _tv_dual_step(xp, grid, q_z, q_x, bound, channels: int, shape):
    """``q <- project(q + grad x / 2)`` per voxel and slice, in place on ``q_z``, ``q_x``.

    One ball per voxel and slice, shared by ``channels`` channel-major blocks (joint TV).
    """
    half, limit = xp.float32(0.5), xp.float32(bound) ** 2
    q_z[:, :-1] += half * (grid[:, 1:] - grid[:, :-1])
    q_x[:, :, :-1] += half * (grid[:, :, 1:] - grid[:, :, :-1])
    norm2 = (q_z * q_z + q_x * q_x).reshape((channels, -1) + shape[1:]).sum(axis=0)
    scale = xp.where(norm2 > limit, xp.float32(bound) / xp.sqrt(xp.maximum(norm2, limit)),
                     1).astype(xp.float32)
    scale = xp.concatenate([scale] * channels)
    q_z *= scale
    q_x *= scale


def _divergence(xp, q_z, q_x, shape):
    """The negative adjoint of the forward differences (0 across the far edges)."""
    divergence = xp.zeros(shape, xp.float32)
    divergence[:, :-1] += q_z[:, :-1]
    divergence[:, 1:] -= q_z[:, :-1]
    divergence[:, :, :-1] += q_x[:, :, :-1]
    divergence[:, :, 1:] -= q_x[:, :, :-1]
    return divergence


def fused_steps(module: _ArrayModule, projector, *, volume, counts, weights, sigma, target,
                adf_weights, mu, kappa, gamma, column_sums, mask, bound, level, n_lines,
                tv_channels):
    """Yield, after each fused-model iteration, a function returning the host volume.

    The host arrays :func:`.fused._fused_steps` prepares (ray-major columns, lines
    channel-major); the updates are its (nonlinear preconditioned PDHG).
    """
    g = projector.geometry
    xp = module.xp
    ops = _device_operators(projector, module)
    n_columns = volume.shape[1]
    n_slices = n_columns // n_lines
    shape = (n_columns, g.n_z, g.n_x)
    volume = _slice_major(xp, volume)
    x_bar = volume.copy()
    counts = _slice_major(xp, counts)
    weights = _slice_major(xp, weights)
    sigma = xp.asarray(sigma)[None, :]
    target = _slice_major(xp, target)
    adf_weights = _slice_major(xp, adf_weights)
    mu = xp.asarray(mu)[:, None]
    kappa = xp.asarray(kappa).reshape(n_lines, n_slices, 1)
    gamma = float(gamma)
    column_sums = xp.asarray(column_sums)[None, :]
    inside = xp.asarray(mask > 0)[None, :]
    level = xp.asarray(level)[:, None]
    dual = xp.zeros((n_columns, g.n_rays), xp.float32)
    dual_adf = xp.zeros((n_slices, g.n_rays), xp.float32)
    q_z = xp.zeros(shape, xp.float32)
    q_x = xp.zeros_like(q_z)
    half = xp.float32(0.5)

    def signed_power(values):
        if gamma == 1.0:
            return values
        return xp.sign(values) * xp.abs(values) ** xp.float32(gamma)

    def jacobian():
        """``gamma kappa u^(gamma - 1)`` per column at the iterate, and the ADF rows' steps."""
        per_line = volume.reshape(n_lines, n_slices, g.n_pixels)
        jac = (xp.broadcast_to(kappa, per_line.shape) if gamma == 1.0 else
               xp.float32(gamma) * kappa * per_line ** xp.float32(gamma - 1.0))
        row_sums = _product(ops.matrix, jac.sum(axis=0).astype(xp.float32))
        steps = xp.where(row_sums > 0, 1 / xp.where(row_sums > 0, row_sums, 1), 0)
        return jac.reshape(n_columns, g.n_pixels).astype(xp.float32), steps.astype(xp.float32)

    jac, sigma_adf = jacobian()
    while True:
        u = dual + sigma * _product(ops.matrix, x_bar)
        d = u - weights
        dual = half * (u + weights - xp.sqrt(d * d + 4 * sigma * weights * counts))
        model = (kappa * signed_power(x_bar.reshape(n_lines, n_slices, g.n_pixels))).sum(
            axis=0).astype(xp.float32)
        v = dual_adf + sigma_adf * _product(ops.matrix, model)
        m = mu * adf_weights
        active = (m > 0) & (sigma_adf > 0)
        dual_adf = xp.where(active, m * (v - sigma_adf * target)
                            / xp.where(active, m + sigma_adf, 1), 0).astype(xp.float32)
        if bound > 0:
            _tv_dual_step(xp, x_bar.reshape(shape), q_z, q_x, bound, tv_channels, shape)
        back = _product(ops.matrix_t, dual)
        back_adf = _product(ops.matrix_t, dual_adf)
        step = 1 / (column_sums * (1 + jac) + 4)
        pushed = back + jac * xp.concatenate([back_adf] * n_lines)
        new = xp.maximum(volume - step * (pushed - _divergence(xp, q_z, q_x, shape).reshape(
            volume.shape)), 0).astype(xp.float32)
        new = xp.where(inside, new, volume)
        x_bar = xp.where(inside, 2 * new - volume, x_bar).astype(xp.float32)
        volume = new
        if gamma != 1.0:
            jac, sigma_adf = jacobian()
        yield _snapshot(module, volume * level, shape)
