"""SIRT, HEBT, ML-EM, Poisson + TV and the fused model on a CUDA GPU against the CPU.

Times whole kernel calls (copies of the block to and from the device included)
on the same slices, and reports how far the GPU volumes are from the CPU ones
(largest difference over the largest voxel). Needs CuPy and a CUDA device; print
the card's name with the table.

Run:  python benchmarks/gpu_speed.py [--slices 64] [--size 256] [--iterations 100]

``--dry-run`` checks this script where there is no GPU: numpy and scipy.sparse
stand in for CuPy (the iterations the GPU would run, on the CPU, one thread), so
its times say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hyperspy_hebt.simulation import core_shell_phantom, project_volume
from hyperspy_hebt.tomography import ParallelBeamGeometry, backends, get_projector, hebt, sirt
from hyperspy_hebt.tomography.fused import fused
from hyperspy_hebt.tomography.mlem import mlem
from hyperspy_hebt.tomography.poisson_tv import poisson_tv


def best_of(repeats, function):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def stand_in_for_cupy():
    """Route backend="cupy" to the numpy array module (for --dry-run)."""
    module = backends._array_module("numpy")
    backends.cupy_status = lambda: (True, "")
    backends._array_module = lambda name: module
    return "none (--dry-run: numpy stands in for CuPy)"


def device_name():
    import cupy

    properties = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())
    name = properties["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()

    other = "numpy stand-in" if args.dry_run else "GPU"
    if args.dry_run:
        card = stand_in_for_cupy()
    else:
        available, reason = backends.cupy_status()
        if not available:
            parser.exit(2, f"No GPU to measure: {reason}. (--dry-run checks the script.)\n")
        card = device_name()

    tilts = np.linspace(-75, 75, 31)
    projector = get_projector(ParallelBeamGeometry(tuple(tilts), args.size))
    core, shell = core_shell_phantom(args.size, args.slices)
    maps = np.stack([project_volume(v.astype(np.float32), tilts)
                     for v in (0.2 * core + 0.8 * shell, 0.8 * core + 0.2 * shell)])
    adf = 500 * maps[0] + 550 * maps[1]
    sinograms = maps.reshape((-1,) + maps.shape[2:])
    counts = np.random.default_rng(0).poisson(5 * sinograms).astype(np.float32)
    # The fused model's ADF: its own model of the lines' volumes (5 counts per unit), at 1 %
    # noise's precision. Coefficients far from the data's make its nonlinear PDHG
    # oscillate; the glue always fits them (reconstruct_fused).
    volumes = [5 * (0.2 * core + 0.8 * shell), 5 * (0.8 * core + 0.2 * shell)]
    power_adf = project_volume((100 * volumes[0] ** 1.6 + 110 * volumes[1] ** 1.6).astype(
        np.float32), tilts)
    adf_precision = 1.0 / (0.01 * float(power_adf.mean())) ** 2
    runs = {
        "SIRT, 2 lines": lambda backend: sirt(projector, sinograms, args.iterations,
                                              backend=backend),
        "HEBT, 2 lines, alpha 0.8": lambda backend: hebt(
            projector, maps, adf, [500.0, 550.0], 0.8, args.iterations, backend=backend),
        "ML-EM, 2 lines": lambda backend: mlem(projector, counts, args.iterations,
                                               backend=backend),
        "Poisson + TV, 2 lines, weight 0.03": lambda backend: poisson_tv(
            projector, counts, args.iterations, 0.03, backend=backend),
        "joint Poisson + TV, 2 lines": lambda backend: poisson_tv(
            projector, counts, args.iterations, 0.03, joint_channels=2, backend=backend),
        "fused model, 2 lines, gamma 1.6": lambda backend: fused(
            projector, counts, power_adf, [100.0, 110.0], 1.6, args.iterations, 0.03,
            adf_precision, backend=backend),
    }
    for run in runs.values():  # compile (CPU), copy the matrices and warm cuSPARSE (GPU)
        run("cpu")
        run("cupy")
    print(f"device: {card}; {args.slices} slices of {args.size}x{args.size}, {tilts.size} "
          f"tilts, {args.iterations} iterations, best of {args.repeats}")
    print()
    print(f"| kernel | CPU ms/iteration | {other} ms/iteration | {other} faster by | "
          "max abs difference / max voxel |")
    print("|---|---|---|---|---|")
    for label, run in runs.items():
        t_cpu, on_cpu = best_of(args.repeats, lambda run=run: run("cpu"))
        t_gpu, on_gpu = best_of(args.repeats, lambda run=run: run("cupy"))
        difference = float(np.abs(on_gpu - on_cpu).max() / np.abs(on_cpu).max())
        print(f"| {label} | {1e3 * t_cpu / args.iterations:.2f} | "
              f"{1e3 * t_gpu / args.iterations:.2f} | {t_cpu / t_gpu:.1f}x | "
              f"{difference:.1e} |")


if __name__ == "__main__":
    main()
