"""HEBT cost per iteration against EDS-only SIRT of the same lines, in one run.

The issue's budget is (k + 1) / k times a k-line EDS SIRT (one more image to
project per slice). The kernel derives the ADF forward projection from the EDS
ones (W sum_A Xb_A = sum_A W Xb_A) and back-projects the combined residual
once, so it should cost about one k-line SIRT plus element-wise work.

Run:  python benchmarks/hebt_speed.py [--slices 64] [--size 256] [--iterations 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hyperspy_hebt.simulation import core_shell_phantom, project_volume
from hyperspy_hebt.tomography import ParallelBeamGeometry, get_projector, hebt, sirt


def best_of(repeats, function):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tilts = np.linspace(-75, 75, 31)
    projector = get_projector(ParallelBeamGeometry(tuple(tilts), args.size))
    core, shell = core_shell_phantom(args.size, args.slices)
    maps = [project_volume(volume.astype(np.float32), tilts)
            for volume in (0.2 * core + 0.8 * shell, 0.8 * core + 0.2 * shell, 1.0 * shell)]
    adf_all = [500 * maps[0] + 550 * maps[1], 500 * maps[0] + 550 * maps[1] + 300 * maps[2]]
    sirt(projector, maps[0][:1], 1)  # compile
    hebt(projector, np.stack(maps[:2])[:, :1], adf_all[0][:1], [1.0, 1.0], 0.8, 1)
    print(f"{args.slices} slices of {args.size}x{args.size}, {tilts.size} tilts, "
          f"{args.iterations} iterations, best of {args.repeats}")
    print()
    print("| lines k | EDS SIRT of k lines, ms/iteration | HEBT, ms/iteration | HEBT / SIRT | "
          "budget (k+1)/k |")
    print("|---|---|---|---|---|")
    for k in (2, 3):
        eds = np.stack(maps[:k])
        adf = adf_all[k - 2]
        t_sirt = best_of(args.repeats, lambda eds=eds: sirt(
            projector, eds.reshape((-1,) + eds.shape[2:]), args.iterations))
        t_hebt = best_of(args.repeats, lambda eds=eds, adf=adf, k=k: hebt(
            projector, eds, adf, [500.0, 550.0, 300.0][:k], 0.8, args.iterations))
        per_sirt = 1e3 * t_sirt / args.iterations
        per_hebt = 1e3 * t_hebt / args.iterations
        print(f"| {k} | {per_sirt:.1f} | {per_hebt:.1f} | {per_hebt / per_sirt:.2f} | "
              f"{(k + 1) / k:.2f} |")


if __name__ == "__main__":
    main()
